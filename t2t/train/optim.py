"""Optimizers and learning-rate schedules on Optax, configured by name.

Schedules take their own lengths (`warmup_steps`, `decay_steps`), never the
run's `num_steps`, so extending a run follows the same curve as a longer one.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import ml_collections
import optax

from t2t.train import adafactor


def schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
    """`cfg.schedule` in {constant, linear, cosine, rsqrt} with linear warmup.

    rsqrt is T5's: lr = base * 1 / sqrt(max(step, warmup_steps)) (with base 1.0
    and warmup 10^4 this is T5's pretraining schedule; no separate warmup ramp).
    linear/cosine decay from the peak to `end_value` over `decay_steps` after warmup.
    """
    name, lr = cfg.schedule, float(cfg.learning_rate)
    warmup = int(cfg.get("warmup_steps", 0))
    if name == "rsqrt":
        return lambda step: lr * jax.lax.rsqrt(jnp.maximum(step, max(warmup, 1)).astype(jnp.float32))
    if name == "constant":
        main = optax.constant_schedule(lr)
    elif name == "linear":
        main = optax.linear_schedule(lr, float(cfg.get("end_value", 0.0)), int(cfg.decay_steps))
    elif name == "cosine":
        main = optax.cosine_decay_schedule(lr, int(cfg.decay_steps),
                                           alpha=float(cfg.get("end_value", 0.0)) / lr if lr else 0.0)
    else:
        raise ValueError(f"optimizer.schedule={name!r}; expected constant, linear, cosine or rsqrt")
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def decay_mask(params, exclude: str = r"(bias|scale|norm)"):
    """True for params that get weight decay: not biases, norm scales (regex on the path)."""
    pattern = re.compile(exclude)

    def keep(path, _):
        name = "/".join(str(getattr(p, "key", p)) for p in path)
        return not pattern.search(name)
    return jax.tree_util.tree_map_with_path(keep, params)


def scanned_layers(params):
    """True for leaves under a `layers` key: the scanned layout's stacked layers
    (t2t.models.scan), whose leading axis is the layer axis."""
    def stacked(path, _):
        return any(getattr(p, "key", None) == "layers" for p in path)
    return jax.tree_util.tree_map_with_path(stacked, params)


def _vmapped(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """`tx` run separately on every slice along axis 0 of its leaves (one shared axis size)."""
    return optax.GradientTransformation(jax.vmap(tx.init), jax.vmap(tx.update))


def per_layer(tx: optax.GradientTransformation, stacked) -> optax.GradientTransformation:
    """`tx` layer by layer on the leaves marked by `stacked`, as is on the others.

    `stacked` is a tree (or prefix) of bools, or a function of the params giving one, marking
    leaves whose leading axis is the layer axis. Every slice of a marked leaf gets its own
    state and its own whole-tensor statistics (Adafactor's factored moments, update clipping
    by block RMS, parameter-RMS scale), exactly as the looped layers' separate tensors do.
    Marked leaves are grouped by their number of layers, as one `jax.vmap` needs one size.
    """
    def labels(tree):
        marks = stacked(tree) if callable(stacked) else stacked
        return jax.tree.map(lambda mark, sub: jax.tree.map(lambda x: _label(mark, x), sub),
                            marks, tree)

    def partition(tree):
        tree_labels = labels(tree)
        groups = {g: tx if g == "other" else _vmapped(tx) for g in set(jax.tree.leaves(tree_labels))}
        return optax.partition(groups, tree_labels)

    def init(params):
        return partition(params).init(params)

    def update(updates, state, params=None):
        return partition(updates).update(updates, state, params)
    return optax.GradientTransformation(init, update)


def _label(stacked: bool, x) -> str:
    """A leaf's group in `per_layer`: 'other', or 'layers_<n>' for n stacked layers."""
    if not stacked:
        return "other"
    if not getattr(x, "ndim", 0):
        raise ValueError(f"a leaf marked as stacked layers is a scalar (shape "
                         f"{getattr(x, 'shape', ())}); stacked leaves need a leading layer axis")
    return f"layers_{x.shape[0]}"


def make_optimizer(cfg: ml_collections.ConfigDict, stacked=None) -> optax.GradientTransformation:
    """`cfg.name` in {adafactor, adamw}; global-norm clipping when `cfg.grad_clip > 0`.

    `stacked` (see `per_layer`; e.g. `scanned_layers` for cfg.scan_layers models) marks params
    stacked on a leading layer axis: Adafactor then treats that axis as a batch axis, so a
    scanned model trains exactly as the looped one. AdamW is elementwise and needs no marker.
    Global-norm clipping stays global over all params.
    """
    lr = schedule(cfg)
    if cfg.name == "adafactor":
        # T5's settings: factored second moments, no momentum, update clipping at 1.0,
        # decay rate 0.8, updates scaled by the parameter RMS; attention kernels factored as
        # T5's 2-D [d_model, heads * head_dim] (t2t.train.adafactor: optax.adafactor's
        # arithmetic, fused per parameter).
        tx = adafactor.adafactor(lr, decay_rate=0.8, clipping_threshold=1.0,
                                 multiply_by_parameter_scale=True, min_dim_size_to_factor=128,
                                 eps=1e-30, weight_decay_rate=float(cfg.get("weight_decay", 0.0)) or None)
        if stacked is not None:
            tx = per_layer(tx, stacked)
    elif cfg.name == "adamw":
        tx = optax.adamw(learning_rate=lr, b1=float(cfg.get("b1", 0.9)), b2=float(cfg.get("b2", 0.999)),
                         eps=float(cfg.get("eps", 1e-8)), weight_decay=float(cfg.get("weight_decay", 0.0)),
                         mask=decay_mask)
    else:
        raise ValueError(f"optimizer.name={cfg.name!r}; expected adafactor or adamw")
    clip = float(cfg.get("grad_clip", 0.0))
    return optax.chain(optax.clip_by_global_norm(clip), tx) if clip > 0 else tx
