"""layers.dense: the custom weight gradient equals autodiff of the plain contraction."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t2t.models import layers as L


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

    def loss(contract):
        return lambda x, k: jnp.sum(jnp.sin(contract(x, k, num_in)))

    got = jax.jit(jax.grad(loss(L.dense), (0, 1)))(x, k)
    want = jax.jit(jax.grad(loss(L._contract), (0, 1)))(x, k)
    np.testing.assert_allclose(L.dense(x, k, num_in), L._contract(x, k, num_in), rtol=1e-6)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_dense_gradient_dtypes_follow_inputs():
    x = jnp.ones((2, 3, 4), jnp.bfloat16)
    k = jnp.ones((4, 5), jnp.bfloat16)
    dx, dk = jax.grad(lambda x, k: jnp.sum(L.dense(x, k).astype(jnp.float32)), (0, 1))(x, k)
    assert (dx.dtype, dk.dtype) == (jnp.bfloat16, jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(dk, np.float32), np.full((4, 5), 6.0))


@pytest.mark.parametrize("x_shape,k_shape,num_in", [
    ((2, 64, 48), (48, 40), 1),     # output narrower than x (float32 would transpose g)
    ((2, 64, 24), (24, 40), 1),     # x narrower
    ((2, 64, 3, 8), (3, 8, 40), 2),  # attention output projection
    ((2, 64, 48), (48, 3, 8), 1),   # q/k/v projection
])
def test_dense_bf16_compute_float32_kernel_gradient_unrounded(x_shape, k_shape, num_in):
    """bfloat16 activations, float32 params: the output is the bf16 contraction; the kernel
    gradient is the float32 accumulation of the bf16 products, not rounded to bfloat16 (on CPU
    through the batched bf16 product of `_tn_matmul`, jitted as in training)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.bfloat16)
    k = jnp.asarray(rng.standard_normal(k_shape), jnp.float32)
    out_shape = x_shape[:-num_in] + k_shape[num_in:]
    w = jnp.asarray(rng.standard_normal(out_shape), jnp.float32)
    out = L.dense(x, k, num_in)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(out, L._contract(x, k.astype(jnp.bfloat16), num_in))
    dx, dk = jax.jit(jax.grad(
        lambda x, k: jnp.sum(L.dense(x, k, num_in).astype(jnp.float32) * w), (0, 1)))(x, k)
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

    def loss(scores, values):
        def f(q, k, v):
            w = jax.nn.softmax(scores(q, k), axis=-1).astype(dtype)
            return jnp.sum(jnp.sin(values(w, v).astype(jnp.float32)))
        return f

    plain_scores = lambda q, k: jnp.einsum("...qd,...kd->...qk", q, k,  # noqa: E731
                                           preferred_element_type=jnp.float32)
    plain_values = lambda w, v: jnp.einsum("...qk,...kd->...qd", w, v)  # noqa: E731
    got = jax.jit(jax.grad(loss(L.attention_scores, L.attention_values), (0, 1, 2)))(q, k, v)
    want = jax.jit(jax.grad(loss(plain_scores, plain_values), (0, 1, 2)))(q, k, v)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                   rtol=tol, atol=tol)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_expand_batch_gradient_sums_the_batch(n):
    rng = np.random.default_rng(n)
    x = jnp.asarray(rng.standard_normal((1, 3, 4, 5)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((n, 3, 4, 5)), jnp.float32)
    out = L.expand_batch(x, n)
    assert out.shape == (n, 3, 4, 5)
    np.testing.assert_array_equal(out, jnp.broadcast_to(x, (n, 3, 4, 5)))
    got = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(L.expand_batch(x, n) * w))))(x)
    want = jax.grad(lambda x: jnp.sum(jnp.sin(x * w)))(x)
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
    got = jax.jit(lambda a, b: L._batched_dot(a, b, a_axis, b_axis))(a, b)
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a_axis == -2:
        a64 = np.swapaxes(a64, -1, -2)
    if b_axis == -1:
        b64 = np.swapaxes(b64, -1, -2)
    assert got.dtype == jnp.float32 and got.shape == (2, 3, 5, 6)
    np.testing.assert_allclose(got, a64 @ b64, rtol=1e-5, atol=1e-5)
