"""The layout of a training run's folder (a "workdir"), in one place.

  <workdir>/config.json                   the resolved training config (t2t.train writes it)
  <workdir>/metrics.jsonl                 one JSON object per logged step and split
  <workdir>/tensorboard/                  the same metrics for TensorBoard
  <workdir>/checkpoints/<step>/           Orbax checkpoints (checkpointer.py)
  <workdir>/best/                         a model dir (model_dir.py) + metrics.json: the best
                                          params of task evaluation (restore.export_best)
  <workdir>/eval/<label>/<name>.json      t2t.evaluate's metrics of a checkpoint (a step or
  <workdir>/eval/<label>/<name>.predictions.jsonl   "best") and its predictions

A model dir (t2t.convert's output, best/) holds model_config.json and params/.

This module is light (no JAX): the sweep tools read run folders through it. The Orbax
Checkpointer is in `checkpointer.py`, restoring params and init_from in `restore.py`.
"""
from __future__ import annotations

import pathlib

from t2t import fileio

CONFIG = "config.json"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
BEST = "best"
BEST_METRICS = "metrics.json"
EVAL = "eval"
MODEL_CONFIG = "model_config.json"   # in a model dir
PARAMS = "params"                    # in a model dir


def _path(workdir) -> pathlib.Path:
    return pathlib.Path(workdir)


def config_path(workdir) -> pathlib.Path:
    return _path(workdir) / CONFIG


def metrics_path(workdir) -> pathlib.Path:
    return _path(workdir) / METRICS


def tensorboard_dir(workdir) -> pathlib.Path:
    return _path(workdir) / TENSORBOARD


def checkpoints_dir(workdir) -> pathlib.Path:
    return _path(workdir) / CHECKPOINTS


def checkpoint_dir(workdir, step: int) -> pathlib.Path:
    """The folder of one complete checkpoint (Orbax renames it into place when done)."""
    return checkpoints_dir(workdir) / str(int(step))


def best_dir(workdir) -> pathlib.Path:
    return _path(workdir) / BEST


def best_metrics_path(workdir) -> pathlib.Path:
    return best_dir(workdir) / BEST_METRICS


def eval_root(workdir) -> pathlib.Path:
    return _path(workdir) / EVAL


def eval_dir(workdir, label) -> pathlib.Path:
    """Where t2t.evaluate writes the results of checkpoint `label` (a step, or "best")."""
    return eval_root(workdir) / str(label)


def eval_result_path(workdir, label, name: str) -> pathlib.Path:
    return eval_dir(workdir, label) / f"{name}.json"


def eval_predictions_path(workdir, label, name: str) -> pathlib.Path:
    return eval_dir(workdir, label) / f"{name}.predictions.jsonl"


def model_config_path(model_dir) -> pathlib.Path:
    return _path(model_dir) / MODEL_CONFIG


def params_dir(model_dir) -> pathlib.Path:
    return _path(model_dir) / PARAMS


def is_run_dir(path) -> bool:
    """Whether `path` is a training workdir (config.json and checkpoints/)."""
    return checkpoints_dir(path).is_dir() and config_path(path).is_file()


def is_model_dir(path) -> bool:
    """Whether `path` holds params/ (a converted checkpoint, best/)."""
    return params_dir(path).is_dir()


def read_run_config(workdir):
    """The ConfigDict of <workdir>/config.json; FileNotFoundError when it is not a workdir."""
    import ml_collections

    path = config_path(workdir)
    config = fileio.read_json(path)
    if config is None:
        raise FileNotFoundError(f"{path} not found: --workdir must be a t2t training workdir")
    return ml_collections.ConfigDict(config)


def read_metrics(workdir, skip_malformed: bool = False) -> list[dict]:
    """The records of <workdir>/metrics.jsonl ([] when there is none yet), one per (step, split):
    a run resumed after a crash writes again the steps after its last checkpoint, and those
    later rows supersede the lost run's. `skip_malformed` skips a line cut off by a killed run
    (for readers of live runs)."""
    try:
        records = list(fileio.read_jsonl(metrics_path(workdir), skip_malformed=skip_malformed))
    except FileNotFoundError:
        return []
    last = {(r.get("step"), r.get("split")): i for i, r in enumerate(records)}
    return [r for i, r in enumerate(records) if last[(r.get("step"), r.get("split"))] == i]
