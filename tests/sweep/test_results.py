"""Results: one DataFrame per sweep (T5 averages, best marks, formats) and the CLI."""
import io
import json
import math

import ml_collections

import numpy as np
import pandas as pd
import pytest

from t2t import pairing
from t2t import results as results_cli
from t2t.tasks import metrics as metrics_lib
from t2t.models import variants
from t2t.sweep import launch, table as results


def write_eval(run_dir, label, task, metrics, split="validation"):
    name = task if split == "validation" else f"{task}.{split}"
    launch.write_json(run_dir / "eval" / label / f"{name}.json",
                      {"task": task, "split": split, "metrics": metrics, "checkpoint": label})
    (run_dir / "eval" / label / f"{name}.predictions.jsonl").write_text("")


def write_point(w, name, rte=None, cb=None, loss=4.0, params=1000):
    launch.write_json(w / name / "point.json", {"name": name, "model": "table2_enc_dec",
                                                 "pretrain_task": "c4_span_corruption",
                                                 "params": params, "flops_per_example": 2.5e6})
    records = [{"step": 10, "split": "train", "loss": 6.0}, {"step": 20, "split": "train", "loss": loss},
               {"step": 20, "split": "validation", "loss": 9.9}]
    (w / name / "pretrain").mkdir(parents=True)
    (w / name / "pretrain" / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records) + '{"step": 30, "spl')  # cut off by a crash
    run = w / name / "finetune" / "rte_cb"
    if rte is not None:
        write_eval(run, "10", "glue_rte", {"accuracy": 0.0})   # an older checkpoint: ignored
        write_eval(run, "20", "glue_rte", {"accuracy": rte})
        write_eval(run, "20", "super_glue_cb", {"mean_3class_f1": cb[0], "accuracy": cb[1]})


@pytest.fixture
def sweep_dir(tmp_path):
    w = tmp_path / "W"
    write_point(w, "b", rte=60.0, cb=(40.0, 50.0), loss=3.5, params=2000)
    write_point(w, "a", rte=70.0, cb=(30.0, 50.0))
    write_point(w, "c")  # failed before evaluation
    launch.write_json(w / "sweep.json", {"points": ["b", "a", "c", "never_started"]})
    return w


def test_table_values_averages_and_order(sweep_dir):
    df = results.results_table(sweep_dir)
    assert list(df.index) == ["b", "a", "c"]
    assert list(df.columns) == ["model", "pretrain task", "params", "FLOPs", "pretrain loss", "GLUE",
                                "SuperGLUE", "glue_rte/accuracy", "super_glue_cb/mean_3class_f1",
                                "super_glue_cb/accuracy"]
    assert df.loc["b", "GLUE"] == 60.0 and df.loc["a", "GLUE"] == 70.0           # one group: RTE
    assert df.loc["b", "SuperGLUE"] == 45.0 and df.loc["a", "SuperGLUE"] == 40.0  # CB: mean(F1, acc)
    assert df.loc["b", "params"] == 2000 and df.loc["b", "FLOPs"] == 2.5e6
    assert df.loc["b", "pretrain loss"] == 3.5
    assert df.loc["c", ["GLUE", "SuperGLUE", "glue_rte/accuracy"]].isna().all()
    assert df.attrs["notes"] == [
        "GLUE: average over 1 of 8 groups (GLUE RTE) only; the whole benchmark was not evaluated",
        "SuperGLUE: average over 1 of 8 groups (CB) only; the whole benchmark was not evaluated"]
    best = results.best_mask(df)
    assert best.loc["a"].tolist() == [False] * 5 + [True, False, True, False, True]
    assert best.loc["b"].tolist() == [False] * 5 + [False, True, False, True, True]
    assert not best.loc["c"].any()


def test_whole_benchmark_average_matches_t5(tmp_path):
    """Every GLUE group scored: the average equals T5's (metrics.benchmark_average), and a
    glue.json written by the evaluator wins over recomputing."""
    rng = np.random.default_rng(0)
    w = tmp_path / "W"
    write_point(w, "full")
    run = w / "full" / "finetune" / "glue"
    scores = {}
    for entries in metrics_lib.GLUE_AVERAGE_GROUPS.values():
        for task, split, metric in entries:
            scores.setdefault((task, split), {})[metric] = float(rng.uniform(0, 100))
    for (task, split), values in scores.items():
        write_eval(run, "best", task, values, split)
    df = results.results_table(w)
    t5 = metrics_lib.benchmark_average(scores, "glue")["average"]
    group_means = [np.mean([scores[(t, s)][m] for t, s, m in e]) for e in metrics_lib.GLUE_AVERAGE_GROUPS.values()]
    assert math.isclose(df.loc["full", "GLUE"], t5) and math.isclose(t5, float(np.mean(group_means)))
    assert df.attrs["notes"] == []
    assert df.loc["full", "glue_mnli/validation_mismatched/accuracy"] == scores[
        ("glue_mnli", "validation_mismatched")]["accuracy"]
    assert list(df.columns)[7:10] == ["glue_cola/matthews_corrcoef", "glue_sst2/accuracy", "glue_mrpc/f1"]
    launch.write_json(run / "eval" / "best" / "glue.json",
                      {"task": "glue", "split": "validation", "metrics": {"average": 12.5}})
    assert results.results_table(w).loc["full", "GLUE"] == 12.5


def test_formats_mark_the_best(sweep_dir):
    df = results.results_table(sweep_dir, ["GLUE", "super_glue_cb"])
    assert list(df.columns)[5:] == ["GLUE", "super_glue_cb/mean_3class_f1", "super_glue_cb/accuracy"]
    md = results.format_table(df, "markdown").splitlines()
    assert md[0] == ("| point   | model          | pretrain task      |   params |   FLOPs |   pretrain loss "
                     "|      GLUE |   super_glue_cb/mean_3class_f1 |   super_glue_cb/accuracy |")
    assert md[2] == ("| b       | table2_enc_dec | c4_span_corruption |    2.00K | 2.5e+06 |            3.50 "
                     "|     60.00 |                      **40.00** |                **50.00** |")
    assert [c.strip() for c in md[4].split("|")[1:-1]][5:] == ["4.00", "-", "-", "-"]
    assert md[-1] == "GLUE: average over 1 of 8 groups (GLUE RTE) only; the whole benchmark was not evaluated"
    latex = results.format_table(df, "latex")
    assert (r"a & table2\_enc\_dec & c4\_span\_corruption & 1.00K & 2.5e+06 & 4.00 & \textbf{70.00} & 30.00 & "
            r"\textbf{50.00} \\") in latex.splitlines()
    csv = pd.read_csv(io.StringIO(results.format_table(df, "csv")), index_col=0)
    assert csv.loc["a", "GLUE"] == 70.0 and csv.loc["b", "params"] == 2000
    with pytest.raises(KeyError, match=r"--metric 'wnli' matches no column; score columns: \['GLUE'"):
        results.results_table(sweep_dir, ["wnli"])


def test_training_curves_are_long_format(sweep_dir):
    curves = results.training_curves(sweep_dir)
    assert curves[["point", "step", "loss"]].values.tolist() == [
        ["b", 10, 6.0], ["b", 20, 3.5], ["a", 10, 6.0], ["a", 20, 4.0], ["c", 10, 6.0], ["c", 20, 4.0]]


def test_results_of_a_real_sweep(micro_sweep, capsys):
    df = results.results_table(micro_sweep)
    row = df.loc["edec6.span"]
    run = micro_sweep / "edec6.span" / "finetune" / "rte_cb"
    rte = json.loads((run / "eval" / "2" / "glue_rte.json").read_text())
    cb = json.loads((run / "eval" / "2" / "super_glue_cb.json").read_text())
    assert (rte["task"], cb["task"]) == ("glue_rte", "super_glue_cb")
    assert row["glue_rte/accuracy"] == rte["metrics"]["accuracy"] == row["GLUE"]
    assert row["super_glue_cb/accuracy"] == cb["metrics"]["accuracy"]
    assert math.isclose(row["SuperGLUE"], (cb["metrics"]["accuracy"] + cb["metrics"]["mean_3class_f1"]) / 2)
    config = json.loads((micro_sweep / "edec6.span" / "pretrain" / "config.json").read_text())
    model = variants.get_model_config(config["model"]["name"], **config["model"]["overrides"])
    assert (model.num_encoder_layers, model.num_decoder_layers, model.d_model) == (1, 1, 32)
    assert row["params"] == variants.count_params(model)
    data = ml_collections.ConfigDict(config["data"])
    lengths = pairing.sequence_lengths(data, pairing.resolve_task(data)[1])
    assert row["FLOPs"] == variants.flops_per_token(model, lengths["inputs"], lengths["targets"]) \
        * lengths["targets"]
    last = [json.loads(line) for line in (micro_sweep / "edec6.span" / "pretrain" / "metrics.jsonl")
            .read_text().splitlines()][-1]
    assert (last["step"], row["pretrain loss"]) == (3, last["loss"])
    assert results_cli.main([str(micro_sweep), "--metric", "glue_rte"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].split("|")[1].strip() == "edec6.span" and out[2].count("**") == 2
