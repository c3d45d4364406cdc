"""Fine-tuning support for the training loop: `init_from` checks, periodic task evaluation
and the best checkpoint.

- `check_init_from(path, model_cfg)`: the pretrained model (a t2t workdir's config.json, or a
  converted checkpoint's model_config.json) must have this run's shape; only `dropout_rate`
  and the compute `dtype` may differ.
- `TaskEvaluation`: every `train.eval_every` steps, the tasks of `eval.tasks` (tasks or the
  `glue` / `super_glue` mixtures) are decoded or rank-classified on the current params
  (t2t/eval/inference.py), written to metrics.jsonl as one `split="task_eval"` record, and
  `<workdir>/best/` is replaced when the selection metric improves.
- Selection metric (`eval.best_metric`, or automatically): the GLUE / SuperGLUE average when
  a whole benchmark is evaluated ("glue/average"), else the first metric of the first task
  ("glue_rte/accuracy"). Higher is better for every T5 metric.
- `<workdir>/best/` is a t2t checkpoint (model_config.json + params/, see
  t2t/models/convert.py) plus metrics.json {"step", "metric", "value", "metrics"}: it works
  as `init_from`, for `python -m t2t.evaluate --checkpoint DIR/best` and for t2t.convert.
  It is written to best.tmp/ and renamed into place, so a reader never sees half of one.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import shutil

import jax
import ml_collections

from t2t.eval import evaluator, inference
from t2t.models import convert, variants

# Model fields that may differ between a pretrained model and the run that starts from it.
MAY_DIFFER = ("dropout_rate", "dtype")


# ----------------------------------------------------------------------------- init_from
def pretrained_model_config(path, flag: str = "init_from") -> ml_collections.ConfigDict:
    """The model config of a t2t workdir (config.json) or a converted checkpoint (model_config.json)."""
    path = pathlib.Path(path).absolute()
    run_config, model_config = path / "config.json", path / "model_config.json"
    if (path / "checkpoints").is_dir() and run_config.is_file():
        run = json.loads(run_config.read_text())
        try:
            model = run["model"]
            return variants.get_model_config(model["name"], **model.get("overrides", {}))
        except (KeyError, TypeError) as e:
            raise ValueError(f"{run_config}: no usable model block ({e}); expected "
                             '{"model": {"name": ..., "overrides": {...}}}') from None
    if model_config.is_file():
        cfg = variants.base_config()
        stored = json.loads(model_config.read_text())
        unknown = sorted(set(stored) - set(cfg.keys()))
        if unknown:
            raise ValueError(f"{model_config}: unknown model config fields {unknown}")
        cfg.update(stored)
        return cfg
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


# ----------------------------------------------------------------------------- evaluation
def flat_metrics(results, averages, split: str) -> dict[str, float]:
    """{"<task>/<metric>" (or "<task>/<split>/<metric>" for MNLI's splits), "<benchmark>/<group>"}."""
    out = {}
    for result, _ in results:
        name = result.task if result.split == split else f"{result.task}/{result.split}"
        out.update({f"{name}/{k}": v for k, v in result.metrics.items()})
    for average in averages:
        out.update({f"{average['task']}/{k}": v for k, v in average["metrics"].items()})
    return out


def default_selection_metric(results, averages, split: str) -> str:
    """The benchmark average when a whole benchmark was scored, else the first task's first metric."""
    if averages:
        return f"{averages[0]['task']}/average"
    return next(iter(flat_metrics(results[:1], [], split)))


class TaskEvaluation:
    """Scores `cfg.eval.tasks` on params during training and keeps the best params."""

    def __init__(self, cfg, model, model_cfg, vocab, workdir, *, sharding=None, primary=True):
        ev = cfg.eval
        names = [n.strip() for n in ev.tasks.split(",") if n.strip()]
        self.tasks = evaluator.resolve_tasks(names)
        self.split, self.method = ev.split, ev.method
        self.max_examples = ev.max_examples or None
        self.data_dir = cfg.data.data_dir or None
        self.metric = ev.best_metric or None
        self.model_cfg, self.primary = model_cfg, primary
        self.workdir = pathlib.Path(workdir)
        self.inference = inference.Inference(
            model, vocab, batch_size=ev.batch_size, sharding=sharding,
            sequence_length={"inputs": cfg.data.inputs_length, "targets": cfg.data.targets_length})
        best = read_best(self.workdir, recover=primary)
        self.best_value = None if best is None else best["value"]

    @classmethod
    def from_config(cls, cfg, model, model_cfg, vocab, workdir, **kwargs):
        """A TaskEvaluation when `cfg.eval.tasks` names tasks, else None."""
        if "eval" not in cfg or not cfg.eval.tasks.strip():
            return None
        return cls(cfg, model, model_cfg, vocab, workdir, **kwargs)

    def __call__(self, step: int, params, writer) -> str:
        """Evaluates, writes the task_eval record (and best/ when improved); returns a log line."""
        results, averages = inference.evaluate_tasks(
            self.inference, params, self.tasks, self.split, method=self.method,
            data_dir=self.data_dir, max_examples=self.max_examples)
        values = flat_metrics(results, averages, self.split)
        self.metric = self.metric or default_selection_metric(results, averages, self.split)
        if self.metric not in values:
            raise ValueError(f"eval.best_metric={self.metric!r} is not among the evaluated "
                             f"metrics {sorted(values)}")
        value = values[self.metric]
        improved = math.isfinite(value) and (self.best_value is None or value > self.best_value)
        if improved:
            self.best_value = value
            export_best(self.workdir, self.model_cfg, params, {
                "step": int(step), "metric": self.metric, "value": value, "metrics": values},
                primary=self.primary)
        speed = inference.total_speed(results)
        writer.write(step, {**values, "examples_per_second": speed}, "task_eval")
        best = "none yet" if self.best_value is None else f"{self.best_value:.4g}"
        return (f"[task_eval] step {step}: {self.metric}={value:.4g} (best {best}"
                f"{', saved to best/' if improved else ''}), {speed:.1f} examples/s")


# ----------------------------------------------------------------------------- best/
def read_best(workdir, recover: bool = True) -> dict | None:
    """best/metrics.json, or None. With `recover`, first finishes a replacement that was cut
    off between its two renames (best/ moved to best.old/, best.tmp/ not yet moved in)."""
    workdir = pathlib.Path(workdir)
    best, old = workdir / "best", workdir / "best.old"
    if recover and not best.exists() and old.exists():
        os.replace(old, best)
    path = best / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def export_best(workdir, model_cfg, params, info: dict, primary: bool = True) -> pathlib.Path:
    """Writes params + model config + `info` to <workdir>/best/ (via best.tmp/ and renames)."""
    workdir = pathlib.Path(workdir).absolute()
    best, tmp, old = workdir / "best", workdir / "best.tmp", workdir / "best.old"
    if primary:
        shutil.rmtree(tmp, ignore_errors=True)
    convert.save_checkpoint(tmp, model_cfg, params)  # every process joins Orbax's save
    if primary:
        (tmp / "metrics.json").write_text(json.dumps(info, indent=1, sort_keys=True))
        read_best(workdir)  # complete an interrupted replacement first
        if best.exists():
            os.replace(best, old)
        os.replace(tmp, best)
        shutil.rmtree(old, ignore_errors=True)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices("t2t.finetune.export_best")
    return best
