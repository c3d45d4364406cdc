"""No information leaks: d loss(position t) / d embedded input(position s), for every t and s.

Gradients are taken w.r.t. zero perturbations added to the embedded tokens (flax `perturb`), so
each [t, s] entry says whether input position s can influence the prediction at t.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t2t.models.model import build_model
from t2t.models.variants import get_model_config

from model_testing import enc_dec_batch, fast_jit, prefix_lm_batch, shift_right


def influence(cfg, batch, sources=("decoder_embedded",)):
    """({source: [batch, t, s]}: L2 norm of d(-log p(target_t)) / d(embedded_s), params)."""
    model = build_model(cfg)
    targets = jnp.asarray(batch["decoder_target_tokens"])

    def run(rng, pert):   # init inside: one compilation per test
        params = model.init(rng, batch)

        def per_position_loss(pert):
            lp = jax.nn.log_softmax(model.logits(params, batch, perturbations=pert))
            return -jnp.take_along_axis(lp, targets[..., None], -1)[..., 0]  # [b, t]
        jac = jax.jacrev(per_position_loss)(pert)   # {src: [b, t, b', s, d]}
        return {k: jnp.sqrt(jnp.sum(jnp.square(jnp.einsum("btbsd->btsd", v)), -1))
                for k, v in jac.items()}, params

    names = {"decoder_embedded": "decoder_input_tokens",
             "encoder_embedded": "encoder_input_tokens"}
    pert = {k: jnp.zeros(batch[names[k]].shape + (cfg.d_model,)) for k in sources}
    grads, params = fast_jit(run)(jax.random.PRNGKey(0), pert)
    return {k: np.asarray(v) for k, v in grads.items()}, params


def test_encoder_decoder_is_causal_and_ignores_padding():
    batch = enc_dec_batch(pad=False)
    batch["encoder_input_tokens"][1, -3:] = 0
    g, _ = influence(get_model_config("tiny"), batch, ("decoder_embedded", "encoder_embedded"))
    dec, enc = g["decoder_embedded"], g["encoder_embedded"]
    t = dec.shape[1]
    future = np.triu(np.ones((t, t), bool), k=1)
    assert np.all(dec[:, future] == 0)           # exact zeros after t
    assert np.all(dec[:, ~future] > 0)           # and every past position matters
    assert np.all(enc[0] > 0)                    # every target sees every encoder token
    assert np.all(enc[1][:, -3:] == 0) and np.all(enc[1][:, :-3] > 0)  # but not padding


@pytest.mark.parametrize("prefix_lm", [True, False])
def test_decoder_only_prefix_and_causal_masks(prefix_lm):
    batch = prefix_lm_batch(prefix_lens=(3, 5), length=8)
    cfg = get_model_config("tiny_decoder_only", prefix_lm=prefix_lm)
    g = influence(cfg, batch)[0]["decoder_embedded"]
    t = np.arange(8)
    for b, visible in enumerate(batch["decoder_causal_attention"]):
        allowed = t[None, :] <= t[:, None]                           # causal
        if prefix_lm:  # prefix positions (input tokens + start token) see each other
            allowed |= (visible[:, None] > 0) & (visible[None, :] > 0)
        assert np.all(g[b][~allowed] == 0), b
        assert np.all(g[b][allowed] > 0), b
    if prefix_lm:  # a prefix position does see a later prefix position
        assert g[1][0, 4] > 0
    else:
        assert g[1][0, 4] == 0


def _packed_enc_dec():
    """Two segments per row: encoder 5 + 4 tokens, decoder 3 + 4 tokens (one pad)."""
    rs = np.random.RandomState(3)
    enc_seg = np.array([[1] * 5 + [2] * 4])
    dec_seg = np.array([[1] * 3 + [2] * 4 + [0]])
    enc = rs.randint(2, 128, enc_seg.shape) * (enc_seg > 0)
    tgt = rs.randint(2, 128, dec_seg.shape) * (dec_seg > 0)
    pos = lambda seg: np.concatenate([np.arange((r == s).sum()) for r in seg  # noqa: E731
                                      for s in (1, 2, 0)])[None]
    return {"encoder_input_tokens": enc, "decoder_input_tokens": shift_right(tgt, dec_seg),
            "decoder_target_tokens": tgt, "decoder_loss_weights": (tgt > 0).astype(np.int32),
            "encoder_segment_ids": enc_seg, "decoder_segment_ids": dec_seg,
            "encoder_positions": pos(enc_seg), "decoder_positions": pos(dec_seg)}


def test_packed_encoder_decoder_segments_stay_apart():
    batch = {k: np.asarray(v, np.int32) for k, v in _packed_enc_dec().items()}
    g, params = influence(get_model_config("tiny"), batch,
                          ("decoder_embedded", "encoder_embedded"))
    dec_seg, enc_seg = batch["decoder_segment_ids"][0], batch["encoder_segment_ids"][0]
    real = dec_seg > 0
    same_dec = dec_seg[:, None] == dec_seg[None, :]
    same_enc = dec_seg[:, None] == enc_seg[None, :]
    causal = np.tril(np.ones((8, 8), bool))
    dec, enc = g["decoder_embedded"][0][real], g["encoder_embedded"][0][real]
    assert np.all(dec[~(same_dec & causal)[real]] == 0)
    assert np.all(dec[(same_dec & causal)[real]] > 0)
    assert np.all(enc[~same_enc[real]] == 0) and np.all(enc[same_enc[real]] > 0)
    # Packing is invisible: segment 2 alone in its own row gives the same score.
    model = build_model(get_model_config("tiny"))
    alone = {"encoder_input_tokens": batch["encoder_input_tokens"][:, 5:],
             "decoder_target_tokens": batch["decoder_target_tokens"][:, 3:7]}
    alone["decoder_input_tokens"] = shift_right(alone["decoder_target_tokens"])
    alone["decoder_loss_weights"] = np.ones_like(alone["decoder_target_tokens"])
    seg2 = dict(batch, decoder_loss_weights=(batch["decoder_segment_ids"] == 2).astype(np.int32))
    both = fast_jit(lambda p: (model.score(p, seg2), model.score(p, alone)))(params)
    np.testing.assert_allclose(*both, rtol=1e-5)


def test_packed_decoder_only_segments_stay_apart():
    seg = np.array([[1, 1, 1, 2, 2, 2, 2, 0]], np.int32)
    tgt = (np.random.RandomState(4).randint(2, 128, seg.shape) * (seg > 0)).astype(np.int32)
    batch = {"decoder_input_tokens": shift_right(tgt, seg), "decoder_target_tokens": tgt,
             "decoder_loss_weights": (tgt > 0).astype(np.int32), "decoder_segment_ids": seg,
             "decoder_positions": np.array([[0, 1, 2, 0, 1, 2, 3, 0]], np.int32),
             "decoder_causal_attention": np.array([[1, 1, 0, 1, 1, 0, 0, 0]], np.int32)}
    g = influence(get_model_config("tiny_prefix_lm", position="rope"), batch)[0][
        "decoder_embedded"][0]
    s = seg[0]
    allowed = (s[:, None] == s[None, :]) & (np.tril(np.ones((8, 8), bool)) | (
        (batch["decoder_causal_attention"][0][:, None] > 0)
        & (batch["decoder_causal_attention"][0][None, :] > 0)))
    real = s > 0
    assert np.all(g[real][~allowed[real]] == 0)
    assert np.all(g[real][allowed[real]] > 0)
