"""T5's metrics (t5/evaluation/metrics.py, qa_utils.py), x100, and the benchmark averages.

Every metric is `fn(targets, predictions) -> {name: value}` on postprocessed
values. scikit-learn and scipy compute what they define; they are imported on
first use so registering tasks stays cheap.
"""
from __future__ import annotations

import collections
import re
import string
from typing import Callable, Mapping, Sequence

import numpy as np

Metric = Callable[[Sequence, Sequence], dict]


def _check_lengths(targets, predictions) -> None:
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions")
    if not len(targets):
        raise ValueError("no examples to score")


def accuracy(targets, predictions) -> dict:
    from sklearn import metrics as skm
    _check_lengths(targets, predictions)
    return {"accuracy": 100 * skm.accuracy_score(targets, predictions)}


def matthews_corrcoef(targets, predictions) -> dict:
    """CoLA's metric."""
    from sklearn import metrics as skm
    _check_lengths(targets, predictions)
    return {"matthews_corrcoef": 100 * skm.matthews_corrcoef(targets, predictions)}


def f1_score_with_invalid(targets, predictions) -> dict:
    """Binary F1 where a prediction other than 0 or 1 counts as wrong (MRPC, QQP)."""
    from sklearn import metrics as skm
    _check_lengths(targets, predictions)
    targets, predictions = np.asarray(targets), np.array(predictions)
    invalid = (predictions != 0) & (predictions != 1)
    predictions[invalid] = 1 - targets[invalid]
    return {"f1": 100 * skm.f1_score(targets, predictions)}


def pearson_corrcoef(targets, predictions) -> dict:
    from scipy import stats
    _check_lengths(targets, predictions)
    return {"pearson_corrcoef": 100 * float(stats.pearsonr(targets, predictions)[0])}


def spearman_corrcoef(targets, predictions) -> dict:
    from scipy import stats
    _check_lengths(targets, predictions)
    return {"spearman_corrcoef": 100 * float(stats.spearmanr(targets, predictions)[0])}


def mean_multiclass_f1(num_classes: int) -> Metric:
    """Unweighted mean of the per-class F1 over classes 0..num_classes-1 (CB)."""
    def fn(targets, predictions) -> dict:
        from sklearn import metrics as skm
        _check_lengths(targets, predictions)
        value = skm.fbeta_score(targets, predictions, beta=1, labels=range(num_classes), average="macro")
        return {f"mean_{num_classes}class_f1": 100 * value}
    fn.__name__ = f"mean_{num_classes}class_f1"
    return fn


def all_match(targets, predictions) -> dict:
    """100 if every prediction equals its target, else 0."""
    return {"exact_match": 100 * float(np.array_equal(targets, predictions))}


def mean_group_metric(metric_fn: Metric, group_key: str = "group", value_key: str = "value") -> Metric:
    """`metric_fn` on each group of examples (by the target's `group_key`), averaged over groups."""
    def fn(targets, predictions) -> dict:
        _check_lengths(targets, predictions)
        groups = collections.defaultdict(lambda: ([], []))
        for target, prediction in zip(targets, predictions):
            group = groups[target[group_key]]
            group[0].append(target[value_key])
            group[1].append(prediction[value_key])
        scores = collections.defaultdict(list)
        for group_targets, group_predictions in groups.values():
            for name, value in metric_fn(group_targets, group_predictions).items():
                scores[name].append(value)
        return {name: float(np.mean(values)) for name, values in scores.items()}
    fn.__name__ = f"mean_group_{getattr(metric_fn, '__name__', 'metric')}"
    return fn


def deduplicate_metric(metric_fn: Metric, group_key: str = "group", value_key: str = "value") -> Metric:
    """`metric_fn` on the first example of each group only (ReCoRD's per-answer copies)."""
    def fn(targets, predictions) -> dict:
        _check_lengths(targets, predictions)
        seen, kept_targets, kept_predictions = set(), [], []
        for target, prediction in zip(targets, predictions):
            if target[group_key] in seen:
                continue
            seen.add(target[group_key])
            kept_targets.append(target[value_key])
            kept_predictions.append(prediction[value_key])
        return metric_fn(kept_targets, kept_predictions)
    fn.__name__ = f"deduplicated_{getattr(metric_fn, '__name__', 'metric')}"
    return fn


def multirc_f1_over_all_answers(targets, predictions) -> dict:
    """F1 (invalid predictions wrong) over every answer of every question."""
    return f1_score_with_invalid([t["value"] for t in targets], [p["value"] for p in predictions])


# ------------------------------------------------------------------ SQuAD-style QA
_PUNCTUATION = frozenset(string.punctuation)


def normalize_squad(text: str) -> str:
    """The official SQuAD normalization: lower, drop punctuation and articles, squeeze spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _token_f1(target: str, prediction: str) -> float:
    prediction_tokens, target_tokens = prediction.split(), target.split()
    common = collections.Counter(prediction_tokens) & collections.Counter(target_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(prediction_tokens), same / len(target_tokens)
    return 2 * precision * recall / (precision + recall)


def squad(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict:
    """Exact match and token F1, each maximized over a question's answers ("em", "f1")."""
    _check_lengths(targets, predictions)
    targets = [[normalize_squad(t) for t in answers] for answers in targets]
    predictions = [normalize_squad(p) for p in predictions]
    em = np.mean([max(float(t == p) for t in answers) for answers, p in zip(targets, predictions)])
    f1 = np.mean([max(_token_f1(t, p) for t in answers) for answers, p in zip(targets, predictions)])
    return {"em": 100 * float(em), "f1": 100 * float(f1)}


# ------------------------------------------------------------------ benchmark averages
# T5's averages (t5/evaluation/eval_utils.py): metrics of one task (one group) are
# averaged first, then groups are averaged. Entries: (task, split, metric).
GLUE_AVERAGE_GROUPS = {
    "CoLA": [("glue_cola", "validation", "matthews_corrcoef")],
    "SST-2": [("glue_sst2", "validation", "accuracy")],
    "MRPC": [("glue_mrpc", "validation", "f1"), ("glue_mrpc", "validation", "accuracy")],
    "STSB": [("glue_stsb", "validation", "pearson_corrcoef"),
             ("glue_stsb", "validation", "spearman_corrcoef")],
    "QQP": [("glue_qqp", "validation", "f1"), ("glue_qqp", "validation", "accuracy")],
    "MNLI": [("glue_mnli", "validation_matched", "accuracy"),
             ("glue_mnli", "validation_mismatched", "accuracy")],
    "QNLI": [("glue_qnli", "validation", "accuracy")],
    "GLUE RTE": [("glue_rte", "validation", "accuracy")],
}
SUPER_GLUE_AVERAGE_GROUPS = {
    "BoolQ": [("super_glue_boolq", "validation", "accuracy")],
    "CB": [("super_glue_cb", "validation", "mean_3class_f1"), ("super_glue_cb", "validation", "accuracy")],
    "COPA": [("super_glue_copa", "validation", "accuracy")],
    "MultiRC": [("super_glue_multirc", "validation", "f1"),
                ("super_glue_multirc", "validation", "exact_match")],
    "ReCoRD": [("super_glue_record", "validation", "f1"), ("super_glue_record", "validation", "em")],
    "SuperGLUE RTE": [("super_glue_rte", "validation", "accuracy")],
    "WiC": [("super_glue_wic", "validation", "accuracy")],
    "WSC": [("super_glue_wsc", "validation", "accuracy")],
}
AVERAGE_GROUPS = {"glue": GLUE_AVERAGE_GROUPS, "super_glue": SUPER_GLUE_AVERAGE_GROUPS}


def group_averages(results: Mapping[tuple[str, str], Mapping[str, float]],
                   benchmark: str) -> dict[str, float]:
    """{group: mean of its metrics} for the groups of "glue" or "super_glue" (T5's columns) whose
    every metric is in `results`, which maps (task name, split) to that split's metrics."""
    out = {}
    for group, entries in AVERAGE_GROUPS[benchmark].items():
        values = [results.get((task, split), {}).get(metric) for task, split, metric in entries]
        if all(v is not None for v in values):
            out[group] = float(np.mean(values))
    return out


def benchmark_average(results: Mapping[tuple[str, str], Mapping[str, float]],
                      benchmark: str) -> dict | None:
    """{"average": ..., <group>: ...} as T5 computes it (the mean of the group means), or None
    when a group is missing a metric."""
    groups = group_averages(results, benchmark)
    if len(groups) < len(AVERAGE_GROUPS[benchmark]):
        return None
    return {"average": sum(groups.values()) / len(groups), **groups}
