"""Causal self-attention in query blocks (MultiHeadAttention(causal=True), each block over the
keys up to its last query) gives the numbers of full attention: same loss, gradients and logits
of every real token, for causal LMs (relative / RoPE / ALiBi, grouped-query, packed) and T5's
decoder; a prefix LM (whose inputs see later inputs) is never blocked."""
import flax.linen as nn
import jax
import numpy as np
import pytest

from t2t.models import layers as L
from t2t.models import variants
from t2t.models.model import build_model, cross_entropy

from model_testing import enc_dec_batch, fast_jit, prefix_lm_batch, shift_right

CASES = {  # name -> (variant, overrides)
    "lm_relative": ("tiny_decoder_only", {}),
    "lm_rope_gqa": ("tiny_decoder_only", dict(position="rope", num_kv_heads=2)),
    "lm_alibi": ("tiny_decoder_only", dict(position="alibi")),
    "enc_dec": ("tiny", {}),
    "prefix_lm": ("tiny_prefix_lm", {}),
}


def _batch(cfg, packed: bool):
    if cfg.architecture == "encoder_decoder":
        return enc_dec_batch(n_in=9, n_out=11)
    batch = prefix_lm_batch(length=13, prefix_lens=(4, 9))
    if packed:  # two sequences in row 0, padding at the end of row 1
        seg = np.array([[1] * 6 + [2] * 7, [1] * 10 + [0] * 3], np.int32)
        tgt = np.where(seg > 0, batch["decoder_target_tokens"], 0).astype(np.int32)
        pos = np.array([list(range(6)) + list(range(7)), list(range(13))], np.int32)
        batch.update(decoder_target_tokens=tgt, decoder_input_tokens=shift_right(tgt, seg),
                     decoder_loss_weights=(tgt > 0).astype(np.int32), decoder_segment_ids=seg,
                     decoder_positions=pos)
    if not cfg.prefix_lm:
        batch.pop("decoder_causal_attention")
    return batch


def _run(cfg, params, batch, block, monkeypatch):
    monkeypatch.setattr(L, "CAUSAL_BLOCK", block)
    model = build_model(cfg)

    def f(p):
        logits = model.logits(p, batch, train=False)
        loss, _ = cross_entropy(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"])
        return loss, logits
    jaxpr = str(jax.make_jaxpr(f)(params))
    (loss, logits), grads = fast_jit(jax.value_and_grad(f, has_aux=True))(params)
    return loss, logits, grads, jaxpr.count("dot_general")


@pytest.mark.parametrize("case,packed", [(c, p) for c in sorted(CASES) for p in (False, True)
                                         if not (p and c == "enc_dec")])
def test_causal_blocks_equal_full_attention(case, packed, monkeypatch):
    variant, overrides = CASES[case]
    cfg = variants.get_model_config(variant, **overrides)
    batch = _batch(cfg, packed)
    params = nn.unbox(fast_jit(build_model(cfg).init)(jax.random.key(0), batch))
    full = _run(cfg, params, batch, 10 ** 6, monkeypatch)
    blocked = _run(cfg, params, batch, 4, monkeypatch)  # 11-13 tokens: 3-4 query blocks
    if cfg.prefix_lm:
        assert blocked[3] == full[3]  # not blocked: the same program
    else:
        assert blocked[3] > full[3]   # blocked: more, smaller attention matmuls
    np.testing.assert_allclose(blocked[0], full[0], rtol=1e-5)
    real = np.asarray(batch["decoder_target_tokens"]) > 0
    np.testing.assert_allclose(np.asarray(blocked[1])[real], np.asarray(full[1])[real],
                               rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 blocked[2], full[2])
