"""Pretraining tasks: a corpus read through an objective, built from a run's config.

A pretraining run names its corpus and its objective in the config (`data.corpus`,
`data.objective`); `pretraining_task(corpus, objective)` builds the Task when the run starts.
Corpora:
  c4                  C4 from JSONL shards in allenai/c4's naming under the data directory
                      (`c4/en/c4-{train,validation}.*.json.gz`), else TFDS `c4/en`
  builtin             the Python documentation shipped with every Python (no download), with
                      a SentencePiece vocabulary trained on it on first use
  web_raw_c4_clean    raw pages (`web_raw/pages.jsonl.gz`) cleaned with C4's rules
  web_raw_c4_noclean  the same pages, uncleaned (the T5 paper's "C4 vs unfiltered")
  tfds:NAME[:VERSION] any TFDS dataset with a `text` feature (train and validation splits)
  a file pattern      JSONL(.gz) with a `text` key, or plain-text lines (.txt); a `{split}`
                      in the pattern is replaced by train / validation
Every corpus x objective pair at the objective's default arguments is also registered under
the names researchers already use: `c4_span_corruption`, `builtin_prefix_lm`, ...
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from t2t.data import c4_cleaning, objectives, registry, sources
from t2t.data.vocab import T5_DEFAULT_SPM_PATH, SentencePieceVocabulary, TrainedVocabulary

T5_VOCAB = SentencePieceVocabulary(T5_DEFAULT_SPM_PATH)
BUILTIN_VOCAB = TrainedVocabulary(
    "builtin_pydocs", lambda: [d["text"] for d in sources.builtin_documents()], vocab_size=8000)


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Where pretraining text comes from: a source of {"text": ...} records, its vocabulary,
    the inputs length runs on it default to, and preprocessors run before tokenizing."""

    name: str
    source: sources.DataSource
    vocab: SentencePieceVocabulary
    inputs_length: int = 512
    preprocessors: Sequence[Callable] = ()


_C4_FILES = sources.JsonlSource(
    {"train": "c4/en/c4-train.*.json.gz", "validation": "c4/en/c4-validation.*.json.gz"},
    required_keys=("text",))
_WEB_RAW = sources.JsonlSource({"train": "web_raw/pages.jsonl.gz"}, required_keys=("text",))

CORPORA = {c.name: c for c in (
    Corpus("c4", sources.FilesOrTfds(_C4_FILES, sources.TfdsSource("c4/en:3.1.0",
                                                                    ("train", "validation"))),
           T5_VOCAB),
    Corpus("builtin", sources.BuiltinCorpusSource(), BUILTIN_VOCAB, inputs_length=128),
    Corpus("web_raw_c4_clean", _WEB_RAW, T5_VOCAB,
           preprocessors=(c4_cleaning.preprocessor(c4_cleaning.C4Config(lang_filter=False)),)),
    Corpus("web_raw_c4_noclean", _WEB_RAW, T5_VOCAB,
           preprocessors=(c4_cleaning.preprocessor(c4_cleaning.C4Config.noclean()),)),
)}


def get_corpus(name: str) -> Corpus:
    """A named corpus, `tfds:NAME`, or a file pattern (see the module docstring)."""
    if name in CORPORA:
        return CORPORA[name]
    if name.startswith("tfds:"):
        return Corpus(name, sources.TfdsSource(name[len("tfds:"):], ("train", "validation")),
                      T5_VOCAB)
    if any(c in name for c in "*?/{") or name.endswith((".jsonl", ".json.gz", ".jsonl.gz",
                                                         ".txt", ".txt.gz")):
        splits = ("train", "validation") if "{split}" in name else ("train",)
        files = {s: name.replace("{split}", s) for s in splits}
        is_text = name.endswith((".txt", ".txt.gz"))
        source = sources.TextLineSource(files) if is_text else \
            sources.JsonlSource(files, required_keys=("text",))
        return Corpus(name, source, T5_VOCAB)
    raise ValueError(f"data.corpus={name!r}: expected one of {', '.join(sorted(CORPORA))}, "
                     "tfds:NAME[:VERSION], or a file pattern (*.jsonl[.gz] with a 'text' key, "
                     "*.txt; '{split}' stands for train/validation)")


def features(vocab, objective: objectives.Objective) -> dict:
    """Output features: targets, and inputs unless the objective is causal LM."""
    targets = registry.Feature(vocab)
    if objective.fn is objectives.causal_lm:
        return {"targets": targets}
    return {"inputs": registry.Feature(vocab), "targets": targets}


def pretraining_task(corpus: str | Corpus, objective: objectives.Objective,
                     name: str | None = None) -> registry.Task:
    """The Task reading `corpus` through `objective` (not registered)."""
    corpus = get_corpus(corpus) if isinstance(corpus, str) else corpus
    args = ", ".join(f"{k}={v:g}" for k, v in sorted(objective.kwargs.items()))
    return registry.Task(
        name or f"{corpus.name}_{objective.name}", corpus.source,
        preprocessors=[*corpus.preprocessors, registry.rekey({"targets": "text"}),
                       registry.tokenize, *objectives.preprocessors(objective)],
        output_features=features(corpus.vocab, objective),
        default_sequence_length=objective.default_sequence_length(corpus.inputs_length),
        description=f"{objective.name}({args}) over {corpus.name}; pairs with the "
                    f"{objective.converter!r} converter")


def _register() -> None:
    for corpus in CORPORA.values():
        for objective_name in objectives.OBJECTIVES:
            registry.TaskRegistry.add(pretraining_task(
                corpus, objectives.get_objective(objective_name)))
    # The cleaned / uncleaned pages themselves, for inspection.
    for corpus in ("web_raw_c4_clean", "web_raw_c4_noclean"):
        registry.add_task(f"{corpus}_pages", _WEB_RAW,
                          preprocessors=list(CORPORA[corpus].preprocessors), output_features={},
                          description=f"raw pages after {corpus} cleaning")


_register()
