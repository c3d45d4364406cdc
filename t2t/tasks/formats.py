"""GLUE/SuperGLUE readers that yield TFDS-shaped examples, and T5's text formats.

Readers: the original download layouts (GLUE TSV read by header names, SuperGLUE
JSONL) are converted to exactly the examples TFDS `glue/*` and `super_glue/*`
yield (feature names, label ints, `idx`), so one set of text preprocessors
serves local files, TFDS and in-memory test data alike.

Formats: T5's `glue`, `stsb`, `wsc_simple` and `record` preprocessors
(t5/data/preprocessors.py), string for string.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from t2t.data import sources

Example = dict


# ======================================================================== readers
class FirstMatch(tuple):
    """Alternative file patterns for one split: the first that matches is read."""


class _Converted(sources.FileSource):
    """Mixin over a concrete FileSource: each file record -> TFDS-shaped examples.

    `convert(record, index)` returns the examples of one record (none to drop
    it); `index` counts records per file, as TFDS's GLUE `idx` does. Errors
    name the file and line. Subclasses list it before their reader
    (`class X(_Converted, sources.TsvSource)`), which supplies `_records`, and
    set `_convert` in `__init__`.
    """

    _convert: Callable[[dict, int], list]
    _first_line: int = 1

    def files(self, split, data_dir=None):
        patterns = self._split_files.get(split)
        if not isinstance(patterns, FirstMatch):
            return super().files(split, data_dir)
        tried = []
        for pattern in patterns:
            try:
                return sources.expand_patterns(pattern, data_dir)
            except FileNotFoundError as e:
                tried.append(str(e))
        raise FileNotFoundError("; ".join(tried))

    def get(self, split, data_dir=None):
        out = []
        for path in self.files(split, data_dir):
            records = self._records([path])
            for i in range(len(records)):
                record = records[i]
                try:
                    out.extend(self._convert(record, i))
                except KeyError as e:
                    keys = sorted(record) if isinstance(record, dict) else []
                    raise ValueError(f"{path}:{i + self._first_line}: missing key {e}; "
                                     f"the record has {keys}") from None
                except (ValueError, TypeError, IndexError, AttributeError) as e:
                    raise ValueError(f"{path}:{i + self._first_line}: {e}") from None
        return out


class GlueTsvSource(_Converted, sources.TsvSource):
    """GLUE TSV files (header names, or `columns` for header-less CoLA) -> TFDS glue examples."""

    def __init__(self, split_files, convert: Callable[[dict, int], list], columns=None):
        super().__init__(split_files, columns=columns)
        self._convert = convert
        self._first_line = 1 if columns else 2


class SuperGlueJsonlSource(_Converted, sources.JsonlSource):
    """SuperGLUE JSONL files -> TFDS super_glue examples (MultiRC/ReCoRD exploded)."""

    def __init__(self, split_files, convert: Callable[[dict, int], list]):
        super().__init__(split_files)
        self._convert = convert


def _class_index(value, label_classes: Sequence[str], what: str) -> int:
    """TFDS ClassLabel encoding: a class name, or an int (or digit string) in range."""
    if isinstance(value, str) and value in label_classes:
        return list(label_classes).index(value)
    try:
        index = int(value)
    except (TypeError, ValueError):
        index = None
    if index is None or isinstance(value, float) or not 0 <= index < len(label_classes):
        raise ValueError(f"{what} {value!r} is not one of {list(label_classes)} or an index into them")
    return index


def _column(row: Mapping[str, str], names: str | Sequence[str]) -> str:
    names = (names,) if isinstance(names, str) else tuple(names)
    for name in names:
        if name in row:
            return row[name]
    raise ValueError(f"no column {' or '.join(map(repr, names))}; the header has {list(row)}")


def glue_row_converter(text_features: Mapping[str, str | Sequence[str]],
                       label_column: str | Sequence[str],
                       label_classes: Sequence[str] | None) -> Callable[[dict, int], list]:
    """TFDS's GLUE `_generate_examples` for one TSV row: `{feature: row[column]}`, label, idx.

    `label_classes=None` means a float label (STS-B). A file without the label
    column (a test file) gets label -1; a row with an empty label is dropped,
    as TFDS drops it.
    """
    label_columns = (label_column,) if isinstance(label_column, str) else tuple(label_column)

    def convert(row: dict, index: int) -> list:
        row = {k.lstrip("\ufeff"): v for k, v in row.items()}  # MRPC files start with a BOM
        example = {feature: _column(row, cols) for feature, cols in text_features.items()}
        example["idx"] = index
        present = [c for c in label_columns if c in row]
        if not present:
            example["label"] = -1.0 if label_classes is None else -1
        elif row[present[0]] == "":
            return []
        elif label_classes is None:
            try:
                example["label"] = float(np.float32(row[present[0]]))
            except ValueError:
                raise ValueError(f"column {present[0]!r}: {row[present[0]]!r} is not a number") from None
        else:
            example["label"] = _class_index(row[present[0]], label_classes, f"column {present[0]!r}:")
        return [example]
    return convert


# ----------------------------------------------------------------- SuperGLUE JSONL
def _cast_label(label) -> str:
    """TFDS super_glue `_cast_label`: bools -> 'True'/'False', ints -> '0'/'1', strings kept."""
    if isinstance(label, str):
        return label
    if isinstance(label, bool):
        return "True" if label else "False"
    if isinstance(label, int) and label in (0, 1):
        return str(label)
    raise ValueError(f"label {label!r}: expected a string, a bool or 0/1")


def _fix_wsc_spans(ex: dict) -> dict:
    """TFDS `wsc.fixed`: repairs span texts that are not substrings of the text."""
    for key in ("span1", "span2"):
        text, index = ex[f"{key}_text"], ex[f"{key}_index"]
        if text in ex["text"] or text in ("Kamenev and Zinoviev", "Kamenev, Zinoviev, and Stalin"):
            continue
        if "theyscold" in text:  # TFDS sets the index only (its text replace is a no-op)
            ex["span2_index"] = 10
        first_word = ex["text"].split()[index]
        text = (text[0].lower() if first_word[0].islower() else text[0].upper()) + text[1:]
        text = text.rstrip(".").replace("\n", " ")
        if text not in ex["text"]:
            raise ValueError(f"{key}_text {text!r} is not in the text {ex['text']!r}")
        ex[f"{key}_text"] = text
    return ex


def superglue_record_converter(config: str, features: Sequence[str],
                               label_classes: Sequence[str] = ("False", "True")):
    """TFDS's super_glue `_generate_examples` for one JSON line of `config`."""
    if config == "multirc":
        return _multirc_examples
    if config == "record":
        return _record_examples

    def convert(row: dict, index: int) -> list:
        if config.startswith("wsc"):
            row = {**row, **row["target"]}
        example = {f: row[f] for f in features}
        if config == "wsc.fixed":
            example = _fix_wsc_spans(example)
        example["idx"] = int(row["idx"])
        if "label" not in row:
            example["label"] = -1
        elif config == "copa":
            example["label"] = _class_index("choice2" if row["label"] else "choice1", label_classes, "label")
        else:
            example["label"] = _class_index(_cast_label(row["label"]), label_classes, "label")
        return [example]
    return convert


def _multirc_examples(row: dict, index: int) -> list:
    paragraph = row["passage"]
    out = []
    for question in paragraph["questions"]:
        for answer in question["answers"]:
            label = answer.get("label")
            out.append({
                "paragraph": paragraph["text"], "question": question["question"], "answer": answer["text"],
                "label": -1 if label is None else ("False", "True").index(_cast_label(bool(label))),
                "idx": {"paragraph": int(row["idx"]), "question": int(question["idx"]),
                        "answer": int(answer["idx"])},
            })
    return out


def _record_examples(row: dict, index: int) -> list:
    passage = row["passage"]
    text = passage["text"]
    entities = sorted({text[e["start"]: e["end"] + 1] for e in passage["entities"]})
    return [{"passage": text, "query": qa["query"], "entities": entities,
             "answers": sorted({a["text"] for a in qa.get("answers", [])}),
             "idx": {"passage": int(row["idx"]), "query": int(qa["idx"])}}
            for qa in row["qas"]]


# ======================================================================== T5 formats
def _label_word(label, label_names: Sequence[str]) -> str:
    if label == -1:
        return "<unk>"
    if not 0 <= label < len(label_names):
        raise ValueError(f"label {label!r} outside [0, {len(label_names)}) for {list(label_names)}")
    return label_names[label]


def glue_format(benchmark: str, label_names: Sequence[str],
                feature_names: Sequence[str] | None = None) -> Callable[[dict], dict]:
    """T5's `preprocessors.glue`: "<benchmark> key1: v1 key2: v2" -> label word.

    Keys are `feature_names` in order, else every feature but label/idx sorted
    by name. MultiRC strips `<br>`/`<b>` markup and keeps `idx/{paragraph,
    question,answer}` for grouping; other tasks keep `idx`.
    """
    def fn(x: dict) -> dict:
        keys = feature_names or sorted(set(x) - {"label", "idx"})
        parts = [benchmark]
        for key in keys:
            parts += [f"{key}:", x[key]]
        joined = " ".join(parts)
        ex = {}
        if benchmark == "multirc":
            joined = re.sub("<(/)?b>", "", re.sub("<br>", " ", joined))
            for key in ("paragraph", "question", "answer"):
                ex[f"idx/{key}"] = x["idx"][key]
        else:
            ex["idx"] = x["idx"]
        ex["inputs"] = joined
        ex["targets"] = _label_word(x["label"], label_names)
        return ex
    fn.__name__ = f"glue_format_{benchmark}"
    return fn


def stsb_format(x: dict) -> dict:
    """T5's `preprocessors.stsb`: target = label rounded to the nearest 0.2, one decimal.

    Computed in float32 with round-half-to-even, as `tf.round(label * 5) / 5`.
    """
    five = np.float32(5)
    rounded = np.round(np.float32(x["label"]) * five) / five
    return {"inputs": f"stsb sentence1: {x['sentence1']} sentence2: {x['sentence2']}",
            "targets": "%.1f" % float(rounded), "idx": x["idx"]}


# Texts where WSC's span2_index does not point at the pronoun (T5 special-cases them).
_WSC_SPECIAL_CASES = {
    'The boy continued to whip the pony , and eventually the pony threw him over. John laughed '
    'out quite loud. "Good for him," he said. ':
    'The boy continued to whip the pony , and eventually the pony threw him over. John laughed '
    'out quite loud. "Good for X ," he said.',
    'When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic '
    'pebble in an iron safe . Some day they might want to use it , but really for now, what more '
    'could they wish for?':
    'When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic '
    'pebble in an iron safe . Some day they might want to use X , but really for now, what more '
    'could they wish for?',
}


def _wsc_blanked(x: dict) -> str:
    """T5's `_wsc_inputs`: the text with the pronoun at span2_index replaced by X."""
    words = x["text"].split(" ")
    i = x["span2_index"]
    if not 0 < i < len(words):
        raise ValueError(f"WSC idx {x['idx']}: span2_index {i} outside (0, {len(words)})")
    if x["text"] in _WSC_SPECIAL_CASES:
        return _WSC_SPECIAL_CASES[x["text"]]
    if words[i] != x["span2_text"]:
        raise ValueError(f"WSC idx {x['idx']}: word {i} is {words[i]!r}, not span2_text {x['span2_text']!r}")
    return " ".join([" ".join(words[:i]), "X", " ".join(words[i + 1:])])


def wsc_simple_format(x: dict) -> dict:
    """T5's `wsc_simple`: "wsc: ... *pronoun* ..." -> the candidate referent (span1_text)."""
    marked = re.sub(" X ", lambda _: f" *{x['span2_text']}* ", _wsc_blanked(x))
    return {"inputs": f"wsc: {marked}", "targets": x["span1_text"],
            "label": x.get("label", 0), "idx": x["idx"]}


def wsc_simple(ds, ctx):
    """Preprocessor: WSC simple format; the train split keeps only correct referents (T5)."""
    if ctx.split == "train":
        ds = ds.filter(lambda x: bool(x.get("label", False)))
    return ds.map(wsc_simple_format)


def record_passage(passage: str) -> str:
    """T5's ReCoRD `@highlight` handling: highlights become sentences."""
    passage = re.sub(r"(\.|\?|\!|\"|\')\n@highlight\n", r"\1 ", passage)
    return re.sub(r"\n@highlight\n", ". ", passage)


def record_examples(x: dict) -> Iterable[dict]:
    """T5's `preprocessors.record`: one example per answer (`<unk>` when none).

    Every copy carries all `answers` (for the metric) and, beyond T5, the
    `entities` (the candidates for rank classification).
    """
    inputs = " ".join(["record query:", x["query"], "entities:", ", ".join(x["entities"]),
                       "passage:", record_passage(x["passage"])])
    answers = list(x["answers"])
    for target in answers or ["<unk>"]:
        yield {"idx/passage": x["idx"]["passage"], "idx/query": x["idx"]["query"],
               "inputs": inputs, "targets": target, "answers": answers,
               "entities": list(x["entities"])}


def axb_as_rte(x: dict) -> dict:
    """T5's rekey casting SuperGLUE AX-b (sentence1/2) as RTE (premise/hypothesis)."""
    return {"premise": x["sentence1"], "hypothesis": x["sentence2"], "label": x["label"], "idx": x["idx"]}


# ======================================================================== rank candidates
_CANDIDATES: dict[str, Callable[[Mapping], Sequence[str]]] = {}


def set_candidates(task_name: str, candidates: Sequence[str] | Callable[[Mapping], Sequence[str]]) -> None:
    """Registers the target strings rank classification scores for `task_name`.

    A fixed list (label words) or `fn(preprocessed_example) -> strings`.
    """
    fixed = tuple(candidates) if not callable(candidates) else None
    _CANDIDATES[task_name] = (lambda ex: fixed) if fixed is not None else candidates


def candidates(task_name: str, example: Mapping) -> list[str] | None:
    """The candidate target strings of one example, or None (generation-only task)."""
    fn = _CANDIDATES.get(task_name)
    return None if fn is None else list(fn(example))
