"""Inference for task evaluation: the evaluator's greedy decode equals model.predict, rank
classification picks the label model.score likes best, batches follow the converters."""
import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest

from t2t.data import registry, sources
from t2t.data import vocab as vocab_lib
from t2t.eval import inference
from t2t.models.model import build_model
from t2t.models.variants import get_model_config
from t2t import sharding
import t2t.tasks  # noqa: F401  (registers the built-in tasks)

pytestmark = pytest.mark.usefixtures("fast_compile")

PAIRS = [("A man sleeps.", "A person sleeps.", 0), ("A man sleeps on the mat.", "A dog runs.", 1),
         ("It rains on the hills.", "The hills are wet.", 0), ("The cat sat.", "The cat ran in the park.", 1),
         ("Birds sing in the morning.", "Birds are quiet.", 1)]
TEXTS = [f"rte sentence1: {a} sentence2: {b} entailment not_entailment" for a, b, _ in PAIRS] * 20
LENGTHS = {"inputs": 24, "targets": 8}  # every label fits: not_entailment is 6 pieces + EOS


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    path = vocab_lib.train(TEXTS, tmp_path_factory.mktemp("spm") / "rte.model", vocab_size=80)
    return vocab_lib.SentencePieceVocabulary(path)


@pytest.fixture(scope="module")
def rte():
    rows = [{"sentence1": a, "sentence2": b, "label": label, "idx": i}
            for i, (a, b, label) in enumerate(PAIRS)]
    return dataclasses.replace(registry.get_task("glue_rte"),
                               source=sources.InMemorySource({"validation": rows}))


def _model(name, vocab, seed):
    cfg = get_model_config(name, vocab_size=vocab.vocab_size, num_encoder_layers=1, num_decoder_layers=1)
    model = build_model(cfg)
    batch = {"decoder_input_tokens": np.zeros((1, 4), np.int32),
             "decoder_target_tokens": np.ones((1, 4), np.int32),
             "decoder_loss_weights": np.ones((1, 4), np.int32)}
    if cfg.architecture == "encoder_decoder":
        batch["encoder_input_tokens"] = np.ones((1, 4), np.int32)
    params = nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(seed), batch))
    # Unit-normal weights: a freshly initialised tiny model predicts PAD everywhere.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    return model, jax.tree.unflatten(tree, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


@pytest.fixture(scope="module", params=["tiny", "tiny_prefix_lm"])
def setup(request, vocab, rte):
    model, params = _model(request.param, vocab, seed=len(request.param))
    runner = inference.Inference(model, vocab, sequence_length=LENGTHS, batch_size=3)
    return model, params, runner, runner.examples(rte, "validation")


def _pad(rows, width=None):
    width = width or max(map(len, rows))
    return np.asarray([list(r) + [0] * (width - len(r)) for r in rows], np.int32)


def _hand_batch(architecture, inputs, targets):
    """The batch written out by hand: enc-dec, or prefix LM (inputs then targets, the prefix
    and the first target position fully visible, loss on the targets)."""
    if architecture == "encoder_decoder":
        tgt = _pad(targets)
        return {"encoder_input_tokens": _pad(inputs), "decoder_target_tokens": tgt,
                "decoder_input_tokens": np.pad(tgt[:, :-1], ((0, 0), (1, 0))),
                "decoder_loss_weights": (tgt > 0).astype(np.int32)}
    seqs = _pad([list(i) + list(t) for i, t in zip(inputs, targets)])
    n = np.asarray([len(i) for i in inputs])[:, None]
    pos = np.arange(seqs.shape[1])[None]
    return {"decoder_input_tokens": np.pad(seqs[:, :-1], ((0, 0), (1, 0))), "decoder_target_tokens": seqs,
            "decoder_loss_weights": ((pos >= n) & (seqs > 0)).astype(np.int32),
            "decoder_causal_attention": (pos <= n).astype(np.int32)}


def test_examples_come_from_the_task_preprocessors(setup, vocab):
    _, _, runner, examples = setup
    assert len(examples) == 5
    first = examples[0]
    assert first["inputs_pretokenized"] == "rte sentence1: A man sleeps. sentence2: A person sleeps."
    assert first["targets_pretokenized"] == "entailment"
    assert list(first["targets"]) == vocab.encode("entailment") + [1]
    assert all(len(ex["inputs"]) <= LENGTHS["inputs"] and ex["inputs"][-1] == 1 for ex in examples)
    trimmed = [len(vocab.encode(ex["inputs_pretokenized"])) >= LENGTHS["inputs"] for ex in examples]
    assert any(trimmed)


def test_greedy_decode_equals_model_predict(setup):
    model, params, runner, examples = setup
    stats = inference.Stats(examples=len(examples))
    got = runner.decode(params, examples, stats)
    inputs = [ex["inputs"] for ex in examples]
    length = max(len(ex["targets"]) for ex in examples)
    if model.architecture == "encoder_decoder":
        batch = {"encoder_input_tokens": _pad(inputs, 30)}
    else:  # the prompt: start token + inputs, all fully visible
        prompt = _pad([[0] + list(i) for i in inputs], 30)
        batch = {"decoder_input_tokens": prompt, "decoder_causal_attention": (prompt > 0).astype(np.int32)}
        batch["decoder_causal_attention"][:, 0] = 1
    ids = np.asarray(model.predict(params, batch, max_decode_length=length))
    assert got == [runner.vocab.decode(row) for row in ids]
    assert len(set(got)) >= 3  # a random model: varied text
    assert stats.rows == 5 and stats.seconds > 0 and stats.compile_seconds > 0


def test_rank_classification_picks_the_best_model_score(setup, rte):
    model, params, runner, examples = setup
    result, info = runner.evaluate(params, rte, "validation", examples, method="rank")
    labels = ["entailment", "not_entailment"]
    targets = [runner.vocab.encode(label) + [1] for label in labels]
    scores = np.stack([np.asarray(jax.jit(model.score)(params, _hand_batch(
        model.architecture, [ex["inputs"] for ex in examples], [t] * len(examples)))) for t in targets], 1)
    assert result.predictions == [labels[i] for i in scores.argmax(1)]
    np.testing.assert_allclose(runner.score(params, examples, ["not_entailment"] * 5), scores[:, 1],
                               rtol=1e-5)
    truth = np.asarray([label for _, _, label in PAIRS])
    assert result.metrics == {"accuracy": pytest.approx(100 * np.mean(scores.argmax(1) == truth))}
    assert info["method"] == "rank" and info["examples"] == 5 and info["rows"] == 10
    assert info["examples_per_second"] > 0


def test_rows_sharded_over_devices_give_the_same_scores(setup):
    model, params, runner, examples = setup
    mesh = sharding.make_mesh({"data": 2})
    sharded = inference.Inference(model, runner.vocab, sequence_length=LENGTHS, batch_size=3,
                                  sharding=sharding.batch_sharding(mesh))
    assert sharded.batch_size == 4  # rounded up to a multiple of the 2 row shards
    targets = ["entailment", "not_entailment", "entailment", "x", "entailment"]
    np.testing.assert_allclose(sharded.score(params, examples, targets),
                               runner.score(params, examples, targets), rtol=1e-5)


def test_generation_tasks_are_decoded_and_bad_arguments_fail(setup, vocab):
    model, params, runner, _ = setup
    row = {"text": "Tom said he won.", "span1_index": 0, "span2_index": 2, "span1_text": "Tom",
           "span2_text": "he", "label": 1, "idx": 0}
    wsc = dataclasses.replace(registry.get_task("super_glue_wsc"),
                              source=sources.InMemorySource({"validation": [row]}))
    examples = runner.examples(wsc, "validation")
    result, info = runner.evaluate(params, wsc, "validation", examples, method="rank")
    assert info["method"] == "decode" and len(result.predictions) == 1
    with pytest.raises(ValueError, match=r"method='greedy': expected one of \('decode', 'rank'\)"):
        runner.evaluate(params, wsc, "validation", examples, method="greedy")
    with pytest.raises(ValueError, match="no examples to evaluate"):
        runner.evaluate(params, wsc, "validation", [], method="decode")
    encoder_only = build_model(get_model_config("tiny_encoder_only"))
    with pytest.raises(ValueError, match="needs an encoder_decoder or decoder_only model"):
        inference.Inference(encoder_only, vocab, sequence_length=LENGTHS)
