"""Params out of run folders and model dirs: init_from, --checkpoint, and best/.

- `load_params(path, abstract_params, shardings, step)`: params of a workdir's checkpoint
  (latest or `step`) or of a model dir (params/), laid out with `shardings`.
- `check_init_from(path, model_cfg)`: the pretrained model (a workdir's config.json, or a
  model dir's model_config.json) must have this run's shape; only `dropout_rate` and the
  compute `dtype` may differ.
- `resolve_checkpoint(workdir, checkpoint)`: what a --checkpoint value names.
- `read_best` / `export_best`: <workdir>/best/, a model dir plus metrics.json {"step",
  "metric", "value", "metrics"}; it works as init_from, for `t2t.evaluate --checkpoint
  DIR/best` and for t2t.convert. It is written to best.tmp/ and renamed into place, so a
  reader never sees half of one.
"""
from __future__ import annotations

import os
import pathlib
import shutil

import jax
import ml_collections

from t2t import fileio
from t2t import workdir as layout
from t2t.models import variants
from t2t.workdir import checkpointer as ckpt_lib
from t2t.workdir import model_dir

# Model fields that may differ between a pretrained model and the run that starts from it.
MAY_DIFFER = ("dropout_rate", "dtype", "kernels")


# ----------------------------------------------------------------------------- params
def load_params(path, abstract_params, shardings, step: int | None = None):
    """Params from a t2t workdir (its latest checkpoint, or `step`) or a model dir (params/)."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    ckpt_dir = layout.checkpoints_dir(path)
    target = ckpt_lib.abstract_with_shardings(abstract_params, shardings)
    if ckpt_dir.is_dir():
        manager = ckpt_lib.Checkpointer(ckpt_dir, async_save=False)
        try:
            step = manager.latest_step() if step is None else step
            if step is None:
                raise FileNotFoundError(f"init_from={path}: no complete checkpoint in {ckpt_dir}")
            if step not in manager.all_steps():
                raise FileNotFoundError(f"{ckpt_dir}: no checkpoint at step {step}; it has steps "
                                        f"{manager.all_steps()}")
        finally:
            manager.close()
        # Only the params of the saved train state (its optimizer may differ from this run's).
        item = {"params": target}
        with ocp.PyTreeCheckpointer() as reader:
            restored = reader.restore(layout.checkpoint_dir(path, step) / "state", args=ocp.args.PyTreeRestore(
                item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                partial_restore=True))
        return restored["params"]
    if layout.is_model_dir(path):
        return ocp.StandardCheckpointer().restore(layout.params_dir(path), target)
    raise FileNotFoundError(f"init_from={path}: expected a t2t workdir (with checkpoints/) or a "
                            "converted model dir (with params/)")


def latest_step(workdir) -> int | None:
    """The step of the workdir's latest complete checkpoint, or None."""
    manager = ckpt_lib.Checkpointer(layout.checkpoints_dir(workdir), async_save=False)
    try:
        return manager.latest_step()
    finally:
        manager.close()


def resolve_checkpoint(workdir, checkpoint: str | int | None) -> tuple[pathlib.Path, int | None, str]:
    """(path for load_params, step or None, label) for a --checkpoint value: None (the latest
    step), a step number, <workdir>/checkpoints/<step>, or a model dir (<workdir>/best)."""
    workdir = pathlib.Path(workdir).absolute()
    if checkpoint is None or str(checkpoint).isdigit():
        ckpt_dir = layout.checkpoints_dir(workdir)
        if not ckpt_dir.is_dir():
            raise FileNotFoundError(f"{ckpt_dir}: no checkpoints in this workdir")
        step = latest_step(workdir) if checkpoint is None else int(checkpoint)
        if step is None:
            raise FileNotFoundError(f"{ckpt_dir}: no complete checkpoint")
        return workdir, step, str(step)
    path = pathlib.Path(checkpoint).absolute()
    if path.name.isdigit() and path.parent.name == layout.CHECKPOINTS:
        return path.parent.parent, int(path.name), path.name
    if not layout.is_model_dir(path):
        raise FileNotFoundError(f"--checkpoint {checkpoint}: expected a step number, "
                                "<workdir>/checkpoints/<step>, or a directory with params/ "
                                "(<workdir>/best, a converted checkpoint)")
    return path, None, path.name


# ----------------------------------------------------------------------------- init_from
def pretrained_model_config(path, flag: str = "init_from") -> ml_collections.ConfigDict:
    """The model config of a t2t workdir (config.json) or a model dir (model_config.json)."""
    path = pathlib.Path(path).absolute()
    if layout.is_run_dir(path):
        run_config = layout.config_path(path)
        run = fileio.read_json(run_config)
        try:
            return variants.from_run_config(run)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{run_config}: no usable model block ({e}); expected "
                             '{"model": {"name": ..., "overrides": {...}}}') from None
    if layout.model_config_path(path).is_file():
        return model_dir.load_config(path)
    raise FileNotFoundError(f"{flag}={path}: expected a t2t workdir (config.json and "
                            "checkpoints/) or a converted model dir (model_config.json and params/)")


def check_init_from(path, model_cfg, flag: str = "init_from") -> None:
    """Raises ValueError naming every model field in which `path`'s model differs from `model_cfg`."""
    pretrained = pretrained_model_config(path, flag)
    differ = [f"{k}={pretrained[k]!r} there, {model_cfg[k]!r} here" for k in sorted(model_cfg.keys())
              if k not in MAY_DIFFER and pretrained.get(k) != model_cfg[k]]
    if differ:
        raise ValueError(f"{flag}={path}: the pretrained model differs from this run's model in "
                         f"{'; '.join(differ)}. Set --config.model.name / --config.model.overrides.* "
                         "to the pretrained run's values")


# ----------------------------------------------------------------------------- best/
def _best_siblings(workdir) -> tuple[pathlib.Path, pathlib.Path, pathlib.Path]:
    best = layout.best_dir(pathlib.Path(workdir).absolute())
    return best, best.with_name(best.name + ".tmp"), best.with_name(best.name + ".old")


def read_best(workdir, recover: bool = True) -> dict | None:
    """best/metrics.json, or None. With `recover`, first finishes a replacement that was cut
    off between its two renames (best/ moved to best.old/, best.tmp/ not yet moved in)."""
    best, _, old = _best_siblings(workdir)
    if recover and not best.exists() and old.exists():
        os.replace(old, best)
    return fileio.read_json(layout.best_metrics_path(workdir))


def export_best(workdir, model_cfg, params, info: dict, primary: bool = True) -> pathlib.Path:
    """Writes params + model config + `info` to <workdir>/best/ (via best.tmp/ and renames)."""
    best, tmp, old = _best_siblings(workdir)
    if primary:
        shutil.rmtree(tmp, ignore_errors=True)
    model_dir.save_checkpoint(tmp, model_cfg, params)  # every process joins Orbax's save
    if primary:
        fileio.atomic_write_json(tmp / layout.BEST_METRICS, info, sort_keys=True)
        read_best(workdir)  # complete an interrupted replacement first
        if best.exists():
            os.replace(best, old)
        os.replace(tmp, best)
        shutil.rmtree(old, ignore_errors=True)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("t2t.workdir.export_best")
    return best
