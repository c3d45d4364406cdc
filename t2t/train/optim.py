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


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """`cfg.name` in {adafactor, adamw}; global-norm clipping when `cfg.grad_clip > 0`."""
    lr = schedule(cfg)
    if cfg.name == "adafactor":
        # T5's settings: factored second moments, no momentum, update clipping at 1.0,
        # decay rate 0.8, updates scaled by the parameter RMS.
        tx = optax.adafactor(learning_rate=lr, decay_rate=0.8, clipping_threshold=1.0,
                             momentum=None, multiply_by_parameter_scale=True, factored=True,
                             min_dim_size_to_factor=128, eps=1e-30,
                             weight_decay_rate=float(cfg.get("weight_decay", 0.0)) or None)
    elif cfg.name == "adamw":
        tx = optax.adamw(learning_rate=lr, b1=float(cfg.get("b1", 0.9)), b2=float(cfg.get("b2", 0.999)),
                         eps=float(cfg.get("eps", 1e-8)), weight_decay=float(cfg.get("weight_decay", 0.0)),
                         mask=decay_mask)
    else:
        raise ValueError(f"optimizer.name={cfg.name!r}; expected adafactor or adamw")
    clip = float(cfg.get("grad_clip", 0.0))
    return optax.chain(optax.clip_by_global_norm(clip), tx) if clip > 0 else tx
