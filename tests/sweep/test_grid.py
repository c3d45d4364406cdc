"""The T5 grids: points, configs at the paper's and the tiny scale, parametrised objectives."""
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from t2t import pairing
from t2t.data import objectives, registry
from t2t.tasks import pretraining
from t2t.data.vocab import SentencePieceVocabulary
from t2t.models import variants
from t2t.sweep import grid as grid_lib
import t2t.tasks  # noqa: F401  (registers the built-in tasks)

from sweep_testing import REPO

GRIDS = {name: grid_lib.load_grid(REPO / "experiments" / f"{name}.py")
         for name in ("t5_table2", "t5_objectives", "t5_corruption_rates", "t5_span_lengths")}


def _pretraining(cfg):
    """(the task the pairing builds, the objective arguments set) of a pretraining config."""
    task, objective = pairing.resolve_task(cfg.data)
    return task.name, dict(objective.kwargs)


def test_grid_points_and_pretraining_tasks():
    tasks = {name: [(p.name, *_pretraining(g.config("paper", p.name, "pretrain"))) for p in g.points]
             for name, g in GRIDS.items()}
    assert tasks["t5_table2"] == [
        ("enc_dec.denoising", "c4_span_corruption", {}), ("enc_dec.lm", "c4_prefix_lm", {}),
        ("enc_dec_shared.denoising", "c4_span_corruption", {}), ("enc_dec_shared.lm", "c4_prefix_lm", {}),
        ("enc_dec_6layer.denoising", "c4_span_corruption", {}), ("enc_dec_6layer.lm", "c4_prefix_lm", {}),
        ("lm.denoising", "c4_span_corruption", {}), ("lm.lm", "c4_causal_lm", {}),
        ("prefix_lm.denoising", "c4_span_corruption", {}), ("prefix_lm.lm", "c4_prefix_lm", {})]
    assert tasks["t5_objectives"] == [
        ("prefix_lm", "c4_prefix_lm", {}), ("bert_style", "c4_bert_t5", {}),
        ("deshuffling", "c4_deshuffle", {}), ("mass_style", "c4_mass", {}),
        ("replace_spans", "c4_iid_denoise", {}), ("drop_tokens", "c4_drop_tokens", {})]
    assert tasks["t5_corruption_rates"] == [
        ("rate_10", "c4_iid_denoise", {"noise_density": 0.1}), ("rate_15", "c4_iid_denoise", {}),
        ("rate_25", "c4_iid_denoise", {"noise_density": 0.25}),
        ("rate_50", "c4_iid_denoise", {"noise_density": 0.5})]
    assert tasks["t5_span_lengths"] == [
        ("iid", "c4_iid_denoise", {}),
        ("span_2", "c4_span_corruption", {"mean_noise_span_length": 2.0}),
        ("span_3", "c4_span_corruption", {}),
        ("span_5", "c4_span_corruption", {"mean_noise_span_length": 5.0}),
        ("span_10", "c4_span_corruption", {"mean_noise_span_length": 10.0})]
    # Building the configs registered nothing: points are plain config.
    assert not [n for n in registry.TaskRegistry.names() if n.startswith("c4_") and n.count("_d0")]
    models = {p.model for g in GRIDS.values() for p in g.points}
    assert models == {"table2_enc_dec", "table2_enc_dec_shared", "table2_enc_dec_6layer",
                      "table2_lm", "table2_prefix_lm"}


def test_paper_scale_is_the_t5_baseline():
    g = GRIDS["t5_table2"]
    assert g.stages("paper") == ["pretrain", "finetune.glue", "evaluate.glue",
                                 "finetune.super_glue", "evaluate.super_glue"]
    pre = g.config("paper", "enc_dec.denoising", "pretrain")
    assert (pre.model.name, pre.model.overrides.to_dict()) == ("table2_enc_dec", {})
    assert (pre.data.corpus, pre.data.objective.name, pre.data.task) == ("c4", "span_corruption", "")
    assert pairing.sequence_lengths(pre.data, pairing.resolve_task(pre.data)[1]) == {
        "inputs": 512, "targets": 114}
    assert (pre.data.batch_size, pre.data.pack) == (128, True)
    assert (pre.train.num_steps, pre.optimizer.name, pre.optimizer.schedule, pre.optimizer.warmup_steps) == (
        2**19, "adafactor", "rsqrt", 10_000)
    lm = g.config("paper", "lm.lm", "pretrain")
    task, objective = pairing.resolve_task(lm.data)
    assert (task.name, pairing.sequence_lengths(lm.data, objective)["targets"]) == ("c4_causal_lm", 512)
    ft = g.config("paper", "prefix_lm.lm", "finetune.super_glue")
    assert (ft.model.name, ft.data.task, ft.eval.tasks, ft.train.num_steps) == (
        "table2_prefix_lm", "super_glue", "super_glue", 2**18)
    assert (ft.optimizer.name, ft.optimizer.schedule, ft.optimizer.learning_rate) == ("adafactor", "constant", 1e-3)
    assert (ft.train.eval_every, ft.checkpoint.every_steps, ft.data.inputs_length, ft.data.targets_length) == (
        5000, 5000, 512, 128)


def test_tiny_scale_divides_layers_by_six_and_keeps_the_architecture():
    g = GRIDS["t5_table2"]
    shapes = {}
    for p in g.points[::2]:
        cfg = g.config("tiny", p.name, "pretrain")
        m = variants.get_model_config(cfg.model.name, **cfg.model.overrides.to_dict())
        paper = variants.get_model_config(cfg.model.name)
        assert (m.architecture, m.shared_encoder_decoder, m.prefix_lm) == (
            paper.architecture, paper.shared_encoder_decoder, paper.prefix_lm)
        assert (m.d_model, m.d_ff, m.num_heads, m.vocab_size, m.dropout_rate) == (64, 256, 4, 32128, 0.0)
        shapes[p.name] = (m.num_encoder_layers, m.num_decoder_layers)
    assert shapes == {"enc_dec.denoising": (2, 2), "enc_dec_shared.denoising": (2, 2),
                      "enc_dec_6layer.denoising": (1, 1), "lm.denoising": (0, 2),
                      "prefix_lm.denoising": (0, 2)}
    ft = g.config("tiny", "lm.lm", "finetune.rte_cb")
    assert ft.model.overrides.to_dict() == g.config("tiny", "lm.lm", "pretrain").model.overrides.to_dict()
    assert (ft.data.task, ft.train.num_steps, ft.optimizer.learning_rate, ft.eval.tasks) == (
        "glue_rte,super_glue_cb", 20, 1e-2, "")
    rates = [(t.name, r) for t, r in pairing.resolve_task(ft.data)[0].task_rates("train")]
    assert rates == [("glue_rte", 1.0), ("super_glue_cb", 1.0)]


def test_grid_file_is_a_config_file_for_t2t_train():
    path = REPO / "experiments" / "t5_span_lengths.py"
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=flag_values)
    flag_values(["train", f"--config={path}:scale=tiny,point=span_10,stage=pretrain"])
    cfg = flag_values.config
    task, objective = pairing.resolve_task(cfg.data)
    assert (cfg.data.objective.name, cfg.data.objective.mean_noise_span_length) == ("span_corruption", 10.0)
    assert pairing.sequence_lengths(cfg.data, objective) == {"inputs": 64, "targets": 13}
    assert 13 == objectives.random_spans_helper(64, mean_noise_span_length=10.0)[1]
    assert task.default_sequence_length == {"inputs": 512, "targets": 99}


@pytest.mark.parametrize("spec, message", [
    (None, "a grid file is a config only with a config string: --config GRID.py:scale=SCALE,point=POINT,stage=STAGE"),
    ("scale=tiny,point=iid", "config string 'scale=tiny,point=iid': missing stage"),
    ("scale=tiny,pt=iid,stage=pretrain", "config string 'scale=tiny,pt=iid,stage=pretrain': expected "
     "scale=...,point=...,stage=..., got 'pt=iid'"),
])
def test_bad_config_strings(spec, message):
    with pytest.raises(ValueError) as e:
        GRIDS["t5_span_lengths"].get_config(spec)
    assert str(e.value) == message


def test_unknown_names_are_reported_with_the_choices():
    g = GRIDS["t5_corruption_rates"]
    with pytest.raises(KeyError, match=r"grid 't5_corruption_rates' has no point 'rate_5'; points: "
                       r"\['rate_10', 'rate_15', 'rate_25', 'rate_50'\]"):
        g.config("tiny", "rate_5", "pretrain")
    with pytest.raises(KeyError, match=r"has no scale 'huge'; scales: \['paper', 'tiny'\]"):
        g.config("huge", "rate_10", "pretrain")
    with pytest.raises(KeyError, match=r"has no stage 'finetune.glue'; stages: \['pretrain', "
                       r"'finetune.rte_cb', 'evaluate.rte_cb'\]"):
        g.config("tiny", "rate_10", "finetune.glue")
    with pytest.raises(KeyError, match=r"override 'train.num_stepz': config has no field 'num_stepz' under train"):
        grid_lib.Grid("x", [grid_lib.Point("a", "tiny", "span_corruption", overrides={"train.num_stepz": 1})]
                      ).config("tiny", "a", "pretrain")
    with pytest.raises(ValueError, match="point 'a' is defined twice"):
        grid_lib.Grid("x", [grid_lib.Point("a", "tiny", "mass")] * 2)
    with pytest.raises(ValueError, match="point name 'a b' may use only"):
        grid_lib.Grid("x", [grid_lib.Point("a b", "tiny", "mass")])
    with pytest.raises(ValueError, match=r"objective 'deshuffle' takes no argument\(s\) "
                       r"\['noise_density'\]; its arguments are none"):
        grid_lib.Grid("x", [grid_lib.Point("a", "tiny", "deshuffle", {"noise_density": 0.5})])


def _noise_counts(objective, vocab, lengths, data_dir):
    """(raw tokens, noise tokens, noise spans) per example of a denoising objective's C4 chunks."""
    first_sentinel = vocab.vocab_size - vocab.extra_ids
    task = pretraining.pretraining_task("c4", objective).with_vocabulary(vocab)
    out = []
    for ex in list(task.get_dataset("validation", sequence_length=lengths, data_dir=data_dir))[:40]:
        inputs, targets = np.asarray(ex["inputs"])[:-1], np.asarray(ex["targets"])[:-1]  # EOS off
        spans = int((inputs >= first_sentinel).sum())
        noise = len(targets) - int((targets >= first_sentinel).sum())
        out.append((len(inputs) - spans + noise, noise, spans))
    return np.asarray(out)


def test_parametrised_tasks_corrupt_what_they_say(data_dir, t5_vocab_path):
    """Noise density and mean span length measured on real C4 chunks of the registered tasks."""
    vocab = SentencePieceVocabulary(t5_vocab_path)
    counts = _noise_counts(objectives.get_objective("iid_denoise", noise_density=0.5), vocab,
                           {"inputs": 128, "targets": 128}, data_dir)
    assert abs(counts[:, 1].sum() / counts[:, 0].sum() - 0.5) < 0.03   # i.i.d.: binomial
    counts = _noise_counts(objectives.get_objective("span_corruption", mean_noise_span_length=10.0),
                           vocab, {"inputs": 128, "targets": 128}, data_dir)
    raw = objectives.random_spans_helper(128, mean_noise_span_length=10.0)[0]
    full = counts[counts[:, 0] == raw]
    assert len(full) >= 30
    noise = int(round(raw * 0.15))                       # T5's random_spans_noise_mask rounding
    assert (full[:, 1] == noise).all() and (full[:, 2] == int(round(noise / 10.0))).all()
