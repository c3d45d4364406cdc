"""Convert params between the looped and the scanned layer layouts (cfg.scan_layers).

Looped (the default): `<stack>/layers_0/...`, ..., `<stack>/layers_{n-1}/...`.
Scanned: `<stack>/layers/...`, the same subtree with every leaf stacked on a leading axis.
Everything outside the layers (relative-bias table, final norm, embeddings) is shared as is.
Both helpers take and return UNBOXED params (`nn.unbox`); numpy leaves stay numpy.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def stack_names(cfg) -> list[tuple[str, int]]:
    """(stack name, number of layers) of every stack in the params of `cfg`'s model; a shared
    encoder-decoder keeps one stack, 'encoder'."""
    stacks = []
    if cfg.architecture != "decoder_only":
        stacks.append(("encoder", cfg.num_encoder_layers))
    if cfg.architecture != "encoder_only" and not (
            cfg.architecture == "encoder_decoder" and cfg.shared_encoder_decoder):
        stacks.append(("decoder", cfg.num_decoder_layers))
    return stacks


def _xp(x):
    return np if isinstance(x, np.ndarray) else jnp


def stack_layers(params: dict, cfg) -> dict:
    """Looped params -> scanned params (`layers_{i}` subtrees stacked into `layers`)."""
    out = dict(params)
    for name, n in stack_names(cfg):
        stack = dict(params[name])
        missing = [f"layers_{i}" for i in range(n) if f"layers_{i}" not in stack]
        if missing:
            raise KeyError(f"params[{name!r}] has no {missing} (not the looped layout of {n} "
                           f"layers; keys {sorted(stack)})")
        layers = [stack.pop(f"layers_{i}") for i in range(n)]
        stack["layers"] = jax.tree.map(lambda *xs: _xp(xs[0]).stack(xs), *layers)
        out[name] = stack
    return out


def unstack_layers(params: dict, cfg) -> dict:
    """Scanned params -> looped params (the inverse of `stack_layers`)."""
    out = dict(params)
    for name, n in stack_names(cfg):
        stack = dict(params[name])
        if "layers" not in stack:
            raise KeyError(f"params[{name!r}] has no 'layers' (not the scanned layout; keys "
                           f"{sorted(stack)})")
        layers = stack.pop("layers")
        depth = {x.shape[0] for x in jax.tree.leaves(layers)}
        if depth != {n}:
            raise ValueError(f"params[{name!r}]['layers'] has leading axes {sorted(depth)}, "
                             f"expected {n} layers")
        for i in range(n):
            stack[f"layers_{i}"] = jax.tree.map(lambda x, i=i: x[i], layers)
        out[name] = stack
    return out
