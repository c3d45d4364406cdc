"""cfg.kernels picks how the matmuls run ('xla': layers.py's plain JAX, differentiated by XLA;
'cpu_tuned': cpu_kernels.py), never the numbers: the same loss and gradients for all three
architectures. Then cpu_kernels' functions one by one against autodiff of the plain versions
and against numpy."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t2t.models import cpu_kernels as K
from t2t.models import layers as L
from t2t.models import variants
from t2t.models.model import build_model, example_batch

from model_testing import enc_dec_batch, fast_jit, prefix_lm_batch

CASES = {  # name -> (variant, overrides)
    "enc_dec": ("tiny", {}),  # relative positions: one bias for the batch (expand_batch)
    "decoder_only": ("tiny_prefix_lm", dict(num_kv_heads=2, tie_embeddings=False)),
    "encoder_only": ("tiny_encoder_only", {}),
}


def _cfg(case, **extra):
    variant, overrides = CASES[case]
    return variants.get_model_config(variant, **overrides, **extra)


def _batch(architecture):
    if architecture == "decoder_only":
        return prefix_lm_batch()
    batch = enc_dec_batch()
    if architecture == "encoder_only":  # MLM: targets aligned with the inputs
        tokens = batch["encoder_input_tokens"]
        tgt = np.where(tokens > 0, 5, 0).astype(np.int32)
        arrays = {"input_tokens": tokens, "target_tokens": tgt,
                  "loss_weights": (tgt > 0).astype(np.int32)}
        return {key: next(v for k, v in arrays.items() if key.endswith(k))
                for key in example_batch(architecture)}
    return batch


@functools.lru_cache(maxsize=None)
def _params(case):
    cfg = _cfg(case)
    return nn.unbox(fast_jit(build_model(cfg).init)(jax.random.key(0), _batch(cfg.architecture)))


def _loss_fn(case, kernels, dtype):
    model = build_model(_cfg(case, kernels=kernels, dtype=dtype))
    batch = _batch(model.architecture)
    return lambda params: model.loss(params, batch)[0]


@functools.lru_cache(maxsize=None)
def _loss_and_grads(case, kernels, dtype="float32"):
    return fast_jit(jax.value_and_grad(_loss_fn(case, kernels, dtype)))(_params(case))


def test_auto_is_cpu_tuned_on_cpu():
    assert jax.default_backend() == "cpu"
    assert variants.base_config().kernels == "auto"
    assert L.resolve_kernels("auto") == "cpu_tuned"
    assert L.ops("auto") is L.ops("cpu_tuned") is not L.ops("xla")
    assert L.ops("xla").dense is L.dense and L.ops("cpu_tuned").dense is K.dense


def test_bad_kernels_name_names_field():
    with pytest.raises(ValueError, match=r"kernels='gpu'.*auto\|xla\|cpu_tuned"):
        variants.get_model_config("tiny", kernels="gpu")
    with pytest.raises(ValueError, match="kernels='gpu'"):
        L.resolve_kernels("gpu")


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_field_picks_the_kernels(case):
    """The switch reaches the layers: only cpu_tuned traces the custom-VJP kernels."""
    for kernels, tuned in (("xla", False), ("cpu_tuned", True), ("auto", True)):
        jaxpr = str(jax.make_jaxpr(_loss_fn(case, kernels, "float32"))(_params(case)))
        assert ("custom_vjp_call" in jaxpr) == tuned, kernels


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_loss_and_gradients_equal(case):
    loss, grads = _loss_and_grads(case, "xla")
    t_loss, t_grads = _loss_and_grads(case, "cpu_tuned")
    np.testing.assert_allclose(t_loss, loss, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 t_grads, grads)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bfloat16_loss_and_gradients_close(case):
    """bf16 compute (float32 params): the kernels round in different places (cpu_tuned keeps the
    kernel gradients' float32 accumulation), so the values agree to bf16 precision."""
    loss, grads = _loss_and_grads(case, "xla", "bfloat16")
    t_loss, t_grads = _loss_and_grads(case, "cpu_tuned", "bfloat16")
    ref, _ = _loss_and_grads(case, "xla")
    np.testing.assert_allclose(t_loss, loss, rtol=1e-2)
    np.testing.assert_allclose(t_loss, ref, rtol=2e-2)

    def close(a, b):
        assert a.dtype == b.dtype == jnp.float32
        assert np.linalg.norm(a - b) <= 2e-2 * np.linalg.norm(b) + 1e-6
    jax.tree.map(close, t_grads, grads)


# ----------------------------------------------------------------------------- cpu_kernels
@pytest.mark.parametrize("x_shape,k_shape,num_in", [
    ((2, 5, 6), (6, 9), 1),        # x narrower than the output: x is transposed
    ((2, 5, 9), (9, 4), 1),        # output narrower: g is transposed
    ((2, 5, 3, 4), (3, 4, 7), 2),  # attention output projection: two contracted axes
    ((2, 5, 6), (6, 3, 4), 1),     # q/k/v projection: two output axes
])
def test_dense_gradients_equal_autodiff(x_shape, k_shape, num_in):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal(k_shape), jnp.float32)

    def loss(dense):
        return lambda x, k: jnp.sum(jnp.sin(dense(x, k, num_in)))

    got = jax.jit(jax.grad(loss(K.dense), (0, 1)))(x, k)
    want = jax.jit(jax.grad(loss(L.dense), (0, 1)))(x, k)
    np.testing.assert_allclose(K.dense(x, k, num_in), L.dense(x, k, num_in), rtol=1e-6)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_dense_gradient_dtypes_follow_inputs():
    x = jnp.ones((2, 3, 4), jnp.bfloat16)
    k = jnp.ones((4, 5), jnp.bfloat16)
    dx, dk = jax.grad(lambda x, k: jnp.sum(K.dense(x, k).astype(jnp.float32)), (0, 1))(x, k)
    assert (dx.dtype, dk.dtype) == (jnp.bfloat16, jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(dk, np.float32), np.full((4, 5), 6.0))


@pytest.mark.parametrize("x_shape,k_shape,num_in", [
    ((2, 64, 48), (48, 40), 1),     # output narrower than x (float32 would transpose g)
    ((2, 64, 24), (24, 40), 1),     # x narrower
    ((2, 64, 3, 8), (3, 8, 40), 2),  # attention output projection
    ((2, 64, 48), (48, 3, 8), 1),   # q/k/v projection
])
def test_dense_bf16_compute_float32_kernel_gradient_unrounded(x_shape, k_shape, num_in):
    """bfloat16 activations, float32 params: the output is the plain bf16 contraction; the
    kernel gradient is the float32 accumulation of the bf16 products, not rounded to bfloat16
    (on CPU through the batched bf16 product of `_tn_matmul`, jitted as in training)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.bfloat16)
    k = jnp.asarray(rng.standard_normal(k_shape), jnp.float32)
    out_shape = x_shape[:-num_in] + k_shape[num_in:]
    w = jnp.asarray(rng.standard_normal(out_shape), jnp.float32)
    out = K.dense(x, k, num_in)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(out, L.dense(x, k, num_in))
    dx, dk = jax.jit(jax.grad(
        lambda x, k: jnp.sum(K.dense(x, k, num_in).astype(jnp.float32) * w), (0, 1)))(x, k)
    assert (dx.dtype, dk.dtype, dk.shape) == (jnp.bfloat16, jnp.float32, k_shape)
    n_in = int(np.prod(k_shape[:num_in]))
    g = np.asarray(w.astype(jnp.bfloat16), np.float64).reshape(-1, np.prod(k_shape[num_in:]))
    x2 = np.asarray(x, np.float64).reshape(-1, n_in)
    want = (x2.T @ g).reshape(k_shape)
    np.testing.assert_allclose(dk, want, rtol=1e-5, atol=1e-4)
    rounded = np.asarray(jnp.asarray(want, jnp.bfloat16), np.float64)
    assert np.max(np.abs(np.asarray(dk) - want)) < np.max(np.abs(rounded - want)) / 10
    k_bf16 = np.asarray(k.astype(jnp.bfloat16), np.float64).reshape(n_in, -1)
    np.testing.assert_allclose(np.asarray(dx, np.float64).reshape(-1, n_in), g @ k_bf16.T,
                               rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 5e-2)])
def test_attention_matmul_gradients_equal_autodiff(dtype, tol):
    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.standard_normal((2, 3, n, 4)), dtype) for n in (5, 7, 7))

    def loss(ops):
        def f(q, k, v):
            w = jax.nn.softmax(ops.attention_scores(q, k), axis=-1).astype(dtype)
            return jnp.sum(jnp.sin(ops.attention_values(w, v).astype(jnp.float32)))
        return f

    got = jax.jit(jax.grad(loss(L.ops("cpu_tuned")), (0, 1, 2)))(q, k, v)
    want = jax.jit(jax.grad(loss(L.ops("xla")), (0, 1, 2)))(q, k, v)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                   rtol=tol, atol=tol)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_expand_batch_gradient_sums_the_batch(n):
    rng = np.random.default_rng(n)
    x = jnp.asarray(rng.standard_normal((1, 3, 4, 5)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((n, 3, 4, 5)), jnp.float32)
    out = K.expand_batch(x, n)
    assert out.shape == (n, 3, 4, 5)
    np.testing.assert_array_equal(out, L.expand_batch(x, n))
    got = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(K.expand_batch(x, n) * w))))(x)
    want = jax.grad(lambda x: jnp.sum(jnp.sin(L.expand_batch(x, n) * w)))(x)
    assert got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("a_axis,b_axis", [(-1, -1), (-1, -2), (-2, -2), (-2, -1)])
def test_batched_dot_contracts_the_named_axes(dtype, a_axis, b_axis):
    """`_batched_dot` against numpy in float64 on the same (rounded) inputs, jitted as in
    training (in bfloat16 on CPU: the barriered batched bf16 product)."""
    rng = np.random.default_rng(2)
    a = jnp.asarray(rng.standard_normal((2, 3, 5, 8) if a_axis == -1 else (2, 3, 8, 5)), dtype)
    b = jnp.asarray(rng.standard_normal((2, 3, 8, 6) if b_axis == -2 else (2, 3, 6, 8)), dtype)
    got = jax.jit(lambda a, b: K._batched_dot(a, b, a_axis, b_axis))(a, b)
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a_axis == -2:
        a64 = np.swapaxes(a64, -1, -2)
    if b_axis == -1:
        b64 = np.swapaxes(b64, -1, -2)
    assert got.dtype == jnp.float32 and got.shape == (2, 3, 5, 6)
    np.testing.assert_allclose(got, a64 @ b64, rtol=1e-5, atol=1e-5)


def test_argmax_is_the_first_maximum():
    logits = jnp.asarray([[1.0, 3.0, 3.0, -1.0], [0.0, 0.0, 0.0, 0.0], [-2.0, -5.0, -1.0, -1.5]])
    rng = np.random.default_rng(3)
    rand = jnp.asarray(rng.standard_normal((4, 6, 33)), jnp.float32)
    for x in (logits, rand):
        got = K.argmax(x)
        assert got.dtype == jnp.int32
        np.testing.assert_array_equal(got, np.argmax(np.asarray(x), axis=-1))
        np.testing.assert_array_equal(got, L.argmax(x))
