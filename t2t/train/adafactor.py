"""Adafactor as T5 runs it, with each parameter's update computed in one fused expression.

`adafactor(...)` equals `optax.adafactor(..., momentum=None)` (same arithmetic, same state
tree, so checkpoints are interchangeable) but is written for XLA: per parameter it reads the
gradient for the second-moment statistics, once more for the update's RMS (clipping) and once
to write the new parameter, and the parameter twice (its RMS, the update). Optax's chain of
transformations instead materialises the update between its stages and computes the parameter
RMS twice through a masked copy (`safe_root_mean_squares`). Means over a non-minor axis are
written as a matrix-vector product with ones: XLA's CPU reductions over a leading axis of a
wide array ran 10x slower than the product (the [d_model, vocab] output layer's column
statistics took 64 ms; the product takes 6 ms).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def factored_dims(shape, min_dim_size_to_factor: int = 128):
    """(second-largest, largest) axis of `shape`, or None when the tensor is not factored
    (fewer than 2 axes, or its second-largest axis is shorter than `min_dim_size_to_factor`);
    optax's rule, ties broken the same way (a stable argsort)."""
    if len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim_size_to_factor:
        return None
    return int(order[-2]), int(order[-1])


def _mean(x, axis: int):
    """Mean over `axis`. Over a leading axis of a wide array (>= 16384 elements behind it, as
    the [d_model, vocab] output layer's column statistics) as a product with ones: XLA's CPU
    reduction there ran 10x slower than the product (64 vs 6 ms); elsewhere it is as fast."""
    n = x.shape[axis]
    if axis == x.ndim - 1 or int(np.prod(x.shape[axis + 1:])) < _WIDE:
        return jnp.mean(x, axis=axis)
    return jnp.matmul(jnp.moveaxis(x, axis, -1), jnp.full((n,), 1.0 / n, x.dtype),
                      precision=jax.lax.Precision.HIGHEST)


_WIDE = 16384


def _decay_rate(count, exponent: float):
    """T5's second-moment decay 1 - t^-0.8 at step t = count + 1 (optax's `_decay_rate_pow`)."""
    t = jnp.asarray(count + 1, jnp.float32)
    return 1.0 - t ** (-exponent)


def adafactor(learning_rate, *, decay_rate: float = 0.8, clipping_threshold: float | None = 1.0,
              multiply_by_parameter_scale: bool = True, min_dim_size_to_factor: int = 128,
              eps: float = 1e-30, weight_decay_rate: float | None = None,
              min_scale: float = 1e-3) -> optax.GradientTransformation:
    """`optax.adafactor(learning_rate, decay_rate, clipping_threshold, momentum=None,
    multiply_by_parameter_scale, factored=True, min_dim_size_to_factor, eps,
    weight_decay_rate)` computed per parameter in one fused expression.

    `learning_rate` is a float or a schedule of the update count.
    """
    reference = optax.adafactor(
        learning_rate=learning_rate, decay_rate=decay_rate, clipping_threshold=clipping_threshold,
        momentum=None, multiply_by_parameter_scale=multiply_by_parameter_scale, factored=True,
        min_dim_size_to_factor=min_dim_size_to_factor, eps=eps,
        weight_decay_rate=weight_decay_rate)

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("adafactor needs the params: tx.update(grads, state, params)")
        stats = state[0]
        count = stats.count
        decay = _decay_rate(count, decay_rate)
        lr = learning_rate(count) if callable(learning_rate) else learning_rate

        def leaf(g, v_row, v_col, v, p):
            dims = factored_dims(p.shape, min_dim_size_to_factor)
            grad_sqr = g * g + eps
            if dims is not None:
                d1, d0 = dims
                v_row = (decay * v_row + (1.0 - decay) * _mean(grad_sqr, d0)).astype(p.dtype)
                v_col = (decay * v_col + (1.0 - decay) * _mean(grad_sqr, d1)).astype(p.dtype)
                reduced_d1 = d1 - 1 if d1 > d0 else d1
                row_factor = jax.lax.rsqrt(v_row / jnp.mean(v_row, axis=reduced_d1, keepdims=True))
                u = g * jnp.expand_dims(row_factor, d0) * jnp.expand_dims(jax.lax.rsqrt(v_col), d1)
            else:
                v = (decay * v + (1.0 - decay) * grad_sqr).astype(p.dtype)
                u = g * jax.lax.rsqrt(v)
            scale = lr
            if clipping_threshold is not None:
                rms_u = jnp.sqrt(jnp.mean(u * u))
                scale = scale / jnp.maximum(1.0, rms_u / clipping_threshold)
            if multiply_by_parameter_scale:
                scale = scale * jnp.maximum(jnp.sqrt(jnp.mean(jnp.square(p))), min_scale)
            new = scale * u
            if weight_decay_rate is not None:
                new = new + weight_decay_rate * p
            return (-new).astype(p.dtype), v_row, v_col, v

        out = jax.tree.map(leaf, grads, stats.v_row, stats.v_col, stats.v, params)
        treedef = jax.tree.structure(grads)
        updates, v_row, v_col, v = (treedef.unflatten(x) for x in zip(*treedef.flatten_up_to(out)))
        new_stats = stats._replace(count=optax.safe_increment(count), v_row=v_row,
                                   v_col=v_col, v=v)
        rest = tuple(s._replace(count=optax.safe_increment(s.count))
                     if isinstance(s, optax.ScaleByScheduleState) else s for s in state[1:])
        return updates, (new_stats,) + rest

    return optax.GradientTransformation(reference.init, update)
