"""A t2t model dir: a model config and its params, what t2t.convert writes and best/ holds.

  <dir>/model_config.json   the model ConfigDict as JSON (every field of variants.base_config)
  <dir>/params/             Orbax StandardCheckpointer save of the UNBOXED params tree, i.e.
                            nn.unbox(Model.init(...)): {'token_embedder': {'embedding': ...},
                            'encoder': {...}, 'decoder': {...}[, 'logits_dense': {...}]},
                            layers as `layers_{i}`, or stacked in `layers` when the config
                            has scan_layers=True (see t2t/models/scan.py)
"""
from __future__ import annotations

import os
import pathlib

import ml_collections

from t2t import fileio
from t2t import workdir as layout
from t2t.models.variants import base_config, validate


def save_checkpoint(dst, cfg, params) -> None:
    """Writes <dst>/model_config.json and <dst>/params (Orbax) for unboxed or boxed params."""
    import flax.linen as nn
    import orbax.checkpoint as ocp
    dst = pathlib.Path(os.path.abspath(dst))
    dst.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write_text(layout.model_config_path(dst), cfg.to_json(indent=2))
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(layout.params_dir(dst), nn.unbox(params), force=True)


def load_config(src) -> ml_collections.ConfigDict:
    """The model config of a t2t model dir (<src>/model_config.json)."""
    cfg_path = layout.model_config_path(src)
    stored = fileio.read_json(cfg_path)
    if stored is None:
        raise FileNotFoundError(f"{cfg_path}: not a t2t checkpoint (no model_config.json)")
    cfg = base_config()
    unknown = sorted(set(stored) - set(cfg.keys()))
    if unknown:
        raise ValueError(f"{cfg_path}: unknown model config fields {unknown}")
    cfg.update(stored)
    validate(cfg)
    return cfg


def load_checkpoint(src):
    """(cfg, params) from a t2t model dir (params as unboxed jax arrays)."""
    import orbax.checkpoint as ocp
    src = pathlib.Path(os.path.abspath(src))
    cfg = load_config(src)
    with ocp.StandardCheckpointer() as ckptr:
        params = ckptr.restore(layout.params_dir(src))
    return cfg, params
