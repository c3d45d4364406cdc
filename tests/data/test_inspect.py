"""`python -m t2t.inspect`: what a task feeds the model, as JSON lines, text, or split statistics."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from t2t import inspect as inspect_cli
from t2t.data import registry, sources
from t2t.data.vocab import SentencePieceVocabulary
import t2t.tasks  # noqa: F401  (registers the built-in tasks)

REPO = pathlib.Path(__file__).resolve().parents[2]


def _run(capsys, *argv):
    assert inspect_cli.main(list(argv)) == 0
    return capsys.readouterr().out.splitlines()


@pytest.fixture(scope="module")
def c4_args(data_dir, t5_vocab_path):
    return ["--task", "c4_span_corruption", "--split", "validation", "--data_dir", str(data_dir),
            "--vocab", str(t5_vocab_path)]


def test_c4_span_corruption_examples(capsys, c4_args):
    lines = _run(capsys, *c4_args, "-n", "5")
    assert len(lines) == 5
    records = [json.loads(line) for line in lines]
    for rec in records:
        # C4 chunks span documents, so there is no pretokenized string to show.
        assert set(rec) == {"inputs", "inputs_text", "targets", "targets_text"}
        assert len(rec["inputs"]) == 512 and len(rec["targets"]) == 114
        sentinels = [t for t in rec["inputs"] if t >= 32000]
        assert sentinels == list(range(32099, 32099 - 28, -1))
        assert rec["targets_text"].startswith("<extra_id_0>") and "<extra_id_27>" in rec["inputs_text"]
    # File order: the first record is the split's first chunk.
    task = registry.get_task("c4_span_corruption").with_vocabulary(SentencePieceVocabulary(c4_args[-1]))
    first = next(iter(task.get_dataset("validation", data_dir=c4_args[5])))
    assert records[0]["inputs"] == first["inputs"].tolist()


def test_c4_split_statistics_match_t5(capsys, c4_args):
    (line,) = _run(capsys, *c4_args, "--stats")
    stats = json.loads(line)
    assert stats["examples"] == 82 and stats["sentinels_in_order"] is True
    assert stats["noise_density"] == pytest.approx(0.15, abs=0.01)
    assert stats["mean_noise_span_length"] == pytest.approx(3.0, abs=0.15)
    assert stats["full_length_examples"] == 81  # all but the last, shorter chunk
    assert (stats["full_length_spans"], stats["full_length_noise_tokens"], stats["full_length_targets_length"]) == (
        [28], [85], [114])
    assert (stats["inputs_length_max"], stats["targets_length_max"]) == (512, 114)


def test_text_format(capsys, c4_args):
    lines = _run(capsys, *c4_args, "-n", "2", "--format", "text")
    assert lines[0] == "=== example 0" and lines[3] == "=== example 1" and len(lines) == 6
    assert lines[1].startswith("inputs (512 tokens): ") and lines[2].startswith("targets (114 tokens): <extra_id_0>")


def test_the_issue_command_line_runs(c4_args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "t2t.inspect", *c4_args, "-n", "1"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert json.loads(out)["targets_text"].startswith("<extra_id_0>")


def test_builtin_task_needs_no_data_dir(capsys, monkeypatch, builtin_vocab):
    monkeypatch.delenv("T2T_DATA_DIR", raising=False)
    args = ["--task", "builtin_span_corruption", "--split", "train", "-n", "3"]
    records = [json.loads(line) for line in _run(capsys, *args)]
    assert len(records) == 3
    for rec in records:
        assert len(rec["inputs"]) == 128 and rec["inputs"][-1] == 1 and rec["targets"][-1] == 1
        assert rec["inputs_text"] == builtin_vocab.decode(rec["inputs"])
        assert "<extra_id_0>" in rec["inputs_text"]
    assert [json.loads(line) for line in _run(capsys, *args)] == records  # seeded shuffle
    assert [json.loads(line) for line in _run(capsys, *args, "--seed", "1")] != records


def test_pretokenized_strings_are_shown(capsys, builtin_vocab):
    features = {k: registry.Feature(builtin_vocab) for k in ("inputs", "targets")}
    source = sources.InMemorySource({"validation": [{"q": "Return the value.", "a": "True"}]})
    registry.add_task("inspect_demo", source, [registry.rekey({"inputs": "q", "targets": "a"}), registry.tokenize,
                                               registry.append_eos_after_trim], features)
    try:
        (line,) = _run(capsys, "--task", "inspect_demo", "-n", "5")
    finally:
        registry.TaskRegistry.remove("inspect_demo")
    rec = json.loads(line)
    assert (rec["inputs_pretokenized"], rec["targets_pretokenized"]) == ("Return the value.", "True")
    assert (rec["inputs_text"], rec["targets_text"]) == ("Return the value.", "True")
    assert rec["inputs"] == builtin_vocab.encode("Return the value.") + [1]


def test_bad_arguments_are_clear_errors():
    with pytest.raises(SystemExit, match="error: unknown task or mixture 'c4_span_corrupton'; did you mean"):
        inspect_cli.main(["--task", "c4_span_corrupton"])
    with pytest.raises(SystemExit, match="--sequence_length: expected key:int pairs like inputs:512,targets:114, "
                                         "got 'inputs=512'"):
        inspect_cli.main(["--task", "c4_span_corruption", "--sequence_length", "inputs=512"])


def test_config_flags_show_what_the_run_trains_on(capsys, builtin_vocab):
    """--config with t2t.train's --config.* flags: the quickstart's corpus through i.i.d.
    denoising at density 0.5, measured over the whole validation split."""
    args = ["--config", str(REPO / "configs" / "quickstart.py"), "--split", "validation",
            "--stats", "--config.data.objective.name=iid_denoise",
            "--config.data.objective.noise_density=0.5"]
    stats = json.loads(_run(capsys, *args)[0])
    assert abs(stats["noise_density"] - 0.5) < 0.02 and stats["sentinels_in_order"]
    assert stats["inputs_length_max"] <= 128 and stats["targets_length_max"] <= 128
    with pytest.raises(SystemExit, match=r"error: objective 'iid_denoise' takes no argument\(s\) "
                       r"\['mean_noise_span_length'\]; its arguments are \['noise_density'\]"):
        inspect_cli.main(args + ["--config.data.objective.mean_noise_span_length=3"])
    with pytest.raises(SystemExit, match=r"--config.data.objective.spam: no field 'spam' under "
                       r"data.objective"):
        inspect_cli.main(args + ["--config.data.objective.spam=3"])
