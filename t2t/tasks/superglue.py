"""SuperGLUE tasks in T5's text-to-text format (`super_glue_<name>`) and the `super_glue` mixture.

Each task reads `<data_dir>/superglue/<Task>/{train,val}.jsonl` (the SuperGLUE
download layout; AX-b/AX-g: `<Task>/<Task>.jsonl` as split `test`) or, when
those files are absent, TFDS `super_glue/<name>`; both give TFDS-shaped
examples (MultiRC one per answer, ReCoRD one per query). T5's preprocessors
then make the text: `glue` for most, `record` (one example per answer) for
ReCoRD and `wsc_simple` for WSC (train keeps only correct referents).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

from t2t.data import registry, sources
from t2t.tasks import formats
from t2t.tasks.glue import OUTPUT_FEATURES
from t2t.tasks import metrics, postprocess

BOOL = ("False", "True")
_TRAIN_VAL = {"train": "train.jsonl", "validation": "val.jsonl"}


@dataclasses.dataclass(frozen=True)
class SuperGlueSpec:
    """One SuperGLUE task as TFDS's SuperGlueConfig describes it, plus T5's choices."""

    name: str                       # T5/t2t task suffix, e.g. "wsc"
    folder: str                     # folder under <data_dir>/superglue/
    features: Sequence[str]         # TFDS features other than label/idx
    label_classes: Sequence[str] = BOOL
    metric_fns: Sequence = ()
    files: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(_TRAIN_VAL))
    tfds_config: str | None = None  # when not `name` (WSC reads "wsc.fixed")
    benchmark: str | None = None    # T5's input prefix when not `name`
    feature_names: Sequence[str] | None = None  # T5's fixed key order, else sorted

    @property
    def task_name(self) -> str:
        return f"super_glue_{self.name}"

    @property
    def config(self) -> str:
        return self.tfds_config or self.name


SPECS = [
    SuperGlueSpec("boolq", "BoolQ", ("question", "passage"), metric_fns=(metrics.accuracy,)),
    SuperGlueSpec("cb", "CB", ("premise", "hypothesis"), ("entailment", "contradiction", "neutral"),
                  (metrics.mean_multiclass_f1(3), metrics.accuracy)),
    SuperGlueSpec("copa", "COPA", ("premise", "choice1", "choice2", "question"), ("choice1", "choice2"),
                  (metrics.accuracy,)),
    SuperGlueSpec("multirc", "MultiRC", ("paragraph", "question", "answer"),
                  metric_fns=(metrics.multirc_f1_over_all_answers,
                              metrics.mean_group_metric(metrics.all_match)),
                  feature_names=("question", "answer", "paragraph")),
    SuperGlueSpec("record", "ReCoRD", ("passage", "query", "entities", "answers"), (),
                  metric_fns=(metrics.deduplicate_metric(metrics.squad),)),
    SuperGlueSpec("rte", "RTE", ("premise", "hypothesis"), ("entailment", "not_entailment"),
                  (metrics.accuracy,)),
    SuperGlueSpec("wic", "WiC", ("word", "sentence1", "sentence2", "start1", "start2", "end1", "end2"),
                  metric_fns=(metrics.accuracy,), feature_names=("sentence1", "sentence2", "word")),
    SuperGlueSpec("wsc", "WSC", ("text", "span1_index", "span2_index", "span1_text", "span2_text"),
                  metric_fns=(metrics.accuracy,), tfds_config="wsc.fixed"),
    # The diagnostics, cast as RTE; T5 defines no metric for them.
    SuperGlueSpec("axb", "AX-b", ("sentence1", "sentence2"), ("entailment", "not_entailment"),
                  files={"test": "AX-b.jsonl"}, benchmark="rte"),
    SuperGlueSpec("axg", "AX-g", ("premise", "hypothesis"), ("entailment", "not_entailment"),
                  files={"test": "AX-g.jsonl"}, benchmark="rte"),
]


def _source(spec: SuperGlueSpec) -> sources.DataSource:
    files = formats.SuperGlueJsonlSource(
        {split: f"superglue/{spec.folder}/{name}" for split, name in spec.files.items()},
        formats.superglue_record_converter(spec.config, spec.features, spec.label_classes))
    return sources.FilesOrTfds(files, sources.TfdsSource(f"super_glue/{spec.config}", tuple(spec.files)))


def _text_preprocessors(spec: SuperGlueSpec) -> tuple[list, Callable, object]:
    """(text preprocessors, postprocess_fn, rank-classification candidates) for one task."""
    if spec.name == "record":
        return ([registry.flat_map_fn(formats.record_examples)], postprocess.record,
                lambda ex: ex["entities"])
    if spec.name == "wsc":
        return [formats.wsc_simple], postprocess.wsc_simple, None
    text = [registry.map_fn(formats.glue_format(spec.benchmark or spec.name, spec.label_classes,
                                                spec.feature_names))]
    if spec.name == "axb":
        text.insert(0, registry.map_fn(formats.axb_as_rte))
    if spec.name == "multirc":
        return text, postprocess.multirc, BOOL
    return text, postprocess.label_to_class_id(spec.label_classes), spec.label_classes


def _register(spec: SuperGlueSpec) -> None:
    text, postprocess_fn, candidates = _text_preprocessors(spec)
    registry.add_task(
        spec.task_name, _source(spec),
        preprocessors=[*text, registry.tokenize, registry.append_eos_after_trim],
        output_features=OUTPUT_FEATURES, postprocess_fn=postprocess_fn,
        metric_fns=list(spec.metric_fns),
        description=f"SuperGLUE {spec.folder} in T5's format (splits {', '.join(spec.files)})")
    if candidates is not None:
        formats.set_candidates(spec.task_name, candidates)


for _spec in SPECS:
    _register(_spec)

# T5's examples-proportional SuperGLUE mixture (t5/data/glue_utils.py), less
# DPR (not in t2t): WSC counts its correct-referent training examples, ReCoRD
# its per-answer examples; the diagnostics have no training data.
SUPER_GLUE_MIXTURE_RATES = {
    "super_glue_wsc": 259., "super_glue_boolq": 9_427., "super_glue_cb": 250.,
    "super_glue_copa": 400., "super_glue_multirc": 27_243., "super_glue_record": 138_854.,
    "super_glue_rte": 2_490., "super_glue_wic": 5_428.}
registry.add_mixture("super_glue", list(SUPER_GLUE_MIXTURE_RATES.items()))
