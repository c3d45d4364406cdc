"""T5's postprocessors (t5/data/postprocessors.py): decoded text -> metric values.

Every postprocessor is `fn(text, example=None, is_target=False)`. For targets,
`text` is the example's `targets_pretokenized` and `example` the whole
preprocessed example (some read grouping keys or labels from it).
"""
from __future__ import annotations

import functools
from typing import Mapping, Sequence


def string_to_float(text: str, default: float = -1.0, **unused_kwargs) -> float:
    """float(text), or `default` when it does not parse (STS-B)."""
    try:
        return float(text)
    except ValueError:
        return default


def string_label_to_class_id(text: str, label_classes: Sequence[str], default: int = -1,
                             **unused_kwargs) -> int:
    """Index of `text` in `label_classes`, or `default` (-1: counts as wrong)."""
    return list(label_classes).index(text) if text in label_classes else default


def label_to_class_id(label_classes: Sequence[str]):
    """The classification postprocessor for a task whose targets are `label_classes`."""
    return functools.partial(string_label_to_class_id, label_classes=tuple(label_classes))


def multirc(text: str, example: Mapping | None = None, is_target: bool = False) -> dict:
    """{"value": class id of False/True}, plus the question "group" for targets."""
    result = {"value": string_label_to_class_id(text, ("False", "True"))}
    if is_target:
        result["group"] = example["idx/question"]
    return result


def record(text: str, example: Mapping | None = None, is_target: bool = False) -> dict:
    """{"value": the answer}; targets carry all answers and the (passage, query) group."""
    if is_target:
        return {"value": list(example["answers"]),
                "group": (example["idx/passage"], example["idx/query"])}
    return {"value": text}


_DETERMINERS = frozenset({
    "a", "an", "few", "her", "his", "each", "every", "many", "much", "my", "our", "some",
    "that", "the", "their", "these", "this", "those", "which", "whose", "your"})


def _wsc_clean(text: str) -> str:
    """Lower-cased, without determiners."""
    return " ".join(w for w in text.strip().lower().split(" ") if w not in _DETERMINERS)


def wsc_simple(text: str, example: Mapping | None = None, is_target: bool = False) -> int:
    """1 if the prediction names the example's candidate referent, else 0; targets: the label.

    The referent is the example's target text; predictions match it when the
    word sets (determiners dropped, lower case) are nested either way and both
    or neither contain an apostrophe.
    """
    if is_target:
        return int(example["label"])
    referent = _wsc_clean(example["targets_pretokenized"])
    prediction = _wsc_clean(text)
    if ("'" in prediction) != ("'" in referent):
        return 0
    pred_words, ref_words = set(prediction.split(" ")), set(referent.split(" "))
    return int(pred_words.issubset(ref_words) or ref_words.issubset(pred_words))
