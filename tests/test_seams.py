"""The seams between packages, end to end: every architecture with every objective it pairs
with feeds the real pipeline's batches (config -> pairing -> objective -> converter) into the
model's jitted training loss; each architecture trains a few steps on the built-in corpus
through the real loop, saves, resumes, scores and (where it generates) decodes; a decoder-only
run is evaluated through `python -m t2t.evaluate --workdir` with and without `--vocab` (the
encoder-decoder's is in tests/eval/test_evaluate_cli.py). Bad pairings fail at start-up."""
import json
import pathlib

import jax
import numpy as np
import pytest

from configs import common
from t2t import batch_spec, pairing
from t2t.data import objectives, pipeline
from t2t.models import variants
from t2t.models.model import FEATURE_CONVERTERS, build_model
from t2t.train import loop
from t2t.workdir import read_metrics

MODELS = {"encoder_decoder": "tiny", "decoder_only": "tiny_decoder_only",
          "prefix_lm": "tiny_prefix_lm", "encoder_only": "tiny_encoder_only"}
ENC_DEC_OBJECTIVES = [n for n, o in objectives.OBJECTIVES.items() if o.converter == "enc_dec"]
# (model, objective, the converter the pairing must choose)
PAIRINGS = ([("encoder_decoder", o, "enc_dec") for o in ENC_DEC_OBJECTIVES]
            + [("decoder_only", "causal_lm", "lm"), ("decoder_only", "prefix_lm", "prefix_lm"),
               ("decoder_only", "span_corruption", "prefix_lm"),
               ("prefix_lm", "prefix_lm", "prefix_lm"), ("prefix_lm", "span_corruption", "prefix_lm"),
               ("encoder_only", "bert_mlm", "enc_only")])
# One full run per architecture (exact resume is tested in tests/train/test_loop.py).
RUNS = [("encoder_decoder", "span_corruption"), ("decoder_only", "causal_lm"),
        ("prefix_lm", "prefix_lm"), ("encoder_only", "bert_mlm")]


@pytest.fixture(scope="module")
def builtin_vocab():
    """The built-in corpus's vocabulary (trained once into the session's T2T_CACHE_DIR)."""
    from t2t.tasks import pretraining
    assert pretraining.BUILTIN_VOCAB.path
    return pretraining.BUILTIN_VOCAB


def _config(model: str, objective: str, steps: int = 2, **objective_args):
    cfg = common.base()
    cfg.model.name = MODELS[model]
    cfg.model.overrides = dict(vocab_size=8192)
    cfg.data.corpus = "builtin"
    cfg.data.objective = common.objective(objective, **objective_args)
    cfg.data.inputs_length = 32
    cfg.data.batch_size = 4
    cfg.train.num_steps, cfg.train.log_every, cfg.train.eval_every = steps, 1, 0
    cfg.optimizer.update(name="adamw", schedule="constant", learning_rate=1e-3, warmup_steps=0)
    cfg.checkpoint.update(every_steps=2, async_save=False)
    cfg.mesh.data = 1
    return cfg


def _pipeline_batch(data, rows: int = 4) -> dict:
    return next(iter(pipeline.get_dataset(
        data.task, "train", sequence_length=data.lengths, global_batch_size=rows,
        converter=data.converter, shard=(0, 1))))


@pytest.mark.parametrize("model,objective,converter", PAIRINGS,
                         ids=[f"{m}-{o}" for m, o, _ in PAIRINGS])
def test_every_objective_feeds_its_architecture(model, objective, converter, builtin_vocab):
    """The pairing picks the converter the model declares; a pipeline batch has exactly the
    keys, shapes and dtypes of that converter's spec; the model's loss on it is finite."""
    cfg = _config(model, objective)
    model_cfg = variants.from_run_config(cfg)
    data = pairing.resolve(cfg, model_cfg)
    assert data.converter == converter
    assert converter in FEATURE_CONVERTERS[model_cfg.architecture]
    batch = _pipeline_batch(data)
    expected = batch_spec.get(converter).shapes(data.lengths, 4)
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
        k: (s.shape, s.dtype) for k, s in expected.items()}
    net = build_model(model_cfg)
    params = net.init(jax.random.key(0), batch)
    loss, aux = jax.jit(net.loss)(params, batch)
    assert np.isfinite(loss) and aux["num_tokens"] == batch[data.spec.loss_weights].sum() > 0


@pytest.mark.parametrize("model,objective", RUNS, ids=[m for m, _ in RUNS])
def test_architecture_trains_resumes_scores_and_decodes(model, objective, tmp_path,
                                                        builtin_vocab):
    cfg = _config(model, objective)
    model_cfg = variants.from_run_config(cfg)
    result = loop.train_and_evaluate(cfg, tmp_path)
    assert result["step"] == 2 and np.isfinite(result["loss"])
    result = loop.train_and_evaluate(_config(model, objective, steps=3), tmp_path)
    records = [r for r in read_metrics(tmp_path) if r["split"] == "train"]
    assert [r["step"] for r in records] == [1, 2, 3] and result["step"] == 3

    # The trained params score the pipeline's batch: one finite log-likelihood per row.
    from t2t.eval import run as run_lib
    run = run_lib.load_run(tmp_path)
    assert run.label == "3" and run.vocab.vocab_size == builtin_vocab.vocab_size
    batch = _pipeline_batch(pairing.resolve(cfg, model_cfg))
    scores = np.asarray(jax.jit(run.model.score)(run.params, batch))
    assert scores.shape == (4,) and np.all(np.isfinite(scores)) and np.all(scores <= 0)
    if model_cfg.architecture == "encoder_only":
        return
    prompt = {k: v for k, v in batch.items() if k in (
        "encoder_input_tokens", "decoder_input_tokens", "decoder_causal_attention")}
    decoded = np.asarray(build_model(model_cfg).predict(run.params, prompt, max_decode_length=4))
    assert decoded.shape == (4, 4) and decoded.dtype == np.int32


def test_evaluate_cli_with_and_without_vocab(tmp_path, data_dir, builtin_vocab, capsys):
    """A run whose config names no vocabulary (the built-in corpus's is the task's own)."""
    from t2t import evaluate

    loop.train_and_evaluate(_config("decoder_only", "span_corruption"), tmp_path)
    capsys.readouterr()
    for extra in ([], ["--vocab", str(builtin_vocab.path)]):
        assert evaluate.main(["--workdir", str(tmp_path), "--tasks", "glue_rte", "--data_dir",
                              str(data_dir), "--max_examples", "4", *extra]) == 0
        line = json.loads(capsys.readouterr().out.splitlines()[0])
        assert line["task"] == "glue_rte" and line["inference"]["examples"] == 4
        assert 0.0 <= line["metrics"]["accuracy"] <= 100.0


@pytest.mark.parametrize("model,objective,message", [
    ("encoder_only", "span_corruption", "objective 'span_corruption' makes examples for the "
     "'enc_dec' converter (an encoder_decoder or decoder_only model); a encoder_only model "
     "takes 'enc_only' batches"),
    ("encoder_decoder", "bert_mlm", "objective 'bert_mlm' makes examples for the 'enc_only' "
     "converter (an encoder_only model); a encoder_decoder model takes 'enc_dec' batches"),
    ("encoder_decoder", "causal_lm", "objective 'causal_lm' makes examples for the 'lm' "
     "converter (a decoder_only model)"),
])
def test_bad_objective_pairing_fails_at_start_up(model, objective, message, tmp_path):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        loop.train_and_evaluate(_config(model, objective), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_model_and_converter_disagreeing_fails_naming_both(tmp_path):
    cfg = _config("encoder_decoder", "span_corruption")
    cfg.data.converter = "enc_only"
    with pytest.raises(ValueError, match=r"a encoder_decoder model consumes batches of the "
                       r"\('enc_dec',\) converter\(s\), not 'enc_only': the enc_only batch lacks "
                       r"\['decoder_input_tokens', 'decoder_target_tokens', "
                       r"'decoder_loss_weights', 'decoder_segment_ids', 'decoder_positions'\]"):
        loop.train_and_evaluate(cfg, tmp_path)


def test_objective_arguments_are_config(tmp_path):
    """--config.data.objective.<arg> reaches the objective; unknown ones list the allowed."""
    cfg = _config("encoder_decoder", "iid_denoise", noise_density=0.5)
    data = pairing.resolve(cfg, variants.get_model_config("tiny", vocab_size=8192))
    assert data.objective == {"name": "iid_denoise", "noise_density": 0.5}
    assert data.lengths == {"inputs": 32, "targets": 32}
    with pytest.raises(ValueError, match=r"objective 'iid_denoise' takes no argument\(s\) "
                       r"\['mean_noise_span_length'\]; its arguments are \['noise_density'\]"):
        pairing.resolve(_config("encoder_decoder", "iid_denoise", mean_noise_span_length=3.0),
                        variants.get_model_config("tiny", vocab_size=8192))
    cfg.data.objective.name = "spam"
    with pytest.raises(ValueError, match="unknown objective 'spam'; known: bert_mlm, bert_t5"):
        pairing.resolve_task(cfg.data)


def test_task_and_corpus_are_exclusive():
    cfg = _config("encoder_decoder", "span_corruption")
    cfg.data.task = "glue_rte"
    with pytest.raises(ValueError, match="data.task='glue_rte' and data.corpus='builtin' are "
                       "both set"):
        pairing.resolve_task(cfg.data)
    cfg.data.corpus = ""
    assert pairing.resolve_task(cfg.data)[0].name == "glue_rte"
    cfg.data.objective.noise_density = 0.3
    with pytest.raises(ValueError, match="data.objective arguments apply to data.corpus runs"):
        pairing.resolve_task(cfg.data)


def test_registered_pretraining_names_are_the_default_arguments():
    from t2t import tasks
    cfg = _config("encoder_decoder", "span_corruption")
    built, _ = pairing.resolve_task(cfg.data)
    named = tasks.get_task("builtin_span_corruption")
    assert built.name == named.name and built.description == named.description
    assert pathlib.Path(named.source.__class__.__module__.replace(".", "/")).name == "sources"
