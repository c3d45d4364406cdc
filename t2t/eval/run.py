"""A training run's checkpoint, loaded for evaluation: config, model, params, vocabulary.

`load_run(workdir, checkpoint)` reads `<workdir>/config.json`, builds the model it trained
and restores params onto the run's mesh (or, when this machine lacks those devices, a
data-parallel mesh over the local devices) with the run's sharding rules. `checkpoint` is
None (the latest step), a step number, `<workdir>/checkpoints/<step>`, or a params
directory (`<workdir>/best`, a converted checkpoint) whose model must match the run's.
"""
from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import sys
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from t2t import pairing, sharding
from t2t import workdir as layout
from t2t.data.vocab import SentencePieceVocabulary
from t2t.models import variants
from t2t.models.model import build_model
from t2t.workdir import restore


@dataclasses.dataclass
class Run:
    cfg: ml_collections.ConfigDict
    model_cfg: ml_collections.ConfigDict
    model: Any
    params: Any
    label: str                    # the step, or the params directory's name ("best")
    vocab: SentencePieceVocabulary
    sequence_length: dict[str, int]  # {"inputs", "targets"}, a derived targets length resolved
    mesh: Any

    @property
    def data_dir(self) -> str | None:
        return self.cfg.data.data_dir or None

    @property
    def batch_sharding(self):
        return sharding.batch_sharding(self.mesh)

    def context(self):
        """The mesh and logical-axis rules the model runs under (as in training)."""
        stack = contextlib.ExitStack()
        stack.enter_context(self.mesh)
        stack.enter_context(sharding.rules_context(self.mesh))
        return stack


def run_data(cfg, model_cfg, vocab: str | None) -> tuple[SentencePieceVocabulary, dict[str, int]]:
    """(vocabulary, sequence lengths) of the run: `vocab`, else the run's data.vocab, else the
    vocabulary of the task it trained on; its lengths as training resolved them."""
    task, _, _, lengths = pairing.pair(cfg, model_cfg)
    if vocab or cfg.data.get("vocab"):
        return SentencePieceVocabulary(vocab or cfg.data.vocab), lengths
    return pairing.task_vocabulary(task), lengths


def _mesh(cfg):
    try:
        return sharding.make_mesh(cfg.mesh.to_dict())
    except ValueError as e:
        print(f"t2t.evaluate: {e}; evaluating on a data-parallel mesh of the local devices",
              file=sys.stderr)
        return sharding.make_mesh({"data": -1})


def load_run(workdir, checkpoint: str | int | None = None, *, vocab: str | None = None) -> Run:
    """The run in `workdir` with the params of `checkpoint` (see the module docstring)."""
    cfg = layout.read_run_config(workdir)
    model_cfg = variants.from_run_config(cfg)
    path, step, label = restore.resolve_checkpoint(workdir, checkpoint)
    if path != pathlib.Path(workdir).absolute():
        restore.check_init_from(path, model_cfg, flag="--checkpoint")
    model = build_model(model_cfg)
    example = model.spec.zeros({"inputs": 8, "targets": 8})  # shapes do not change params
    boxed = jax.eval_shape(model.init, jax.random.key(0), example)
    mesh = _mesh(cfg)
    params = restore.load_params(path, nn.unbox(boxed), sharding.param_shardings(boxed, mesh),
                                 step=step)
    return Run(cfg, model_cfg, model, params, label, *run_data(cfg, model_cfg, vocab), mesh)
