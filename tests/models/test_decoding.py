"""KV-cache decoding: cache == full forward, greedy/sampling/beam search against references."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t2t.models import decoding
from t2t.models.model import build_model
from t2t.models.variants import get_model_config

from model_testing import enc_dec_batch, fast_jit, prefix_lm_batch


def _full_and_incremental(model, batch, first_index, steps, decode_length):
    """(full-forward logits [b, l, V], cached logits [steps, b, V] from feeding
    decoder_input_tokens[:, first_index + k] at position first_index + k): one compilation."""
    def run(rng, batch):
        params = model.init(rng, batch)
        fn, cache, _, _ = model.init_decoding(params, batch, decode_length)
        feed = batch["decoder_input_tokens"]

        def step(cache, k):
            tok = jnp.take_along_axis(feed, (first_index + k)[:, None], axis=1)[:, 0]
            logits, cache = fn(tok, first_index + k, cache)
            return cache, logits
        return model.logits(params, batch), jax.lax.scan(step, cache, jnp.arange(steps))[1]
    full, inc = fast_jit(run)(jax.random.PRNGKey(0), batch)
    return np.asarray(full), np.asarray(inc)


def test_cache_matches_full_forward_encoder_decoder():
    cfg = get_model_config("tiny", num_kv_heads=2)   # grouped-query attention in the cache
    batch = enc_dec_batch(pad=False)
    batch["encoder_input_tokens"][1, -3:] = 0
    full, inc = _full_and_incremental(build_model(cfg), batch, jnp.zeros((2,), jnp.int32), 6, 6)
    np.testing.assert_allclose(inc.transpose(1, 0, 2), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,overrides", [
    ("tiny_prefix_lm", {}),                                   # relative bias, prefix mask
    ("tiny_prefix_lm", {"position": "alibi", "num_kv_heads": 1}),      # multi-query
    ("tiny_decoder_only", {"position": "rope", "norm": "layer", "activation": "gelu"}),
    ("tiny_decoder_only", {"position": "absolute", "activation": "swiglu"}),
])
def test_cache_matches_full_forward_decoder_only(name, overrides):
    model = build_model(get_model_config(name, **overrides))
    batch = prefix_lm_batch(prefix_lens=(3, 5), length=10)  # prompts of different lengths
    first = jnp.asarray([3, 5], jnp.int32)   # prompt = start token + inputs; last at index p
    full, inc = _full_and_incremental(model, batch, first, 7, 7)
    for b, p in enumerate([3, 5]):   # positions p .. 9 of each row
        np.testing.assert_allclose(inc[:10 - p, b], full[b, p:], atol=1e-5, rtol=1e-5)


def test_decoder_only_greedy_equals_naive_full_forward_loop():
    model = build_model(get_model_config("tiny_prefix_lm"))
    batch = prefix_lm_batch(prefix_lens=(2, 4), length=6)
    params = fast_jit(model.init)(jax.random.PRNGKey(1), batch)
    steps = 5
    got = np.asarray(fast_jit(lambda p, b: model.predict(
        p, b, max_decode_length=steps, jit=False))(params, batch))
    # Reference: re-run the whole sequence each step, no cache.
    width = 6 + steps
    logits_fn = fast_jit(model.logits)
    for b, plen in enumerate([2, 4]):
        seq = np.zeros((1, width), np.int32)      # decoder_input_tokens: start + inputs
        seq[0, :plen + 1] = batch["decoder_input_tokens"][b, :plen + 1]
        ca = (np.arange(width) <= plen).astype(np.int32)[None]
        out = []
        for k in range(steps):
            targets = np.pad(seq[:, 1:], ((0, 0), (0, 1)), constant_values=7)
            row = {"decoder_input_tokens": seq, "decoder_target_tokens": np.maximum(targets, 7),
                   "decoder_loss_weights": np.ones_like(seq), "decoder_causal_attention": ca}
            nxt = int(np.argmax(np.asarray(logits_fn(params, row))[0, plen + k]))
            out.append(nxt)
            seq[0, plen + k + 1] = nxt
            if nxt == 1:
                break
        expected = out + [0] * (steps - len(out))
        assert got[b].tolist() == expected, b


def test_beam_search_finds_the_exhaustive_best():
    """vocab 6, 4 steps, 125 beams >= every live prefix (5**3): beam search must be exact."""
    cfg = get_model_config("tiny", vocab_size=6, tie_embeddings=False)
    model = build_model(cfg)
    batch = enc_dec_batch(vocab=6, n_out=3)
    params = fast_jit(model.init)(jax.random.PRNGKey(2), batch)
    steps, vocab = 4, 6
    seqs = np.array(list(itertools.product(range(vocab), repeat=steps)), np.int32)  # [216, 3]

    def all_log_probs(params, batch):
        fn, cache, tok, idx = model.init_decoding(params, batch, steps, repeats=len(seqs))
        feed = jnp.tile(jnp.asarray(seqs), (2, 1))
        lps = []
        for k in range(steps):
            logits, cache = fn(tok, idx + k, cache)
            lps.append(jnp.take_along_axis(jax.nn.log_softmax(logits), feed[:, k:k + 1], 1)[:, 0])
            tok = feed[:, k]
        return jnp.cumsum(jnp.stack(lps, 1), 1).reshape(2, len(seqs), steps)

    cum = np.asarray(fast_jit(all_log_probs)(params, batch))
    beam = fast_jit(lambda p, b, alpha: model.predict(   # alpha traced: one compilation
        p, b, max_decode_length=steps, method="beam", num_beams=125, length_penalty=alpha,
        return_scores=True, jit=False))
    bests = {}
    for alpha in (0.0, 3.0):   # 3.0 favours long outputs strongly; 0.0 is plain log-prob
        got, _, scores = beam(params, batch, alpha)
        for b in range(2):
            ranked = _exhaustive_ranking(seqs, cum[b], alpha)
            bests[alpha, b] = ranked[0][1]
            assert np.asarray(got)[b].tolist() == ranked[0][1], (alpha, b)
            # All 125 returned beams are exactly the 125 best candidates, scores included.
            np.testing.assert_allclose(np.asarray(scores[b]), [r[0] for r in ranked[:125]],
                                       atol=1e-4)
    assert any(bests[0.0, b] != bests[3.0, b] for b in range(2))  # the penalty mattered


def _exhaustive_ranking(seqs, cum, alpha):
    """[(score, padded sequence)] best first over every distinct output: a sequence ends at
    its first EOS (id 1) or at max length; score = log p / ((5 + length) / 6) ** alpha."""
    steps = seqs.shape[1]
    found = {}
    for s, row in zip(seqs, cum):
        ends = [j for j in range(steps) if s[j] == 1]
        n = ends[0] + 1 if ends else steps
        found[tuple(int(x) for x in s[:n]) + (0,) * (steps - n)] = row[n - 1] / (
            (5 + n) / 6) ** alpha
    return sorted(((v, list(k)) for k, v in found.items()), key=lambda r: -r[0])


def _scripted(script):
    """Fake model: at position i emits script[row, i] with certainty; cache counts calls."""
    script = jnp.asarray(script)

    def fn(tokens, index, cache):
        nxt = jnp.take_along_axis(script, index[:, None], 1)[:, 0]
        return 10.0 * jax.nn.one_hot(nxt, 10), cache + 1
    return fn


def test_sample_decode_stops_at_eos_per_sequence():
    fn = _scripted([[3, 4, 1, 7, 7, 7], [5, 1, 7, 7, 7, 7]])
    run = fast_jit(lambda c: decoding.sample_decode(
        fn, c, jnp.zeros(2, jnp.int32), jnp.zeros(2, jnp.int32), max_decode_length=6))
    out = run(jnp.zeros(2, jnp.int32))
    assert np.asarray(out).tolist() == [[3, 4, 1, 0, 0, 0], [5, 1, 0, 0, 0, 0]]


def test_filter_logits_top_k_and_top_p():
    logits = jnp.log(jnp.asarray([[0.4, 0.3, 0.2, 0.1]]))
    neg = decoding.NEG
    assert np.asarray(decoding.filter_logits(logits, top_k=2))[0, 2:].tolist() == [neg, neg]
    kept = lambda **kw: (np.asarray(decoding.filter_logits(logits, **kw))[0] > neg).tolist()  # noqa
    assert kept(top_p=0.5) == [True, True, False, False]     # 0.4 < 0.5, then 0.7 >= 0.5
    assert kept(top_p=0.3) == [True, False, False, False]
    assert kept(top_p=0.75) == [True, True, True, False]
    assert kept(top_k=3, top_p=0.5) == [True, True, False, False]


@pytest.mark.parametrize("temperature,top_k,top_p,expected", [
    (1.0, 0, 1.0, [0.5, 0.3, 0.15, 0.05]),
    (0.5, 0, 1.0, np.array([0.5, 0.3, 0.15, 0.05]) ** 2 / np.sum(
        np.array([0.5, 0.3, 0.15, 0.05]) ** 2)),
    (1.0, 2, 1.0, [0.625, 0.375, 0, 0]),
    (1.0, 0, 0.6, [0.625, 0.375, 0, 0]),
])
def test_sampling_frequencies(temperature, top_k, top_p, expected):
    logits = jnp.log(jnp.asarray([0.5, 0.3, 0.15, 0.05]))
    n = 20000
    fn = lambda tok, idx, cache: (jnp.tile(logits[None], (n, 1)), cache)  # noqa: E731
    out = decoding.sample_decode(fn, jnp.zeros(()), jnp.zeros(n, jnp.int32),
                                 jnp.zeros(n, jnp.int32), max_decode_length=1,
                                 rng=jax.random.PRNGKey(0), temperature=temperature,
                                 top_k=top_k, top_p=top_p, eos_id=99)
    freq = np.bincount(np.asarray(out)[:, 0], minlength=4) / n
    np.testing.assert_allclose(freq, expected, atol=0.015)


def test_predict_argument_errors():
    model = build_model(get_model_config("tiny"))
    batch = enc_dec_batch()
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)
    with pytest.raises(ValueError, match="needs rng"):
        model.predict(params, batch, max_decode_length=2, method="sample")
    with pytest.raises(ValueError, match="method='top'"):
        model.predict(params, batch, max_decode_length=2, method="top")
    with pytest.raises(ValueError, match="encoder_only"):
        build_model(get_model_config("tiny_encoder_only")).predict(
            params, batch, max_decode_length=2)
