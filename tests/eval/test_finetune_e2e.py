"""End to end on CPU with real data: pretrain a tiny model (C4 span corruption, T5's vocabulary),
fine-tune it on RTE from that workdir with task evaluation and the best checkpoint, then
`python -m t2t.evaluate --workdir ...` by decoding and by rank classification."""
import json

import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import finetune_glue, tiny_test
from t2t import evaluate
from t2t.train import loop
from t2t.workdir import read_metrics, restore

pytestmark = pytest.mark.usefixtures("fast_compile")

# One encoder and one decoder layer (fast compiles) with T5's 32128-id embedding.
MODEL = dict(vocab_size=32128, num_encoder_layers=1, num_decoder_layers=1)
RTE_LABELS = {"entailment", "not_entailment"}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, data_dir, t5_vocab_path):
    cfg = tiny_test.get_config()
    cfg.model.overrides = dict(MODEL)
    cfg.data.task, cfg.data.vocab, cfg.data.data_dir = "c4_span_corruption", str(t5_vocab_path), str(data_dir)
    cfg.data.corpus = ""  # the registered task, not tiny_test's corpus + objective
    cfg.train.num_steps = cfg.checkpoint.every_steps = 2
    cfg.checkpoint.async_save = False
    workdir = tmp_path_factory.mktemp("pretrained")
    loop.train_and_evaluate(cfg, str(workdir))
    return workdir


def _finetune_config(pretrained, data_dir, vocab_path, **model):
    cfg = finetune_glue.get_config()
    cfg.init_from = str(pretrained)
    cfg.model.name = "tiny"
    cfg.model.overrides = dict(MODEL, dropout_rate=0.1, **model)
    cfg.data.task, cfg.data.vocab, cfg.data.data_dir = "glue_rte", str(vocab_path), str(data_dir)
    cfg.data.inputs_length, cfg.data.targets_length = 64, 8
    cfg.data.batch_size, cfg.data.pack = 8, False
    cfg.train.num_steps, cfg.train.eval_every, cfg.train.log_every = 4, 2, 2
    cfg.checkpoint.every_steps, cfg.checkpoint.async_save = 2, False
    cfg.mesh.data = 1
    cfg.eval.max_examples, cfg.eval.method, cfg.eval.batch_size = 16, "rank", 16
    return cfg


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, pretrained, data_dir, t5_vocab_path):
    workdir = tmp_path_factory.mktemp("finetuned")
    loop.train_and_evaluate(_finetune_config(pretrained, data_dir, t5_vocab_path), str(workdir))
    return workdir


def _checkpoint_params(workdir, step):
    return ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")["params"]


def _assert_same_tree(a, b):
    flat_a, flat_b = (dict(_leaves(t)) for t in (a, b))
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:
        np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]), err_msg=key)


def _leaves(tree, prefix=""):
    for k, v in tree.items():
        yield from _leaves(v, f"{prefix}{k}/") if isinstance(v, dict) else [(prefix + k, v)]


def test_finetune_defaults_follow_t5():
    cfg = finetune_glue.get_config()
    optimizer = cfg.optimizer
    assert (optimizer.name, optimizer.schedule, optimizer.learning_rate) == ("adafactor", "constant", 1e-3)
    assert cfg.model.overrides.dropout_rate == 0.1 and cfg.init_from == ""
    assert cfg.data.task == "glue" and cfg.eval.tasks == "glue"
    cfg.data.task = "glue_rte"  # as --config.data.task=glue_rte does
    assert cfg.eval.tasks == "glue_rte"


def test_finetuning_logs_task_metrics_and_keeps_the_best_params(finetuned):
    records = [r for r in read_metrics(finetuned) if r["split"] == "task_eval"]
    assert [r["step"] for r in records] == [2, 4]
    assert all(set(r) == {"step", "split", "glue_rte/accuracy", "examples_per_second"} for r in records)
    accuracies = [r["glue_rte/accuracy"] for r in records]
    best_step = [2, 4][int(np.argmax(accuracies))]  # the first of equals: only improvements replace it
    best = json.loads((finetuned / "best" / "metrics.json").read_text())
    assert best == {"step": best_step, "metric": "glue_rte/accuracy", "value": max(accuracies),
                    "metrics": {"glue_rte/accuracy": max(accuracies)}}
    _assert_same_tree(ocp.StandardCheckpointer().restore(finetuned / "best" / "params"),
                      _checkpoint_params(finetuned, best_step))
    assert not (finetuned / "best.tmp").exists() and not (finetuned / "best.old").exists()


@pytest.mark.parametrize("method", ["decode", "rank"])
def test_evaluate_cli_writes_metrics_and_predictions(finetuned, method, capsys):
    assert evaluate.main(["--workdir", str(finetuned), "--tasks", "glue_rte", "--max_examples", "16",
                          "--method", method]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((finetuned / "eval" / "4" / "glue_rte.json").read_text())
    assert printed == written
    assert set(written) == {"task", "split", "checkpoint", "method", "metrics", "inference"}
    assert (written["task"], written["split"], written["checkpoint"], written["method"]) == (
        "glue_rte", "validation", "4", method)
    assert set(written["metrics"]) == {"accuracy"} and written["inference"]["examples_per_second"] > 0
    lines = (finetuned / "eval" / "4" / "glue_rte.predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 16 and all(set(r) == {"input", "target", "prediction"} for r in records)
    assert records[0]["input"].startswith("rte sentence1: ") and {r["target"] for r in records} <= RTE_LABELS
    correct = np.mean([r["prediction"] == r["target"] for r in records])
    assert written["metrics"]["accuracy"] == pytest.approx(100 * correct)
    if method == "rank":  # the same params and examples as the task evaluation at step 4
        assert {r["prediction"] for r in records} <= RTE_LABELS
        step4 = [r for r in read_metrics(finetuned) if r["split"] == "task_eval"][-1]
        assert written["metrics"]["accuracy"] == pytest.approx(step4["glue_rte/accuracy"])


def test_evaluate_the_best_params_directory(finetuned, capsys):
    evaluate.main(["--workdir", str(finetuned), "--tasks", "glue_rte", "--max_examples", "16",
                   "--method", "rank", "--checkpoint", str(finetuned / "best")])
    printed = json.loads(capsys.readouterr().out)
    best = json.loads((finetuned / "best" / "metrics.json").read_text())
    assert printed["checkpoint"] == "best" and printed["metrics"]["accuracy"] == pytest.approx(best["value"])
    assert (finetuned / "eval" / "best" / "glue_rte.predictions.jsonl").is_file()


def test_init_from_reads_a_workdir_and_a_converted_checkpoint(pretrained, finetuned, data_dir, t5_vocab_path,
                                                              tmp_path):
    from t2t.eval import run as run_lib
    from t2t.workdir import model_dir

    run = run_lib.load_run(pretrained, vocab=str(t5_vocab_path))  # restores as init_from does
    _assert_same_tree(run.params, _checkpoint_params(pretrained, 2))
    model_dir.save_checkpoint(tmp_path / "converted", run.model_cfg, run.params)  # t2t.convert's layout
    _assert_same_tree(run_lib.load_run(pretrained, tmp_path / "converted").params, run.params)
    model_cfg = run.model_cfg.copy_and_resolve_references()
    model_cfg.dropout_rate = 0.1
    for path in (pretrained, tmp_path / "converted", finetuned / "best"):
        restore.check_init_from(path, model_cfg)  # dropout may differ
    with pytest.raises(ValueError, match=r"init_from=.*pretrained.*differs from this run's model in "
                                         r"d_model=32 there, 16 here"):
        loop.train_and_evaluate(_finetune_config(pretrained, data_dir, t5_vocab_path, d_model=16),
                                str(tmp_path / "mismatch"))
    with pytest.raises(FileNotFoundError, match="expected a t2t workdir .* or a converted model dir"):
        restore.check_init_from(data_dir, model_cfg)


@pytest.mark.parametrize("args,message", [
    (["--tasks", "glue_rtee"], "unknown task or mixture 'glue_rtee'; did you mean glue_rte"),
    (["--tasks", "glue_cola", "--data_dir", "{empty}"], r"no file matches '.*glue/CoLA/dev.tsv'"),
    (["--tasks", "glue_rte", "--checkpoint", "7"], r"no checkpoint at step 7; it has steps \[2, 4\]"),
    (["--tasks", "glue_rte", "--checkpoint", "{empty}"],
     "expected a step number, .* a directory with params/"),
])
def test_bad_model_evaluation_input_gives_a_clear_error(finetuned, tmp_path, args, message):
    args = [a.replace("{empty}", str(tmp_path)) for a in args]
    with pytest.raises(SystemExit, match=message):
        evaluate.main(["--workdir", str(finetuned), *args])
