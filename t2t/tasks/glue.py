"""GLUE tasks in T5's text-to-text format (`glue_<name>`) and the `glue` mixture.

Each task reads `<data_dir>/glue/<TASK>/{train,dev,...}.tsv` (the GLUE download
layout, columns found by header name) or, when those files are absent, TFDS
`glue/<name>`; both give TFDS-shaped examples, which T5's `glue` preprocessor
turns into "<benchmark> key: value ..." inputs and label-word targets.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from t2t.data import registry, sources
from t2t.tasks import formats
from t2t.data.vocab import T5_DEFAULT_SPM_PATH, SentencePieceVocabulary
from t2t.tasks import metrics, postprocess

VOCAB = SentencePieceVocabulary(T5_DEFAULT_SPM_PATH)
OUTPUT_FEATURES = {"inputs": registry.Feature(VOCAB, add_eos=True, required=False),
                   "targets": registry.Feature(VOCAB, add_eos=True)}
NLI3 = ("entailment", "neutral", "contradiction")
STSB_CANDIDATES = tuple("%.1f" % (i / 5) for i in range(26))  # "0.0", "0.2", ..., "5.0"


@dataclasses.dataclass(frozen=True)
class GlueSpec:
    """One GLUE task as TFDS's GlueConfig describes it, plus T5's metrics."""

    name: str                                   # TFDS config name, e.g. "rte"
    folder: str                                 # folder under <data_dir>/glue/
    files: Mapping[str, str | formats.FirstMatch]   # split -> file name(s) in the folder
    text_features: Mapping[str, str | Sequence[str]]  # TFDS feature -> TSV column(s)
    label_column: str
    label_classes: Sequence[str] | None         # None: float label (STS-B)
    metric_fns: Sequence = ()
    benchmark: str | None = None                # T5's input prefix when not `name`
    columns: Sequence[str] | None = None        # for header-less files (CoLA)

    @property
    def task_name(self) -> str:
        return f"glue_{self.name}"


_TRAIN_DEV = {"train": "train.tsv", "validation": "dev.tsv"}
_PAIR_F1_ACC = (metrics.f1_score_with_invalid, metrics.accuracy)

SPECS = [
    GlueSpec("cola", "CoLA", _TRAIN_DEV, {"sentence": "sentence"}, "is_acceptable",
             ("unacceptable", "acceptable"), (metrics.matthews_corrcoef,),
             columns=("source", "is_acceptable", "original_judgment", "sentence")),
    GlueSpec("sst2", "SST-2", _TRAIN_DEV, {"sentence": "sentence"}, "label",
             ("negative", "positive"), (metrics.accuracy,)),
    GlueSpec("mrpc", "MRPC", _TRAIN_DEV, {"sentence1": "#1 String", "sentence2": "#2 String"},
             "Quality", ("not_equivalent", "equivalent"), _PAIR_F1_ACC),
    GlueSpec("qqp", "QQP", _TRAIN_DEV, {"question1": "question1", "question2": "question2"},
             "is_duplicate", ("not_duplicate", "duplicate"), _PAIR_F1_ACC),
    GlueSpec("stsb", "STS-B", _TRAIN_DEV, {"sentence1": "sentence1", "sentence2": "sentence2"},
             "score", None, (metrics.pearson_corrcoef, metrics.spearman_corrcoef)),
    GlueSpec("mnli", "MNLI", {"train": "train.tsv", "validation_matched": "dev_matched.tsv",
                              "validation_mismatched": "dev_mismatched.tsv"},
             {"premise": "sentence1", "hypothesis": "sentence2"}, "gold_label", NLI3,
             (metrics.accuracy,)),
    GlueSpec("qnli", "QNLI", _TRAIN_DEV, {"question": "question", "sentence": "sentence"}, "label",
             ("entailment", "not_entailment"), (metrics.accuracy,)),
    GlueSpec("rte", "RTE", _TRAIN_DEV, {"sentence1": "sentence1", "sentence2": "sentence2"}, "label",
             ("entailment", "not_entailment"), (metrics.accuracy,)),
    GlueSpec("wnli", "WNLI", _TRAIN_DEV, {"sentence1": "sentence1", "sentence2": "sentence2"}, "label",
             ("not_entailment", "entailment"), (metrics.accuracy,)),
    # The diagnostic, cast as MNLI. GLUE's AX.tsv is unlabelled (label -1, as TFDS);
    # the labelled diagnostic-full.tsv (Premise/Hypothesis/Label) keeps its labels.
    # T5 defines no metric for it.
    GlueSpec("ax", "AX", {"test": formats.FirstMatch(("diagnostic-full.tsv", "AX.tsv", "diagnostic.tsv"))},
             {"premise": ("sentence1", "Premise"), "hypothesis": ("sentence2", "Hypothesis")},
             "Label", NLI3, (), benchmark="mnli"),
]


def _source(spec: GlueSpec) -> sources.DataSource:
    def path(name):
        if isinstance(name, formats.FirstMatch):
            return formats.FirstMatch(f"glue/{spec.folder}/{n}" for n in name)
        return f"glue/{spec.folder}/{name}"

    files = formats.GlueTsvSource(
        {split: path(name) for split, name in spec.files.items()},
        formats.glue_row_converter(spec.text_features, spec.label_column, spec.label_classes),
        columns=spec.columns)
    return sources.FilesOrTfds(files, sources.TfdsSource(f"glue/{spec.name}", tuple(spec.files)))


def _register(spec: GlueSpec) -> None:
    if spec.label_classes is None:
        text_pp, postprocess_fn, candidates = registry.map_fn(formats.stsb_format), \
            postprocess.string_to_float, STSB_CANDIDATES
    else:
        text_pp = registry.map_fn(formats.glue_format(spec.benchmark or spec.name, spec.label_classes))
        postprocess_fn = postprocess.label_to_class_id(spec.label_classes)
        candidates = spec.label_classes
    registry.add_task(
        spec.task_name, _source(spec),
        preprocessors=[text_pp, registry.tokenize, registry.append_eos_after_trim],
        output_features=OUTPUT_FEATURES, postprocess_fn=postprocess_fn,
        metric_fns=list(spec.metric_fns),
        description=f"GLUE {spec.folder} in T5's format (splits {', '.join(spec.files)})")
    formats.set_candidates(spec.task_name, candidates)


for _spec in SPECS:
    _register(_spec)

# T5's examples-proportional GLUE mixture: training-set sizes as T5 weighs them
# (t5/data/glue_utils.py); WNLI is left out (T5 trains WSC instead) and so are
# the evaluation-only splits.
GLUE_MIXTURE_RATES = {"glue_cola": 8_551., "glue_sst2": 67_349., "glue_mrpc": 3_668.,
                      "glue_qqp": 363_849., "glue_stsb": 5_749., "glue_mnli": 392_702.,
                      "glue_qnli": 104_743., "glue_rte": 2_490.}
registry.add_mixture("glue", list(GLUE_MIXTURE_RATES.items()))
