"""layers.apply_rope equals Hugging Face Llama's rotary embedding (rotate-half form)."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from transformers.models.llama import modeling_llama

from t2t.models import layers as L


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_apply_rope_matches_hf_llama(dtype, tol):
    b, s, h, d, theta = 2, 7, 3, 8, 500.0
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, s, h, d)).astype(np.float32)
    positions = np.stack([np.arange(s), np.array([0, 1, 2, 0, 1, 2, 3])]).astype(np.int32)

    cfg = transformers.LlamaConfig(hidden_size=h * d, num_attention_heads=h, head_dim=d,
                                   rope_theta=theta, max_position_embeddings=64)
    cos, sin = modeling_llama.LlamaRotaryEmbedding(cfg)(torch.zeros(1), torch.from_numpy(
        positions.astype(np.int64)))
    xt = torch.from_numpy(x).transpose(1, 2)  # HF: [b, heads, s, d]
    want, _ = modeling_llama.apply_rotary_pos_emb(xt, xt, cos, sin)
    want = want.transpose(1, 2).numpy()

    got = L.apply_rope(jnp.asarray(x, dtype), jnp.asarray(positions), max_wavelength=theta)
    assert got.shape == x.shape and got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=tol, atol=tol)


def test_apply_rope_needs_even_head_dim():
    with pytest.raises(ValueError, match="even head_dim, got head_dim=5"):
        L.apply_rope(jnp.zeros((1, 2, 1, 5)), jnp.zeros((1, 2), jnp.int32))
