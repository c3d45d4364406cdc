"""The objective x architecture pairing, resolved once from a run's config.

A run's data is either a registered task or mixture (`data.task`: GLUE, SuperGLUE, user
tasks, or the pretraining names such as `c4_span_corruption`) or a corpus read through an
objective with its arguments (`data.corpus` + `data.objective`), built when the run starts.
`resolve(cfg, model_cfg)` turns that into what every stage consumes: the task, the feature
converter the architecture takes for it, the sequence lengths, the vocabulary and the batch
spec. The training loop, evaluation, `t2t.inspect` and the sweep tools all call it, so what
you inspect is what you train, and a model that cannot consume the converter's batches
fails here, at start-up.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from t2t import batch_spec, tasks
from t2t.data import objectives, registry
from t2t.data.vocab import SentencePieceVocabulary
from t2t.models import model as model_lib
from t2t.models import variants
from t2t.tasks import pretraining


@dataclasses.dataclass(frozen=True)
class RunData:
    """What a run reads and how its batches look."""

    task: registry.Task | registry.Mixture
    converter: str                       # a batch_spec / converters name
    lengths: dict[str, int]              # {"inputs", "targets"} sequence lengths
    vocab: SentencePieceVocabulary       # data.vocab, else the task's own
    vocab_override: SentencePieceVocabulary | None
    objective: dict | None               # objectives.describe(...) for corpus runs

    @property
    def spec(self) -> batch_spec.ConverterSpec:
        return batch_spec.get(self.converter)

    def batch_shapes(self, batch_size: int, pack: bool) -> dict[str, batch_spec.KeySpec]:
        return self.spec.shapes(self.lengths, batch_size, pack)


def objective_is_set(data_cfg) -> bool:
    """True when any objective argument was given a value (unset ones are None)."""
    block = data_cfg.get("objective") or {}
    return any(v is not None for k, v in dict(block).items() if k != "name")


def resolve_task(data_cfg) -> tuple[registry.Task | registry.Mixture, objectives.Objective | None]:
    """(task or mixture, objective or None) from `data.task` or `data.corpus` + `data.objective`."""
    task_name, corpus = data_cfg.get("task", ""), data_cfg.get("corpus", "")
    if task_name and corpus:
        raise ValueError(
            f"data.task={task_name!r} and data.corpus={corpus!r} are both set: a run reads a "
            "registered task (data.task) or a corpus through an objective (data.corpus + "
            "data.objective), not both; clear one, e.g. --config.data.corpus=")
    if task_name:
        if objective_is_set(data_cfg):
            raise ValueError(f"data.objective arguments apply to data.corpus runs; data.task="
                             f"{task_name!r} is a registered task with its own preprocessing")
        names = [n.strip() for n in task_name.split(",") if n.strip()]
        if len(names) == 1:
            return tasks.get_task_or_mixture(names[0]), None
        for name in names:  # an unknown name (or a mixture) fails here, with suggestions
            tasks.get_task(name)
        return registry.Mixture(task_name, [(n, 1.0) for n in names]), None
    if not corpus:
        raise ValueError("the config names no data: set data.task (a registered task or "
                         "mixture) or data.corpus and data.objective.name")
    objective = objectives.from_config(data_cfg.objective)
    return pretraining.pretraining_task(corpus, objective), objective


def task_vocabulary(task) -> SentencePieceVocabulary:
    """The vocabulary of the task's (a mixture's first task's) tokenized features."""
    if isinstance(task, registry.Mixture):
        task = task.first_task()
    for feature in task.output_features.values():
        if feature.vocabulary is not None:
            return feature.vocabulary
    raise ValueError(f"task {task.name!r} has no tokenized output feature (no vocabulary)")


def converter_for(data_cfg, architecture: str, task) -> str:
    """`data.converter`, or the one the architecture consumes for the task's features."""
    converters = model_lib.FEATURE_CONVERTERS[architecture]
    name = data_cfg.get("converter", "auto")
    if name == "auto":
        if len(converters) == 1:
            return converters[0]
        first = task.first_task() if isinstance(task, registry.Mixture) else task
        return "prefix_lm" if "inputs" in first.output_features else "lm"
    batch_spec.get(name)  # an unknown name lists the known ones
    model_lib.check_converter(architecture, name)
    return name


def check_objective(objective: objectives.Objective, converter: str, architecture: str) -> None:
    """Fails when the objective's examples do not fit the converter's batches: BERT-style MLM
    (aligned inputs/targets with a loss mask) pairs with enc_only only, and causal LM (targets
    only) with lm only."""
    aligned = objective.converter == "enc_only"
    targets_only = objective.converter == "lm"
    if aligned != (converter == "enc_only") or targets_only != (converter == "lm"):
        wanted = {"enc_only": "an encoder_only model", "lm": "a decoder_only model"}.get(
            objective.converter, "an encoder_decoder or decoder_only model")
        raise ValueError(f"objective {objective.name!r} makes examples for the "
                         f"{objective.converter!r} converter ({wanted}); a {architecture} model "
                         f"takes {converter!r} batches. Pick another objective or model")


def sequence_lengths(data_cfg, objective: objectives.Objective | None) -> dict[str, int]:
    """{"inputs", "targets"}: data.inputs_length, and data.targets_length or, when it is 0,
    the length the objective needs for those inputs (span corruption: T5's helper)."""
    inputs = int(data_cfg.inputs_length)
    targets = int(data_cfg.targets_length)
    if targets <= 0:
        if objective is None:
            raise ValueError("data.targets_length=0 (derive it from the objective) needs a "
                             "data.corpus run; set data.targets_length for data.task runs")
        targets = objective.default_sequence_length(inputs)["targets"]
    return {"inputs": inputs, "targets": targets}


def pair(cfg, model_cfg) -> tuple[Any, objectives.Objective | None, str, dict[str, int]]:
    """(task, objective, converter, lengths) of a run, the pairing with the model checked; reads
    no vocabulary (a sweep describes points whose vocabulary only the TPU VM can read)."""
    task, objective = resolve_task(cfg.data)
    converter = converter_for(cfg.data, model_cfg.architecture, task)
    if objective is not None:
        check_objective(objective, converter, model_cfg.architecture)
    return task, objective, converter, sequence_lengths(cfg.data, objective)


def resolve(cfg, model_cfg) -> RunData:
    """The run's task, converter, lengths and vocabulary; checks the pairing with the model."""
    task, objective, converter, lengths = pair(cfg, model_cfg)
    override = SentencePieceVocabulary(cfg.data.vocab) if cfg.data.get("vocab") else None
    vocab = override or task_vocabulary(task)
    if vocab.vocab_size > model_cfg.vocab_size:
        raise ValueError(f"the vocabulary has {vocab.vocab_size} ids but model.vocab_size is "
                         f"{model_cfg.vocab_size}; set --config.model.overrides.vocab_size")
    return RunData(task, converter, lengths, vocab, override,
                   objectives.describe(objective) if objective else None)


def flops_per_step(model_cfg, converter: str, lengths, batch_size: int) -> float:
    """Training matmul FLOPs of one step (variants.flops_per_token x the loss positions)."""
    li, lt = lengths["inputs"], lengths["targets"]
    if converter == "lm":
        return variants.flops_per_token(model_cfg, 0, lt) * batch_size * lt
    if converter == "enc_only":
        return variants.flops_per_token(model_cfg, li, li) * batch_size * li
    return variants.flops_per_token(model_cfg, li, lt) * batch_size * lt

