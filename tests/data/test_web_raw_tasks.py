"""The C4 cleaning preprocessor inside the registry gives the same pages as clean_pages."""
import gzip
import json

from t2t.data import c4_cleaning as c4, registry
import t2t.tasks  # noqa: F401  (registers the built-in tasks)


def test_registry_task_cleans_like_the_command(data_dir):
    path = data_dir / "web_raw" / "pages.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        pages = [json.loads(line) for line in f]
    expected = list(c4.clean_pages(iter(pages), c4.C4Config(lang_filter=False)))
    task = registry.get_task("web_raw_c4_clean_pages")
    got = list(task.get_dataset("train", data_dir=data_dir))
    assert [p["text"] for p in got] == [p["text"] for p in expected]
    assert len(got) == 432
    assert all(line.rstrip().endswith((".", "!", "?", '"')) for p in got for line in p["text"].split("\n"))
    noclean = list(registry.get_task("web_raw_c4_noclean_pages").get_dataset("train", data_dir=data_dir))
    assert len(noclean) > len(got)
