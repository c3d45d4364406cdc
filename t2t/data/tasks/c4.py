"""Pretraining tasks: every T5 objective over C4 and over the built-in offline corpus.

`c4_<objective>` reads C4 from JSONL shards in allenai/c4's naming under the data
directory (`c4/en/c4-train.*.json.gz`, `c4/en/c4-validation.*.json.gz`) or, when
absent, from TFDS `c4/en`. `builtin_<objective>` reads the Python documentation
corpus that ships with every Python (no download) with a vocabulary trained on it.
`register_objective_task` adds the same with other objective arguments, e.g.
`c4_span_corruption_s10` (mean noise span length 10) or `c4_iid_denoise_d0.5`.
"""
import inspect

from t2t.data import objectives, registry, sources
from t2t.data.vocab import T5_DEFAULT_SPM_PATH, SentencePieceVocabulary, TrainedVocabulary

C4_FILES = sources.JsonlSource(
    {"train": "c4/en/c4-train.*.json.gz", "validation": "c4/en/c4-validation.*.json.gz"},
    required_keys=("text",))
C4_SOURCE = sources.FilesOrTfds(C4_FILES, sources.TfdsSource("c4/en:3.1.0", ("train", "validation")))
T5_VOCAB = SentencePieceVocabulary(T5_DEFAULT_SPM_PATH)
BUILTIN_VOCAB = TrainedVocabulary(
    "builtin_pydocs", lambda: [d["text"] for d in sources.builtin_documents()], vocab_size=8000)

# Objective name -> task suffix (the names researchers know from the T5 paper).
TASK_SUFFIX = {"span_corruption": "span_corruption", "iid_denoise": "iid_denoise",
               "drop_tokens": "drop_tokens", "bert_t5": "bert_t5", "bert_mlm": "bert_mlm",
               "mass": "mass", "deshuffle": "deshuffle", "prefix_lm": "prefix_lm",
               "causal_lm": "causal_lm"}


def _features(vocab, objective):
    targets = registry.Feature(vocab)
    if objective.fn is objectives.causal_lm:
        return {"targets": targets}
    return {"inputs": registry.Feature(vocab), "targets": targets}


def _add_objective_task(name: str, prefix: str, objective) -> None:
    source, vocab, inputs_length = CORPORA[prefix]
    args = f" {dict(objective.kwargs)}" if objective.kwargs else ""
    registry.add_task(
        name, source,
        preprocessors=[registry.rekey({"targets": "text"}),
                       registry.tokenize,
                       *objectives.preprocessors(objective)],
        output_features=_features(vocab, objective),
        default_sequence_length=objective.default_sequence_length(inputs_length),
        description=f"{objective.name}{args} over {prefix}; pairs with the {objective.converter!r} converter")


# Corpus prefix -> (source, vocabulary, default inputs length).
CORPORA = {"c4": (C4_SOURCE, T5_VOCAB, 512),
           "builtin": (sources.BuiltinCorpusSource(), BUILTIN_VOCAB, 128)}
# Short names of objective arguments inside task names (c4_span_corruption_d0.5_s3).
KWARG_CODES = {"noise_density": "d", "mean_noise_span_length": "s"}


def register_objective_task(objective_name: str, prefix: str = "c4", **objective_kwargs) -> str:
    """Registers (once) and returns the task `<prefix>_<objective>` with non-default objective
    arguments in its name: register_objective_task("span_corruption", noise_density=0.5,
    mean_noise_span_length=3.0) -> "c4_span_corruption_d0.5" (3.0 is the default)."""
    if prefix not in CORPORA:
        raise KeyError(f"unknown corpus prefix {prefix!r}; known: {sorted(CORPORA)}")
    base = objectives.get_objective(objective_name)
    params = inspect.signature(base.fn).parameters
    defaults = {k: p.default for k, p in params.items() if p.kind is p.KEYWORD_ONLY
                and p.default is not p.empty}
    unknown = sorted(set(objective_kwargs) - set(defaults))
    if unknown:
        raise TypeError(f"objective {objective_name!r} has no argument(s) {unknown}; it takes "
                        f"{sorted(defaults)}")
    changed = {k: v for k, v in sorted(objective_kwargs.items()) if v != defaults[k]}
    name = f"{prefix}_{TASK_SUFFIX[objective_name]}" + "".join(
        f"_{KWARG_CODES.get(k, k)}{v:g}" for k, v in changed.items())
    if name not in registry.TaskRegistry:
        _add_objective_task(name, prefix, objectives.get_objective(objective_name, **changed))
    return name


def _register_default_objectives() -> None:
    for prefix in CORPORA:
        for objective_name, suffix in TASK_SUFFIX.items():
            _add_objective_task(f"{prefix}_{suffix}", prefix, objectives.get_objective(objective_name))


_register_default_objectives()


# Raw web text cleaned with C4's rules (t2t/data/c4.py), then span corruption: the
# "C4 vs unfiltered" comparison of the T5 paper on your own crawl. Point --data_dir at a
# folder with web_raw/pages.jsonl.gz (one {"text", "url", ...} per line).
def _register_web_raw() -> None:
    from t2t.data import c4 as c4_cleaning

    raw = sources.JsonlSource({"train": "web_raw/pages.jsonl.gz"}, required_keys=("text",))
    for name, config in (("web_raw_c4_clean", c4_cleaning.C4Config(lang_filter=False)),
                         ("web_raw_c4_noclean", c4_cleaning.C4Config.noclean())):
        registry.add_task(f"{name}_pages", raw, preprocessors=[c4_cleaning.preprocessor(config)],
                          output_features={}, description=f"raw pages after {name} cleaning")
        objective = objectives.get_objective("span_corruption")
        registry.add_task(
            f"{name}_span_corruption", raw,
            preprocessors=[c4_cleaning.preprocessor(config), registry.rekey({"targets": "text"}),
                           registry.tokenize, *objectives.preprocessors(objective)],
            output_features=_features(T5_VOCAB, objective),
            default_sequence_length=objective.default_sequence_length(512))


_register_web_raw()
