"""Ablation grids: named points and the pretrain -> fine-tune -> evaluate pipeline of each.

A grid file (experiments/*.py) defines `GRID = Grid(...)` and `get_config = GRID.get_config`,
so the same file is what `python -m t2t.sweep --grid FILE` reads and the config file every
training stage runs with; the part after the colon names the scale, point and stage:

  python -m t2t.train --workdir W/enc_dec.denoising/pretrain \\
      --config experiments/t5_table2.py:scale=tiny,point=enc_dec.denoising,stage=pretrain

A point is a model (a t2t.models.variants name at the paper's size), a pretraining
objective with its arguments, and config overrides. A scale says how big everything is:
`paper` is the T5 paper's baseline (C4, 512/114 tokens, batch 128, 2^19 pretraining steps,
fine-tuning on the GLUE and SuperGLUE mixtures for 2^18 steps, the best checkpoint
evaluated); `tiny` keeps every ratio between models (layers / 6, small widths), pretrains 40
steps on the C4 sample, fine-tunes 20 steps on an RTE + CB mixture and scores 32 examples of
each, about a minute per point on a laptop CPU. A point's objective and its arguments are
plain config (`data.corpus="c4"`, `data.objective.name`, `data.objective.noise_density`, ...).
"""
from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any, Mapping, Sequence

import ml_collections

from configs import common, finetune_glue
from t2t import fileio
from t2t.data import objectives
from t2t.models import variants

NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclasses.dataclass(frozen=True)
class Point:
    """One pretraining run of a grid: model + objective (+ arguments) + config overrides."""

    name: str
    model: str                                   # t2t.models.variants name (paper size)
    objective: str                               # t2t.data.objectives name
    objective_kwargs: Mapping[str, float] = dataclasses.field(default_factory=dict)
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # dotted keys, last
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Finetune:
    """One fine-tuning run per point and the tasks evaluated after it."""

    name: str                                    # stage `finetune.<name>`, folder finetune/<name>
    task: str                                    # task or mixture trained on; "a,b" mixes
                                                 # tasks a and b at equal rates
    eval_tasks: tuple[str, ...]                  # tasks or mixtures (glue, super_glue) scored


@dataclasses.dataclass(frozen=True)
class Scale:
    """Sizes, lengths and step counts of every stage."""

    name: str
    inputs_length: int                 # pretraining inputs; targets follow the objective
    batch_size: int
    pack: bool
    pretrain_steps: int
    checkpoint_every: int
    log_every: int
    pretrain_eval_every: int           # C4 validation loss every N steps (0 = never)
    model: Mapping[str, Any] | None    # widths replacing the paper's; layers divided by 6
    finetunes: tuple[Finetune, ...]
    finetune_steps: int
    finetune_lengths: tuple[int, int]  # (inputs, targets)
    finetune_batch_size: int
    finetune_learning_rate: float      # Adafactor, constant (T5: 1e-3)
    finetune_checkpoint_every: int
    finetune_eval_every: int           # task evaluation (keeps best/) every N steps (0 = never)
    eval_checkpoint: str               # "latest" or "best": what the evaluate stage scores
    eval_max_examples: int = 0         # first N examples per task (0 = all)


PAPER = Scale(
    name="paper", inputs_length=512, batch_size=128, pack=True, pretrain_steps=2**19,
    checkpoint_every=10_000, log_every=100, pretrain_eval_every=10_000, model=None,
    finetunes=(Finetune("glue", "glue", ("glue",)),
               Finetune("super_glue", "super_glue", ("super_glue",))),
    finetune_steps=2**18, finetune_lengths=(512, 128), finetune_batch_size=128,
    finetune_learning_rate=1e-3, finetune_checkpoint_every=5000, finetune_eval_every=5000,
    eval_checkpoint="best")

# Fine-tuning at 1e-2: at 1e-3 twenty steps leave the model emitting no label word at all.
TINY = Scale(
    name="tiny", inputs_length=64, batch_size=8, pack=False, pretrain_steps=40,
    checkpoint_every=20, log_every=10, pretrain_eval_every=0,
    model=dict(d_model=64, num_heads=4, head_dim=16, d_ff=256, dropout_rate=0.0, dtype="float32"),
    finetunes=(Finetune("rte_cb", "glue_rte,super_glue_cb", ("glue_rte", "super_glue_cb")),),
    finetune_steps=20, finetune_lengths=(128, 8), finetune_batch_size=8,
    finetune_learning_rate=1e-2, finetune_checkpoint_every=10, finetune_eval_every=0,
    eval_checkpoint="latest", eval_max_examples=32)

SCALES = {"paper": PAPER, "tiny": TINY}


# ----------------------------------------------------------------------------- helpers
def set_dotted(cfg: ml_collections.ConfigDict, overrides: Mapping[str, Any], where: str) -> None:
    """cfg["a.b.c"] = value for every item; a missing key fails naming it and `where`."""
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = cfg
        for i, part in enumerate(parents):
            if part not in node:
                raise KeyError(f"{where}: override {key!r}: config has no {'.'.join(parents[:i + 1])!r}")
            node = node[part]
        if leaf not in node:
            raise KeyError(f"{where}: override {key!r}: config has no field {leaf!r} under "
                           f"{'.'.join(parents) or 'the top level'}; fields: {sorted(node.keys())}")
        node[leaf] = value


def model_overrides(model: str, scale: Scale) -> dict:
    """The model fields a scale changes: its widths, and layer counts divided by 6 (min 1)."""
    if scale.model is None:
        return {}
    paper = variants.get_model_config(model)
    layers = {k: -(-paper[k] // 6) for k in ("num_encoder_layers", "num_decoder_layers")}
    return {**scale.model, **layers}


def parse_spec(spec: str | None) -> dict[str, str]:
    """'scale=tiny,point=P,stage=pretrain' -> {"scale": "tiny", "point": "P", "stage": "pretrain"}."""
    if not spec:
        raise ValueError("a grid file is a config only with a config string: "
                         "--config GRID.py:scale=SCALE,point=POINT,stage=STAGE")
    out = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in ("scale", "point", "stage") or not value:
            raise ValueError(f"config string {spec!r}: expected scale=...,point=...,stage=..., "
                             f"got {part!r}")
        out[key] = value
    missing = [k for k in ("scale", "point", "stage") if k not in out]
    if missing:
        raise ValueError(f"config string {spec!r}: missing {', '.join(missing)}")
    return out


# ----------------------------------------------------------------------------- the grid
@dataclasses.dataclass
class Grid:
    """Named points over the T5 baseline, with the scales they can run at."""

    name: str
    points: Sequence[Point]
    description: str = ""
    scales: Mapping[str, Scale] = dataclasses.field(default_factory=lambda: dict(SCALES))

    def __post_init__(self):
        seen = set()
        for p in self.points:
            if not NAME_RE.match(p.name):
                raise ValueError(f"grid {self.name!r}: point name {p.name!r} may use only letters, "
                                 "digits and _ . + -")
            if p.name in seen:
                raise ValueError(f"grid {self.name!r}: point {p.name!r} is defined twice")
            seen.add(p.name)
            variants.get_model_config(p.model)      # unknown names fail at definition
            objectives.get_objective(p.objective, **p.objective_kwargs)

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(f"grid {self.name!r} has no point {name!r}; points: "
                       f"{[p.name for p in self.points]}")

    def scale(self, name: str) -> Scale:
        if name not in self.scales:
            raise KeyError(f"grid {self.name!r} has no scale {name!r}; scales: {sorted(self.scales)}")
        return self.scales[name]

    def stages(self, scale: str) -> list[str]:
        """Stage names of every point, in order: pretrain, finetune.<f>, evaluate.<f> ..."""
        out = ["pretrain"]
        for ft in self.scale(scale).finetunes:
            out += [f"finetune.{ft.name}", f"evaluate.{ft.name}"]
        return out

    def finetune(self, scale: str, stage: str) -> Finetune:
        name = stage.split(".", 1)[1] if "." in stage else ""
        for ft in self.scale(scale).finetunes:
            if ft.name == name:
                return ft
        raise KeyError(f"grid {self.name!r} scale {scale!r} has no stage {stage!r}; stages: "
                       f"{self.stages(scale)}")

    # ---- configs
    def pretrain_config(self, point: Point, scale: Scale) -> ml_collections.ConfigDict:
        cfg = common.t5_pretrain(point.model, point.objective)
        cfg.data.objective.update(point.objective_kwargs)
        cfg.data.inputs_length = scale.inputs_length
        cfg.data.targets_length = 0  # what the objective needs for those inputs
        cfg.model.overrides = model_overrides(point.model, scale)
        cfg.data.batch_size, cfg.data.pack = scale.batch_size, scale.pack
        cfg.train.num_steps, cfg.train.log_every = scale.pretrain_steps, scale.log_every
        cfg.train.eval_every = scale.pretrain_eval_every
        cfg.checkpoint.every_steps = scale.checkpoint_every
        set_dotted(cfg, point.overrides, f"grid {self.name!r} point {point.name!r}")
        return cfg

    def finetune_config(self, point: Point, scale: Scale, ft: Finetune) -> ml_collections.ConfigDict:
        pretrain = self.pretrain_config(point, scale)
        cfg = finetune_glue.get_config()
        cfg.model.name = pretrain.model.name
        cfg.model.overrides = pretrain.model.overrides.to_dict()
        cfg.data.task = ft.task
        cfg.data.inputs_length, cfg.data.targets_length = scale.finetune_lengths
        cfg.data.batch_size, cfg.data.pack = scale.finetune_batch_size, scale.pack
        cfg.train.num_steps, cfg.train.log_every = scale.finetune_steps, scale.log_every
        cfg.optimizer.learning_rate = scale.finetune_learning_rate
        cfg.train.eval_every = scale.finetune_eval_every
        cfg.checkpoint.every_steps = scale.finetune_checkpoint_every
        cfg.eval.tasks = ",".join(ft.eval_tasks) if scale.finetune_eval_every else ""
        cfg.eval.max_examples = scale.eval_max_examples
        return cfg

    def config(self, scale: str, point: str, stage: str) -> ml_collections.ConfigDict:
        """The training config of a point's `pretrain` or `finetune.<name>` stage."""
        p, s = self.point(point), self.scale(scale)
        if stage == "pretrain":
            return self.pretrain_config(p, s)
        if stage.startswith("finetune."):
            return self.finetune_config(p, s, self.finetune(scale, stage))
        raise ValueError(f"grid {self.name!r}: stage {stage!r} has no training config; training "
                         f"stages are pretrain and finetune.<name> ({self.stages(scale)})")

    def get_config(self, spec: str | None = None) -> ml_collections.ConfigDict:
        """ml_collections entry point: `spec` is 'scale=S,point=P,stage=pretrain|finetune.F'."""
        return self.config(**parse_spec(spec))

    def select(self, patterns: Sequence[str] = ()) -> list[Point]:
        """Points whose name matches any glob pattern (all when none are given)."""
        import fnmatch

        if not patterns:
            return list(self.points)
        chosen = [p for p in self.points if any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns)]
        if not chosen:
            raise KeyError(f"--only {','.join(patterns)} matches no point of grid {self.name!r}; "
                           f"points: {[p.name for p in self.points]}")
        return chosen


def load_grid(path: str | pathlib.Path) -> Grid:
    """The `GRID` a grid file defines."""
    grid = getattr(fileio.load_python_file(path, "grid"), "GRID", None)
    if not isinstance(grid, Grid):
        raise ValueError(f"{path}: expected GRID = t2t.sweep.grid.Grid(...), got "
                         f"{type(grid).__name__ if grid is not None else 'nothing'}")
    return grid
