"""Adafactor as T5 runs it, with each parameter's update computed in one fused expression.

`adafactor(...)` is `optax.adafactor(..., momentum=None)` (same arithmetic, same state tree) with
one difference, T5's: a parameter with 3 or more axes (the attention kernels, [d_model, heads,
head_dim] and [heads, head_dim, d_model]) is factored as the 2-D matrix T5 stores, its largest
axis against all the others ([d_model, heads * head_dim]: Mesh TensorFlow's combined attention
dims; T5X's logical factor rules, embed = ROW and heads, kv = COLUMN, give the same), where
optax factors only its two largest axes (and, with head_dim < 128, not at all). Its state is
then v_row [d_model] and v_col [heads, head_dim] instead of a full-size v. Tensors of 1 or 2
axes follow optax exactly (tests/train/test_adafactor.py checks both against optax).

It is written for XLA: per parameter it reads the gradient for the second-moment statistics,
once more for the update's RMS (clipping) and once to write the new parameter, and the
parameter twice (its RMS, the update). Optax's chain of transformations instead materialises
the update between its stages and computes the parameter RMS twice through a masked copy
(`safe_root_mean_squares`). Means over a leading axis of a wide array are written as a
matrix-vector product with ones: XLA's CPU reduction there ran 10x slower than the product
(the [d_model, vocab] output layer's column statistics took 64 ms; the product takes 6 ms).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def factored_dims(shape, min_dim_size_to_factor: int = 128):
    """(row axes, column axes) of the factored second moment, or None when `shape` is not
    factored. 2 axes: optax's rule, ((second-largest,), (largest,)) unless the second-largest
    is shorter than `min_dim_size_to_factor` (ties broken as optax does, a stable argsort).
    3+ axes: T5's 2-D view, ((largest,), (all the other axes)), unless either side of that
    matrix is shorter than `min_dim_size_to_factor`. The second moment is estimated as
    outer(row means, column means) / their mean: mean over the column axes gives v_row (shaped
    as the row axes), mean over the row axes v_col."""
    if len(shape) < 2:
        return None
    order = np.argsort(shape)
    if len(shape) == 2:
        if shape[order[-2]] < min_dim_size_to_factor:
            return None
        return (int(order[-2]),), (int(order[-1]),)
    rows = (int(order[-1]),)
    cols = tuple(a for a in range(len(shape)) if a not in rows)
    if min(shape[rows[0]], int(np.prod([shape[a] for a in cols]))) < min_dim_size_to_factor:
        return None
    return rows, cols


def _mean(x, axes: tuple[int, ...]):
    """Mean over `axes`. Over one leading axis of a wide array (>= 16384 elements behind it, as
    the [d_model, vocab] output layer's column statistics) as a product with ones: XLA's CPU
    reduction there ran 10x slower than the product (64 vs 6 ms); elsewhere it is as fast."""
    if len(axes) > 1 or axes[0] == x.ndim - 1 or int(np.prod(x.shape[axes[0] + 1:])) < _WIDE:
        return jnp.mean(x, axis=axes)
    n = x.shape[axes[0]]
    return jnp.matmul(jnp.moveaxis(x, axes[0], -1), jnp.full((n,), 1.0 / n, x.dtype),
                      precision=jax.lax.Precision.HIGHEST)


_WIDE = 16384


def _removed(shape, axes):
    return tuple(n for a, n in enumerate(shape) if a not in axes)


def _unzip(like, tree):
    """A tree (shaped as `like`) of n-tuples -> n trees shaped as `like`."""
    treedef = jax.tree.structure(like)
    return tuple(treedef.unflatten(x) for x in zip(*treedef.flatten_up_to(tree)))


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
                rows, cols = dims
                v_row = (decay * v_row + (1.0 - decay) * _mean(grad_sqr, cols)).astype(p.dtype)
                v_col = (decay * v_col + (1.0 - decay) * _mean(grad_sqr, rows)).astype(p.dtype)
                row_factor = jax.lax.rsqrt(v_row / jnp.mean(v_row))
                u = g * jnp.expand_dims(row_factor, cols) * jnp.expand_dims(jax.lax.rsqrt(v_col), rows)
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

        updates, v_row, v_col, v = _unzip(
            grads, jax.tree.map(leaf, grads, stats.v_row, stats.v_col, stats.v, params))
        new_stats = stats._replace(count=optax.safe_increment(count), v_row=v_row,
                                   v_col=v_col, v=v)
        rest = tuple(s._replace(count=optax.safe_increment(s.count))
                     if isinstance(s, optax.ScaleByScheduleState) else s for s in state[1:])
        return updates, (new_stats,) + rest

    def init(params):
        state = reference.init(params)
        stats = state[0]

        def t5_view(p, v_row, v_col, v):  # 3+ axes: T5's 2-D factoring instead of optax's
            if p.ndim <= 2:
                return v_row, v_col, v
            dims = factored_dims(p.shape, min_dim_size_to_factor)
            none = jnp.zeros((1,), p.dtype)
            if dims is None:
                return none, none, jnp.zeros_like(p)
            rows, cols = dims
            return (jnp.zeros(_removed(p.shape, cols), p.dtype),
                    jnp.zeros(_removed(p.shape, rows), p.dtype), none)
        v_row, v_col, v = _unzip(params, jax.tree.map(t5_view, params, stats.v_row, stats.v_col,
                                                      stats.v))
        return (stats._replace(v_row=v_row, v_col=v_col, v=v),) + tuple(state[1:])

    return optax.GradientTransformation(init, update)
