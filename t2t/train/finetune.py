"""Periodic task evaluation during training, and the best params it keeps.

- `TaskEvaluation`: every `train.eval_every` steps, the tasks of `eval.tasks` (tasks or the
  `glue` / `super_glue` mixtures) are decoded or rank-classified on the current params
  through t2t.eval's API, written to metrics.jsonl as one `split="task_eval"` record, and
  `<workdir>/best/` is replaced when the selection metric improves (t2t/workdir/restore.py
  writes and reads best/; init_from checks are there too).
- Selection metric (`eval.best_metric`, or automatically): the GLUE / SuperGLUE average when
  a whole benchmark is evaluated ("glue/average"), else the first metric of the first task
  ("glue_rte/accuracy"). Higher is better for every T5 metric.
"""
from __future__ import annotations

import math
import pathlib

from t2t.eval import evaluator, inference
from t2t.workdir import restore


# ----------------------------------------------------------------------------- evaluation
def _flat_metrics(results, averages, split: str) -> dict[str, float]:
    """{"<task>/<metric>" (or "<task>/<split>/<metric>" for MNLI's splits), "<benchmark>/<group>"}."""
    out = {}
    for result, _ in results:
        name = result.task if result.split == split else f"{result.task}/{result.split}"
        out.update({f"{name}/{k}": v for k, v in result.metrics.items()})
    for average in averages:
        out.update({f"{average['task']}/{k}": v for k, v in average["metrics"].items()})
    return out


def _selection_metric(results, averages, split: str) -> str:
    """The benchmark average when a whole benchmark was scored, else the first task's first metric."""
    if averages:
        return f"{averages[0]['task']}/average"
    return next(iter(_flat_metrics(results[:1], [], split)))


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
        best = restore.read_best(self.workdir, recover=primary)
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
        values = _flat_metrics(results, averages, self.split)
        self.metric = self.metric or _selection_metric(results, averages, self.split)
        if self.metric not in values:
            raise ValueError(f"eval.best_metric={self.metric!r} is not among the evaluated "
                             f"metrics {sorted(values)}")
        value = values[self.metric]
        improved = math.isfinite(value) and (self.best_value is None or value > self.best_value)
        if improved:
            self.best_value = value
            restore.export_best(self.workdir, self.model_cfg, params, {
                "step": int(step), "metric": self.metric, "value": value, "metrics": values},
                primary=self.primary)
        speed = inference.total_speed(results)
        writer.write(step, {**values, "examples_per_second": speed}, "task_eval")
        best = "none yet" if self.best_value is None else f"{self.best_value:.4g}"
        return (f"[task_eval] step {step}: {self.metric}={value:.4g} (best {best}"
                f"{', saved to best/' if improved else ''}), {speed:.1f} examples/s")
