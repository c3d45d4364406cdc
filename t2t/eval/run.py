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
import json
import pathlib
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from t2t.data import registry
from t2t.data.vocab import SentencePieceVocabulary
from t2t.eval import inference
from t2t.models import variants
from t2t.models.model import build_model
from t2t.train import checkpoint as ckpt_lib
from t2t.train import finetune, loop, partitioning


@dataclasses.dataclass
class Run:
    cfg: ml_collections.ConfigDict
    model_cfg: ml_collections.ConfigDict
    model: Any
    params: Any
    label: str                    # the step, or the params directory's name ("best")
    vocab: SentencePieceVocabulary
    mesh: Any

    @property
    def sequence_length(self) -> dict[str, int]:
        return loop.sequence_lengths(self.cfg)

    @property
    def data_dir(self) -> str | None:
        return self.cfg.data.data_dir or None

    @property
    def batch_sharding(self):
        return partitioning.batch_sharding(self.mesh)

    def context(self):
        """The mesh and logical-axis rules the model runs under (as in training)."""
        stack = contextlib.ExitStack()
        stack.enter_context(self.mesh)
        stack.enter_context(partitioning.rules_context(self.mesh))
        return stack


def read_run_config(workdir) -> ml_collections.ConfigDict:
    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --workdir must be a t2t training workdir")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def resolve_checkpoint(workdir, checkpoint: str | int | None) -> tuple[pathlib.Path, int | None, str]:
    """(path for loop.load_init_params, step or None, label) for a --checkpoint value."""
    workdir = pathlib.Path(workdir).absolute()
    if checkpoint is None or str(checkpoint).isdigit():
        ckpt_dir = workdir / "checkpoints"
        if not ckpt_dir.is_dir():
            raise FileNotFoundError(f"{ckpt_dir}: no checkpoints in this workdir")
        step = None if checkpoint is None else int(checkpoint)
        if step is None:
            manager = ckpt_lib.Checkpointer(ckpt_dir, async_save=False)
            step = manager.latest_step()
            manager.close()
            if step is None:
                raise FileNotFoundError(f"{ckpt_dir}: no complete checkpoint")
        return workdir, step, str(step)
    path = pathlib.Path(checkpoint).absolute()
    if path.name.isdigit() and path.parent.name == "checkpoints":
        return path.parent.parent, int(path.name), path.name
    if not (path / "params").is_dir():
        raise FileNotFoundError(f"--checkpoint {checkpoint}: expected a step number, "
                                "<workdir>/checkpoints/<step>, or a directory with params/ "
                                "(<workdir>/best, a converted checkpoint)")
    return path, None, path.name


def run_vocabulary(cfg, vocab: str | None) -> SentencePieceVocabulary:
    """`vocab`, else the run's data.vocab, else the vocabulary of the task it trained on."""
    if vocab or cfg.data.vocab:
        return SentencePieceVocabulary(vocab or cfg.data.vocab)
    return loop._task_vocabulary(registry.get_task_or_mixture(cfg.data.task), cfg)


def _mesh(cfg):
    try:
        return partitioning.make_mesh(cfg.mesh.to_dict())
    except ValueError as e:
        print(f"t2t.evaluate: {e}; evaluating on a data-parallel mesh of the local devices",
              file=sys.stderr)
        return partitioning.make_mesh({"data": -1})


def load_run(workdir, checkpoint: str | int | None = None, *, vocab: str | None = None) -> Run:
    """The run in `workdir` with the params of `checkpoint` (see the module docstring)."""
    cfg = read_run_config(workdir)
    model_cfg = variants.get_model_config(cfg.model.name, **cfg.model.overrides.to_dict())
    path, step, label = resolve_checkpoint(workdir, checkpoint)
    if path != pathlib.Path(workdir).absolute():
        finetune.check_init_from(path, model_cfg, flag="--checkpoint")
    model = build_model(model_cfg)
    if model_cfg.architecture not in inference.CONVERTERS:
        raise ValueError(f"{workdir}: a {model_cfg.architecture} model cannot be decoded or scored "
                         "on text-to-text tasks")
    shapes = loop.batch_shapes(inference.CONVERTERS[model_cfg.architecture],
                               loop.sequence_lengths(cfg), 1, pack=False)
    example = {k: jnp.zeros(s, jnp.int32) for k, s in shapes.items()}
    boxed = jax.eval_shape(model.init, jax.random.key(0), example)
    mesh = _mesh(cfg)
    params = loop.load_init_params(str(path), nn.unbox(boxed),
                                   partitioning.param_shardings(boxed, mesh), step=step)
    return Run(cfg, model_cfg, model, params, label, run_vocabulary(cfg, vocab), mesh)
