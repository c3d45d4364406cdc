"""`python -m t2t.evaluate --predictions`: scoring files, and clear errors for bad input."""
import json
import subprocess
import sys

import pytest

from t2t import evaluate

RTE_DEV = ("index\tsentence1\tsentence2\tlabel\n0\tA man sleeps.\tA person sleeps.\tentailment\n"
           "1\tA man sleeps.\tA dog runs.\tnot_entailment\n2\tIt rains.\tIt is wet.\tentailment\n")
CB_VAL = "".join(json.dumps({"premise": "p", "hypothesis": f"h{i}", "label": label, "idx": i}) + "\n"
                 for i, label in enumerate(["entailment", "contradiction", "neutral"]))


@pytest.fixture()
def data(tmp_path):
    (tmp_path / "glue/RTE").mkdir(parents=True)
    (tmp_path / "glue/RTE/dev.tsv").write_text(RTE_DEV)
    (tmp_path / "superglue/CB").mkdir(parents=True)
    (tmp_path / "superglue/CB/val.jsonl").write_text(CB_VAL)
    return tmp_path


def write_predictions(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def run(capsys, *argv):
    assert evaluate.main(list(argv)) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_scores_every_task_in_the_file(data, capsys):
    preds = write_predictions(data / "p.jsonl", [
        {"task": "glue_rte", "prediction": p} for p in ["entailment", "entailment", "entailment"]] + [
        {"task": "super_glue_cb", "prediction": p} for p in ["entailment", "contradiction", "neutral"]])
    out = run(capsys, "--predictions", preds, "--data_dir", str(data))
    assert out[0] == {"task": "glue_rte", "split": "validation", "metrics": {"accuracy": pytest.approx(200 / 3)}}
    assert out[1] == {"task": "super_glue_cb", "split": "validation",
                      "metrics": {"mean_3class_f1": 100.0, "accuracy": 100.0}}
    assert len(out) == 2  # no benchmark is complete, so no average
    only_cb = run(capsys, "--predictions", preds, "--data_dir", str(data), "--tasks", "super_glue_cb")
    assert [o["task"] for o in only_cb] == ["super_glue_cb"]


def test_mnli_predictions_divide_among_its_validation_splits(tmp_path, capsys):
    (tmp_path / "glue/MNLI").mkdir(parents=True)
    for name, label in [("dev_matched", "neutral"), ("dev_mismatched", "contradiction")]:
        (tmp_path / f"glue/MNLI/{name}.tsv").write_text(
            f"index\tsentence1\tsentence2\tgold_label\n0\tP\tH\t{label}\n1\tP\tH\t{label}\n")
    in_order = write_predictions(tmp_path / "a.jsonl", [{"task": "glue_mnli", "prediction": p} for p in
                                                       ["neutral", "neutral", "contradiction", "neutral"]])
    out = run(capsys, "--predictions", in_order, "--data_dir", str(tmp_path))
    assert [(o["split"], o["metrics"]["accuracy"]) for o in out] == [
        ("validation_matched", 100.0), ("validation_mismatched", 50.0)]
    labelled = write_predictions(tmp_path / "b.jsonl", [
        {"task": "glue_mnli", "split": "validation_mismatched", "prediction": "contradiction"},
        {"task": "glue_mnli", "split": "validation_matched", "prediction": "entailment"},
        {"task": "glue_mnli", "split": "validation_mismatched", "prediction": "contradiction"},
        {"task": "glue_mnli", "split": "validation_matched", "prediction": "neutral"}])
    out = run(capsys, "--predictions", labelled, "--data_dir", str(tmp_path))
    assert [o["metrics"]["accuracy"] for o in out] == [50.0, 100.0]


@pytest.mark.parametrize("rows,args,message", [
    ([{"task": "glue_rte", "prediction": "entailment"}] * 2, [],
     r"p.jsonl: 2 predictions for task 'glue_rte' but it has 3 examples \(validation: 3\)"),
    ([{"task": "glue_rte", "prediction": "x"}] * 3, ["--tasks", "glue_rtee"],
     "unknown task or mixture 'glue_rtee'; did you mean glue_rte"),
    ([{"task": "glue_rte", "prediction": "x"}] * 3, ["--tasks", "glue_rte,super_glue_cb"],
     r"no predictions for task\(s\) \['super_glue_cb'\]"),
    ([{"task": "glue_cola", "prediction": "x"}], [], r"no file matches '.*glue/CoLA/dev.tsv'"),
    ([{"task": "glue_rte", "prediction": 1}], [], r"p.jsonl:1: expected \{\"task\": str, \"prediction\": str\}"),
])
def test_bad_input_gives_a_clear_error(data, rows, args, message):
    preds = write_predictions(data / "p.jsonl", rows)
    with pytest.raises(SystemExit, match=message):
        evaluate.main(["--predictions", preds, "--data_dir", str(data), *args])


def test_malformed_line_and_missing_file(data):
    bad = data / "bad.jsonl"
    bad.write_text('{"task": "glue_rte", "prediction": "entailment"}\n{"task": \n')
    with pytest.raises(SystemExit, match=r"bad.jsonl:2: malformed JSON"):
        evaluate.main(["--predictions", str(bad), "--data_dir", str(data)])
    with pytest.raises(SystemExit, match="predictions file not found: .*none.jsonl"):
        evaluate.main(["--predictions", str(data / "none.jsonl")])


def test_model_evaluation_needs_a_training_workdir_and_tasks(tmp_path, capsys):
    with pytest.raises(SystemExit, match=r"config.json not found: --workdir must be a t2t training workdir"):
        evaluate.main(["--workdir", str(tmp_path), "--tasks", "glue_rte"])
    for argv, message in [(["--tasks", "glue_rte"], "exactly one of --predictions"),
                          (["--workdir", str(tmp_path)], "--workdir needs --tasks")]:
        with pytest.raises(SystemExit):
            evaluate.main(argv)
        assert message in capsys.readouterr().err


def test_module_entry_point(data):
    preds = write_predictions(data / "p.jsonl", [{"task": "glue_rte", "prediction": "entailment"}] * 3)
    proc = subprocess.run([sys.executable, "-m", "t2t.evaluate", "--predictions", preds, "--data_dir", str(data)],
                          capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(proc.stdout) == {"task": "glue_rte", "split": "validation",
                                       "metrics": {"accuracy": pytest.approx(200 / 3)}}
