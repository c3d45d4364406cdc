"""`python -m t2t.score`: one JSON line per pair, log-likelihood of target given input."""
import io
import json

import jax
import numpy as np
import pytest
from scipy.special import log_softmax

from t2t import score as score_cli
from t2t.data import vocab as vocab_lib
from t2t.models.model import build_model, example_batch
from t2t.models.variants import get_model_config
from t2t.workdir import model_dir

from model_testing import fast_jit, shift_right

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "birds sing in the morning",
         "the quick brown fox jumps over the lazy dog", "rain falls on green hills"] * 20


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    path = vocab_lib.train(TEXTS, tmp_path_factory.mktemp("spm") / "tiny.model", vocab_size=60)
    return vocab_lib.SentencePieceVocabulary(path)


def _checkpoint(tmp_path, name, vocab_size):
    cfg = get_model_config(name, vocab_size=vocab_size)
    model = build_model(cfg)
    params = fast_jit(model.init)(jax.random.PRNGKey(0), example_batch(cfg.architecture))
    model_dir.save_checkpoint(tmp_path / name, cfg, params)
    return model, params


def _reference(model, params, pairs, architecture):
    """Log-likelihoods straight from the logits of a hand-built batch (own padding width)."""
    width = 30   # not a power of two: differs from the CLI's padding
    rows, skip = [], []
    for inp, tgt in pairs:
        rows.append(tgt if architecture == "encoder_decoder" else inp + tgt)
        skip.append(0 if architecture == "encoder_decoder" else len(inp))
    t = np.zeros((len(rows), width), np.int32)
    weights = np.zeros_like(t)
    for i, (row, k) in enumerate(zip(rows, skip)):
        t[i, :len(row)] = row
        weights[i, k:len(row)] = 1
    batch = {"decoder_input_tokens": shift_right(t), "decoder_target_tokens": t,
             "decoder_loss_weights": weights}
    if architecture == "encoder_decoder":
        batch["encoder_input_tokens"] = np.zeros((len(rows), width), np.int32)
        for i, (inp, _) in enumerate(pairs):
            batch["encoder_input_tokens"][i, :len(inp)] = inp
    else:
        batch["decoder_causal_attention"] = (np.arange(width)[None] <= np.asarray(skip)[:, None]
                                             ).astype(np.int32)
    logits = np.asarray(fast_jit(model.logits)(params, batch), np.float64)
    lp = np.take_along_axis(log_softmax(logits, -1), t[..., None], -1)[..., 0]
    return (lp * weights).sum(-1)


@pytest.mark.parametrize("name", ["tiny", "tiny_prefix_lm"])
def test_score_cli_matches_logits(vocab, tmp_path, name):
    model, params = _checkpoint(tmp_path, name, vocab_size=vocab.vocab_size + 4)
    pairs = [{"input": "the cat sat", "target": "on the mat"},
             {"input": "birds sing in the morning rain", "target": "dog"}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in pairs) + "\n")
    out = io.StringIO()
    assert score_cli.main(["--checkpoint", str(tmp_path / name), "--vocab", vocab.path,
                           "--file", str(path)], out=out) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["input"], r["target"]) for r in rows] == [(p["input"], p["target"]) for p in pairs]
    ids = [(vocab.encode(r["input"]) + [1], vocab.encode(r["target"]) + [1]) for r in rows]
    expected = _reference(model, params, ids, model.architecture)
    for row, (_, tgt), ll in zip(rows, ids, expected):
        assert row["num_tokens"] == len(tgt)
        assert row["log_likelihood"] == pytest.approx(ll, abs=1e-4)
    single = io.StringIO()
    score_cli.main(["--checkpoint", str(tmp_path / name), "--vocab", vocab.path,
                    "--input", pairs[0]["input"], "--target", pairs[0]["target"]], out=single)
    assert json.loads(single.getvalue())["log_likelihood"] == pytest.approx(
        rows[0]["log_likelihood"], abs=1e-4)


def test_score_cli_bad_inputs(vocab, tmp_path):
    cfg = get_model_config("tiny", vocab_size=vocab.vocab_size)
    (tmp_path / "model_config.json").write_text(cfg.to_json())  # errors come before params
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "target": "b"}\n{"input": "only"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing key\(s\) \['target'\]; expected \['input', 'target'\]"):
        score_cli.main(["--checkpoint", str(tmp_path), "--vocab", vocab.path,
                        "--file", str(bad)], out=io.StringIO())
    (tmp_path / "model_config.json").write_text(get_model_config("tiny", vocab_size=32).to_json())
    with pytest.raises(ValueError, match="vocab_size=32"):
        score_cli.main(["--checkpoint", str(tmp_path), "--vocab", vocab.path,
                        "--input", "a", "--target", "b"], out=io.StringIO())
    with pytest.raises(FileNotFoundError, match="no model_config.json"):
        score_cli.main(["--checkpoint", str(tmp_path / "nope"), "--vocab", vocab.path,
                        "--input", "a", "--target", "b"], out=io.StringIO())
