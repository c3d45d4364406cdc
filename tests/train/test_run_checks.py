"""Counts in a run config are checked before anything runs; metrics.jsonl keeps one row per
step and split after a restart; `python -m t2t.models --help` works."""
import json

import pytest

from configs import tiny_test
from t2t.models import __main__ as models_cli
from t2t.train import loop
from t2t.workdir import metrics_path, read_metrics


@pytest.mark.parametrize("key,value,expected", [
    ("train.num_steps", 0, "train.num_steps=0: expected an integer >= 1"),
    ("train.num_steps", -5, "train.num_steps=-5: expected an integer >= 1"),
    ("train.log_every", 0, "train.log_every=0: expected an integer >= 1"),
    ("checkpoint.every_steps", 0, "checkpoint.every_steps=0: expected an integer >= 1"),
    ("train.eval_every", -1, "train.eval_every=-1: expected an integer >= 0"),
    ("data.batch_size", 0, "data.batch_size=0: expected an integer >= 1"),
])
def test_bad_counts_fail_before_the_run_starts(key, value, expected, tmp_path):
    cfg = tiny_test.get_config()
    section, field = key.split(".")
    cfg[section][field] = value
    with pytest.raises(ValueError) as e:
        loop.train_and_evaluate(cfg, tmp_path / "run")
    assert str(e.value) == expected
    assert not (tmp_path / "run").exists()


def test_rows_written_again_after_a_restart_supersede_the_lost_ones(tmp_path):
    rows = [{"step": 1, "split": "train", "loss": 5.0}, {"step": 2, "split": "train", "loss": 4.0},
            {"step": 2, "split": "validation", "loss": 4.5}, {"step": 3, "split": "train", "loss": 3.0},
            # killed after step 3; resumed from the checkpoint at step 2
            {"step": 3, "split": "train", "loss": 3.1}, {"step": 4, "split": "train", "loss": 2.0}]
    metrics_path(tmp_path).write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [(r["step"], r["split"], r["loss"]) for r in read_metrics(tmp_path)] == [
        (1, "train", 5.0), (2, "train", 4.0), (2, "validation", 4.5), (3, "train", 3.1),
        (4, "train", 2.0)]


def test_models_cli_help_and_unknown_names(capsys):
    with pytest.raises(SystemExit) as e:
        models_cli.main(["--help"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("usage: python -m t2t.models")
    with pytest.raises(SystemExit) as e:
        models_cli.main(["tiny", "spam"])
    assert e.value.code == 2 and "unknown model variant(s) ['spam']" in capsys.readouterr().err
    assert models_cli.main(["tiny"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:3] == ["tiny", "encoder_decoder", "45,696"]
