"""CPU-tuned versions of the model's matmuls, the batch broadcast and argmax.

Selected by the model config field `kernels` ('cpu_tuned', or 'auto' on the CPU backend; see
`layers.ops`). Each computes the same values as its plain counterpart in layers.py (tests/models/
test_kernels.py checks it); they differ in how XLA's CPU backend is made to run them: hand-written
backward passes that pick which operand to transpose, bfloat16 products pinned behind
optimization barriers, a pairwise batch sum, argmax as two plain reductions. On accelerators the
plain versions, differentiated by XLA itself, are the ones to use. Measurements: benchmarks/
RESULTS.md.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp


def for_this_backend() -> bool:
    """True where these kernels are the faster ones: on XLA's CPU backend (`kernels='auto'`)."""
    return jax.default_backend() == "cpu"


OPS_NAMES = ("dense", "attention_scores", "attention_values", "expand_batch", "argmax")


def _matmul(a, b, dims):
    """dot_general accumulated in float32, cast to a's dtype (as layers._matmul)."""
    return jax.lax.dot_general(a, b, dims, preferred_element_type=jnp.float32).astype(a.dtype)


def _contract(x, kernel, num_in: int):
    """x [..., *in] . kernel [*in, *out] -> [..., *out] (the forward pass of layers.dense)."""
    dims = (tuple(range(x.ndim - num_in, x.ndim)), tuple(range(num_in)))
    return _matmul(x, kernel, (dims, ((), ())))


# ----------------------------------------------------------------------------- dense
@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def dense(x, kernel, num_in: int = 1):
    """layers.dense (x contracted with the kernel cast to x's dtype) with a hand-written backward.

    The weight gradient contracts the token axis of x and of the output gradient g, so one of
    them is transposed: here the narrower one (in bfloat16 always x, whose transpose XLA's CPU
    backend folds into the dot, unlike the result's); left to autodiff, XLA's CPU backend
    often transposes the larger one or the result. The kernel gradient is returned in the
    kernel's dtype as accumulated in float32, not rounded to the compute dtype first.
    """
    return _contract(x, kernel.astype(x.dtype), num_in)


def _dense_fwd(x, kernel, num_in):
    compute = kernel.astype(x.dtype)
    return _contract(x, compute, num_in), (x, compute, jnp.zeros((0,), kernel.dtype))  # dtype


def _dense_bwd(num_in, residuals, g):
    x, kernel, param = residuals
    n_in = math.prod(kernel.shape[:num_in])
    k2 = kernel.reshape(n_in, -1)
    x2, g2 = x.reshape(-1, n_in), g.reshape(-1, k2.shape[1])
    dx = _matmul(g2, k2, (((1,), (1,)), ((), ())))
    if x2.shape[1] <= g2.shape[1] or _bf16_on_cpu(x2):
        dk = _tn_matmul(x2, g2)
    else:  # the float32 result's transpose folds into the dot
        dk = _swap(_tn_matmul(g2, x2))
    return dx.reshape(x.shape).astype(x.dtype), dk.reshape(kernel.shape).astype(param.dtype)


dense.defvjp(_dense_fwd, _dense_bwd)


# ----------------------------------------------------------------------------- batch broadcast
@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def expand_batch(x, n: int):
    """x [1, ...] broadcast to [n, ...], whose gradient adds the n slices pairwise: XLA's CPU
    reduction over the leading axis of a wide array (the relative-position bias gradient,
    [batch, heads, q, k] -> [1, heads, q, k]) is far slower than adding the slices."""
    return jnp.broadcast_to(x, (n,) + x.shape[1:])


def _expand_fwd(x, n):
    return expand_batch(x, n), None


def _expand_bwd(n, _, g):
    while g.shape[0] > 1:
        half = g.shape[0] // 2
        head = g[:half] + g[half:2 * half]
        g = jnp.concatenate([head, g[2 * half:]]) if g.shape[0] % 2 else head
    return (g,)


expand_batch.defvjp(_expand_fwd, _expand_bwd)


# ----------------------------------------------------------------------------- batched products
def _swap(t):
    return jnp.swapaxes(t, -1, -2)


def _bf16_on_cpu(x) -> bool:
    return x.dtype == jnp.bfloat16 and jax.default_backend() == "cpu"


def _tn_matmul(a, b):
    """a^T b over the second-to-last axis, [..., n, i] x [..., n, j] -> float32 [..., i, j].
    Call it with the narrower operand as `a`: that is the one transposed."""
    return _batched_dot(a, b, -2, -2)


def _batched_dot(a, b, a_axis: int, b_axis: int):
    """a [..., m, n] . b [..., n', p] contracting a's `a_axis` with b's `b_axis` (-1 or -2 each),
    batched over the leading axes -> float32 [..., a's free axis, b's free axis].

    XLA's CPU backend widens bf16 dots whose operands arrive through a transpose (the
    heads-major attention layout, weight gradients) to float32, and fails on some with a
    transposed result folded in. So in bfloat16 on CPU the operands (a transposed first when it
    contracts its rows) and the result sit behind optimization barriers, and the product is one
    batched dot over the flattened leading axes: it then runs on the bf16 units. Float32 keeps
    XLA's own folded dots, the faster ones there."""
    if not _bf16_on_cpu(a):
        batch = tuple(range(a.ndim - 2))
        dims = (((a.ndim + a_axis,), (b.ndim + b_axis,)), (batch, batch))
        return jax.lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)
    if a_axis == -2:
        a, a_axis = _swap(a), -1
    lead = a.shape[:-2]
    a, b = jax.lax.optimization_barrier((a, b))
    a3, b3 = a.reshape((-1,) + a.shape[-2:]), b.reshape((-1,) + b.shape[-2:])
    out = jax.lax.dot_general(a3, b3, (((3 + a_axis,), (3 + b_axis,)), ((0,), (0,))),
                              preferred_element_type=jnp.float32)
    return jax.lax.optimization_barrier(out.reshape(lead + out.shape[-2:]))


# ----------------------------------------------------------------------------- attention
@jax.custom_vjp
def attention_scores(q, k):
    """q [..., q, d] . k [..., k, d] -> float32 scores [..., q, k] (compute-dtype inputs).

    Like `dense`, the backward writes no transpose of a [q, k] matrix: dk is computed as
    (q^T g)^T, transposing the narrow [q, d] and [d, k] operands instead of g."""
    return _batched_dot(q, k, -1, -1)


def _scores_fwd(q, k):
    return attention_scores(q, k), (q, k)


def _scores_bwd(residuals, g):
    q, k = residuals
    g = g.astype(q.dtype)
    dq = _batched_dot(g, k, -1, -2)
    dk = _swap(_tn_matmul(q, g))
    return dq.astype(q.dtype), dk.astype(k.dtype)


attention_scores.defvjp(_scores_fwd, _scores_bwd)


@jax.custom_vjp
def attention_values(w, v):
    """Attention weights w [..., q, k] . v [..., k, d] -> [..., q, d] in v's dtype (float32
    accumulation); dv = (g^T w)^T, as in `attention_scores`."""
    return _batched_dot(w, v, -1, -2).astype(v.dtype)


def _values_fwd(w, v):
    return attention_values(w, v), (w, v)


def _values_bwd(residuals, g):
    w, v = residuals
    dw = _batched_dot(g, v, -1, -1)
    dv = _swap(_tn_matmul(g, w))
    return dw.astype(w.dtype), dv.astype(v.dtype)


attention_values.defvjp(_values_fwd, _values_bwd)


# ----------------------------------------------------------------------------- argmax
def argmax(logits):
    """jnp.argmax over the last axis (the first index of the maximum) as a max and a min
    reduction: XLA's CPU backend runs argmax's paired (value, index) reduction much slower."""
    top = jnp.max(logits, axis=-1, keepdims=True)
    index = jax.lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)
    return jnp.min(jnp.where(logits == top, index, logits.shape[-1]), axis=-1)
