"""Raw sources: JSONL(.gz), GLUE TSV, text lines, TFDS fallback, the built-in corpus."""
import gzip
import json

import pytest

from t2t.data import sources


def _write_jsonl(path, records, opener=open):
    with opener(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def test_jsonl_gz_shards_in_sorted_order_with_globs_and_lists(tmp_path):
    for shard in (1, 0):
        _write_jsonl(tmp_path / f"c4-train.0000{shard}-of-00002.json.gz",
                     [{"text": f"doc {shard}.{i}", "url": "u"} for i in range(3)], gzip.open)
    src = sources.JsonlSource({"train": "c4-train.*.json.gz",
                               "both": ["c4-train.00001-of-00002.json.gz", str(tmp_path / "c4-train.00000*")]},
                              required_keys=("text",))
    train = src.get("train", tmp_path)
    assert len(train) == 6
    assert [train[i]["text"] for i in range(6)] == ["doc 0.0", "doc 0.1", "doc 0.2", "doc 1.0", "doc 1.1", "doc 1.2"]
    assert train[-1]["text"] == "doc 1.2"
    both = src.get("both", tmp_path)
    assert [both[i]["text"] for i in (0, 3)] == ["doc 1.0", "doc 0.0"]
    with pytest.raises(IndexError):
        train[6]


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"text": "a"}, {"text": "b"}, '{"text": "c", oops}', {"text": "d"}])
    records = sources.JsonlSource({"train": "bad.jsonl"}).get("train", tmp_path)
    assert records[1] == {"text": "b"}
    with pytest.raises(ValueError, match=rf"{path}:3: malformed JSON line \(Expecting property name"):
        records[2]


def test_jsonl_missing_key_and_non_object_name_file_and_line(tmp_path):
    path = _write_jsonl(tmp_path / "x.jsonl", [{"text": "a"}, {"url": "only"}, "[1, 2]"])
    records = sources.JsonlSource({"train": "x.jsonl"}, required_keys=("text",)).get("train", tmp_path)
    with pytest.raises(ValueError, match=rf"{path}:2: missing key\(s\) \['text'\]; expected \['text'\]"):
        records[1]
    with pytest.raises(ValueError, match=rf"{path}:3: expected a JSON object, got list"):
        records[2]


def test_tsv_with_header_bom_and_crlf(tmp_path):
    (tmp_path / "dev.tsv").write_bytes("\ufeffQuality\tsentence\r\n1\tA b.\r\n0\tC d.\r\n".encode("utf-8"))
    rows = sources.TsvSource({"dev": "dev.tsv"}).get("dev", tmp_path)
    assert rows == [{"Quality": "1", "sentence": "A b."}, {"Quality": "0", "sentence": "C d."}]


def test_tsv_wrong_column_count_names_file_and_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\nfine\t1\nbroken row\n")
    with pytest.raises(ValueError, match=rf"{path}:3: expected 2 tab-separated fields \['sentence', 'label'\], got 1"):
        sources.TsvSource({"train": "train.tsv"}).get("train", tmp_path)
    headerless = tmp_path / "cola.tsv"
    headerless.write_text("src\t1\t\tGood.\nsrc\t0\n")
    with pytest.raises(ValueError, match=rf"{headerless}:2: expected 4 tab-separated fields"):
        sources.TsvSource({"train": "cola.tsv"}, columns=["source", "label", "mark", "sentence"]).get("train", tmp_path)


def test_text_lines_skip_blank_lines(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\n  \nsecond line\r\n")
    assert sources.TextLineSource({"train": "a.txt"}).get("train", tmp_path) == [
        {"text": "first line"}, {"text": "second line"}]


def test_pattern_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("T2T_DATA_DIR", raising=False)
    src = sources.JsonlSource({"train": "c4/en/c4-train.*.json.gz"})
    with pytest.raises(FileNotFoundError, match="needs a data directory: pass --data_dir or set T2T_DATA_DIR"):
        src.get("train")
    with pytest.raises(FileNotFoundError, match=rf"no file matches '{tmp_path}/c4/en/c4-train.\*.json.gz'"):
        src.get("train", tmp_path)
    with pytest.raises(ValueError, match=r"unknown split 'test'; this source has \['train'\]"):
        src.get("test", tmp_path)
    monkeypatch.setenv("T2T_DATA_DIR", str(tmp_path))
    assert sources.resolve_data_dir() == tmp_path


def test_files_or_tfds_reports_both_failures(tmp_path):
    files = sources.JsonlSource({"train": "c4/en/c4-train.*.json.gz"})
    src = sources.FilesOrTfds(files, sources.TfdsSource("t2t_no_such_dataset", ("train",)))
    with pytest.raises(FileNotFoundError, match="no file matches .* and TFDS fallback failed: TFDS dataset "
                                                "'t2t_no_such_dataset' split 'train' cannot be read"):
        src.get("train", tmp_path)


def test_real_c4_sample(data_dir):
    src = sources.JsonlSource({"train": "c4/en/c4-train.*.json.gz",
                               "validation": "c4/en/c4-validation.*.json.gz"}, required_keys=("text",))
    train, validation = src.get("train", data_dir), src.get("validation", data_dir)
    assert (len(train), len(validation)) == (900, 100)
    assert set(train[0]) == {"text", "url", "date"}
    assert train[0]["text"].strip() and validation[99]["text"].strip()


def test_real_mrpc_header_has_no_bom(data_dir):
    rows = sources.TsvSource({"dev": "glue/MRPC/dev.tsv"}).get("dev", data_dir)
    assert len(rows) == 408
    assert list(rows[0]) == ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]


def test_builtin_corpus_is_real_english_split_by_title():
    train = sources.BuiltinCorpusSource().get("train")
    validation = sources.BuiltinCorpusSource().get("validation")
    docs = sources.builtin_documents()
    assert len(train) + len(validation) == len(docs) > 400
    assert 0.02 < len(validation) / len(docs) < 0.09
    assert not {d["title"] for d in train} & {d["title"] for d in validation}
    assert sum(len(d["text"]) for d in docs) > 1_000_000
    by_title = {d["title"]: d["text"] for d in docs}
    assert by_title["json/__init__.py"].startswith("JSON (JavaScript Object Notation)")
    assert "pydoc_topics/for" in by_title
