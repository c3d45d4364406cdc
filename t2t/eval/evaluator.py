"""Scoring a task split: examples -> predictions -> T5 postprocessors -> T5 metrics.

Predictions may come from a file (`python -m t2t.evaluate --predictions`),
from `predict_fn` (decoding) or from `score_fn` (rank classification: every
candidate target string of an example is scored, the best is the prediction).
Whatever the source, `score_predictions` applies the task's postprocessor to
targets and predictions and runs its metric functions, as seqio does.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
from typing import Callable, Mapping, Sequence

import grain
import numpy as np

from t2t import fileio
from t2t.data import registry
from t2t.tasks import formats
from t2t.tasks import metrics as metrics_lib

PredictFn = Callable[[list[dict]], Sequence[str]]
ScoreFn = Callable[[list[dict], list[str]], Sequence[float]]


@dataclasses.dataclass
class TaskResult:
    """The metrics of one task split and what produced them."""

    task: str
    split: str
    metrics: dict[str, float]
    examples: list[dict]
    predictions: list[str]

    def summary(self) -> dict:
        return {"task": self.task, "split": self.split, "metrics": self.metrics}

    def prediction_records(self) -> list[dict]:
        """[{"input", "target", "prediction"}] per example (for `<task>.predictions.jsonl`)."""
        return [{"input": ex["inputs_pretokenized"], "target": ex["targets_pretokenized"],
                 "prediction": p} for ex, p in zip(self.examples, self.predictions)]


# ------------------------------------------------------------------ tasks and examples
def eval_splits(task: registry.Task, split: str) -> list[str]:
    """The task's splits that `split` names: itself, or for "validation" MNLI's validation_*."""
    if split in task.splits:
        return [split]
    matching = [s for s in task.splits if s.startswith(f"{split}_")]
    if not matching:
        raise ValueError(f"task {task.name!r} has no split {split!r}; it has {list(task.splits)}")
    return matching


def resolve_tasks(names: Sequence[str]) -> list[registry.Task]:
    """Tasks named directly or through a mixture (e.g. "glue"), without repeats, in order."""
    out, seen = [], set()
    for name in names:
        item = registry.get_task_or_mixture(name)
        members = [item] if isinstance(item, registry.Task) else [
            registry.get_task(entry[0] if isinstance(entry, tuple) else entry) for entry in item.tasks]
        for task in members:
            if task.name not in seen:
                seen.add(task.name)
                out.append(task)
    return out


def text_examples(task: registry.Task, split: str, data_dir=None) -> list[dict]:
    """The split's preprocessed examples as text, in `get_dataset` order (no vocabulary needed)."""
    plain_features = {k: registry.Feature(None, add_eos=False, required=f.required)
                      for k, f in task.output_features.items()}
    plain = dataclasses.replace(task, output_features=plain_features)
    return collect_examples(plain.get_dataset(split, data_dir=data_dir))


def collect_examples(ds, max_examples: int | None = None) -> list[dict]:
    """The first `max_examples` (all when None) examples of a task dataset, as dicts.

    String `inputs`/`targets` are copied to `*_pretokenized`, as tokenized examples carry them.
    """
    # Random access skips Grain's prefetch threads (much faster for these small splits).
    items = map(ds.__getitem__, range(len(ds))) if isinstance(ds, grain.MapDataset) else ds
    out = []
    for ex in items:
        if max_examples is not None and len(out) >= max_examples:
            break
        if ex is None:  # filtered out
            continue
        ex = dict(ex)
        for key in ("inputs", "targets"):
            if isinstance(ex.get(key), str):
                ex.setdefault(f"{key}_pretokenized", ex[key])
        out.append(ex)
    return out


# ------------------------------------------------------------------ scoring
def _target_text(example: Mapping) -> str:
    if "targets_pretokenized" in example:
        return example["targets_pretokenized"]
    if isinstance(example.get("targets"), str):
        return example["targets"]
    raise KeyError(f"example has no targets_pretokenized string; keys: {sorted(example)}")


def score_predictions(task: registry.Task, examples: Sequence[Mapping],
                      predictions: Sequence[str]) -> dict[str, float]:
    """The task's metrics for prediction strings, one per example in order."""
    if len(predictions) != len(examples):
        raise ValueError(f"task {task.name!r}: {len(predictions)} predictions for {len(examples)} examples")
    for i, p in enumerate(predictions):
        if not isinstance(p, str):
            raise TypeError(f"task {task.name!r}: prediction {i} is {type(p).__name__} {p!r}, expected a string")
    postprocess = task.postprocess_fn or (lambda text, **unused: text)
    targets = [postprocess(_target_text(ex), example=ex, is_target=True) for ex in examples]
    values = [postprocess(p, example=ex, is_target=False) for p, ex in zip(predictions, examples)]
    out = {}
    for metric_fn in task.metric_fns:
        out.update({name: float(v) for name, v in metric_fn(targets, values).items()})
    return out


def rank_classify(task: registry.Task, examples: Sequence[Mapping], score_fn: ScoreFn) -> list[str]:
    """Per example, the candidate target with the highest `score_fn` (first on ties).

    `score_fn(examples, targets)` gets each example repeated once per candidate
    and returns one score (e.g. the log-likelihood) per pair.
    """
    pairs, owner = [], []
    for i, ex in enumerate(examples):
        options = formats.candidates(task.name, ex)
        if options is None:
            raise ValueError(f"task {task.name!r} has no candidate targets for rank classification; decode it")
        if not options:
            raise ValueError(f"task {task.name!r} example {i} has no candidate targets")
        pairs += [(ex, option) for option in options]
        owner += [i] * len(options)
    scores = np.asarray(score_fn([ex for ex, _ in pairs], [t for _, t in pairs]), np.float64)
    if scores.shape != (len(pairs),):
        raise ValueError(f"score_fn returned shape {scores.shape} for {len(pairs)} (example, target) pairs")
    best: dict[int, int] = {}
    for k, i in enumerate(owner):
        if i not in best or scores[k] > scores[best[i]]:
            best[i] = k
    return [pairs[best[i]][1] for i in range(len(examples))]


def evaluate_task(task: registry.Task, split: str, *, predictions: Sequence[str] | None = None,
                  predict_fn: PredictFn | None = None, score_fn: ScoreFn | None = None,
                  examples: Sequence[dict] | None = None, data_dir=None) -> TaskResult:
    """Scores one split from given predictions, `predict_fn(examples)` or rank classification.

    `examples` defaults to `text_examples(task, split, data_dir)`; tokenized
    examples from `task.get_dataset` work too (they carry `*_pretokenized`).
    """
    if sum(x is not None for x in (predictions, predict_fn, score_fn)) != 1:
        raise ValueError("pass exactly one of predictions, predict_fn, score_fn")
    examples = list(examples) if examples is not None else text_examples(task, split, data_dir)
    if predict_fn is not None:
        predictions = list(predict_fn(examples))
    elif score_fn is not None:
        predictions = rank_classify(task, examples, score_fn)
    predictions = list(predictions)
    return TaskResult(task.name, split, score_predictions(task, examples, predictions),
                      examples, predictions)


def benchmark_averages(results: Sequence[TaskResult]) -> list[dict]:
    """{"task": "glue"|"super_glue", "split": "validation", "metrics": {"average", groups...}}
    for each benchmark whose every averaged metric is among `results`."""
    by_split = {(r.task, r.split): r.metrics for r in results}
    out = []
    for benchmark in metrics_lib.AVERAGE_GROUPS:
        average = metrics_lib.benchmark_average(by_split, benchmark)
        if average is not None:
            out.append({"task": benchmark, "split": "validation", "metrics": average})
    return out


# ------------------------------------------------------------------ predictions files
def read_predictions(path: str | pathlib.Path) -> dict[str, list[dict]]:
    """Task name -> its lines `{"prediction", "split" (optional), "line"}`, in file order."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    out: dict[str, list[dict]] = collections.defaultdict(list)
    for n, record in fileio.read_jsonl(path.resolve(), line_numbers=True):
        if not isinstance(record.get("task"), str) or not isinstance(record.get("prediction"), str):
            raise ValueError(f'{path}:{n}: expected {{"task": str, "prediction": str}}, got '
                             f"{json.dumps(record)[:200]}")
        out[record["task"]].append({"prediction": record["prediction"], "split": record.get("split"),
                                    "line": n})
    if not out:
        raise ValueError(f"{path}: no predictions")
    return dict(out)


def _split_lines(path, task: registry.Task, splits: list[str], lines: list[dict],
                 counts: list[int]) -> list[list[str]]:
    """A task's prediction lines divided among its splits (by their "split" keys, else in order)."""
    if any(line["split"] is not None for line in lines):
        unknown = sorted({line["split"] for line in lines} - set(splits))
        if unknown:
            raise ValueError(f"{path}: task {task.name!r} predictions name split(s) {unknown}; "
                             f"evaluating {splits}")
        parts = [[line["prediction"] for line in lines if line["split"] == s] for s in splits]
    else:
        flat = [line["prediction"] for line in lines]
        bounds = np.cumsum([0] + counts)
        parts = [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])] if len(flat) == sum(counts) else [flat]
    got = [len(p) for p in parts]
    if got != counts:
        where = ", ".join(f"{s}: {c}" for s, c in zip(splits, counts))
        raise ValueError(f"{path}: {sum(got)} predictions for task {task.name!r} but it has {sum(counts)} "
                         f"examples ({where}), one prediction per example in t2t.inspect order")
    return parts


def evaluate_predictions_file(path, tasks: Sequence[str] | None = None, split: str = "validation",
                              data_dir=None) -> tuple[list[TaskResult], list[dict]]:
    """Scores a `{"task", "prediction"}` JSONL file; returns (per-split results, benchmark averages).

    `tasks` (task or mixture names) defaults to the tasks the file names.
    """
    lines = read_predictions(path)
    chosen = resolve_tasks(list(tasks) if tasks else list(lines))
    missing = [t.name for t in chosen if t.name not in lines]
    if missing:
        raise ValueError(f"{path}: no predictions for task(s) {missing}; the file has {sorted(lines)}")
    results = []
    for task in chosen:
        splits = eval_splits(task, split)
        examples = [text_examples(task, s, data_dir) for s in splits]
        parts = _split_lines(path, task, splits, lines[task.name], [len(e) for e in examples])
        for s, ex, preds in zip(splits, examples, parts):
            results.append(evaluate_task(task, s, predictions=preds, examples=ex))
    return results, benchmark_averages(results)
