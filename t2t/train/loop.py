"""The training loop, read top to bottom in the order data moves:

config -> mesh -> data (task/mixture -> objective -> converter -> Grain loader)
-> model -> optimizer -> state (init, init_from, or resume) -> jitted steps
-> loop (log, eval, checkpoint, preemption) -> metrics.jsonl + checkpoints.
"""
from __future__ import annotations

import dataclasses
import functools
import gc
import math
import pathlib
import signal
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from t2t import fileio, pairing, sharding
from t2t import workdir as layout
from t2t.data import pipeline
from t2t.models import variants
from t2t.models.model import build_model
from t2t.train import finetune, optim
from t2t.train import metrics as metrics_lib
from t2t.train import step as step_lib
from t2t.workdir import checkpointer as ckpt_lib
from t2t.workdir import restore


class NonFiniteLossError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- data
def make_datasets(cfg, data: pairing.RunData, shard):
    """(train loader, a function making a fresh eval loader) for the run's data."""
    common = dict(sequence_length=data.lengths, global_batch_size=cfg.data.batch_size,
                  converter=data.converter, pack=cfg.data.pack, seed=cfg.seed,
                  data_dir=cfg.data.data_dir or None, vocabulary=data.vocab_override,
                  shard=shard, num_shards=cfg.data.num_shards)
    train = pipeline.get_dataset(data.task, cfg.data.split, shuffle=True, num_epochs=None,
                                 num_workers=cfg.data.num_workers, **common)

    def make_eval():
        return pipeline.get_dataset(data.task, cfg.data.eval_split, shuffle=False,
                                    num_epochs=None, **common)
    return train, make_eval


class _Preemption:
    """Turns SIGTERM into a flag the loop checks at step boundaries."""

    def __init__(self):
        self.requested = False
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._previous = None

    def _handle(self, signum, frame):
        self.requested = True

    def restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _global_batch(local: dict, batch_sharding) -> dict:
    return {k: jax.make_array_from_process_local_data(batch_sharding, np.asarray(v))
            for k, v in local.items()}


def _check_finite(step: int, metrics: dict) -> None:
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        raise NonFiniteLossError(
            f"loss is {loss} at step {step}: stopping; the last good checkpoint is kept untouched")


# ----------------------------------------------------------------------------- main
# Config fields that count steps or rows: (key, the smallest value that makes sense).
COUNTS = (("train.num_steps", 1), ("train.log_every", 1), ("checkpoint.every_steps", 1),
          ("train.eval_every", 0), ("train.eval_steps", 0), ("train.num_microbatches", 1),
          ("data.batch_size", 1), ("checkpoint.keep", 1))


def check_counts(cfg) -> None:
    """A ValueError naming the key when a step or row count is out of range (zero log or
    checkpoint intervals would divide by zero mid-run; zero steps would train nothing)."""
    for key, minimum in COUNTS:
        section, field = key.split(".")
        value = cfg[section][field]
        if not isinstance(value, int) or value < minimum:
            raise ValueError(f"{key}={value!r}: expected an integer >= {minimum}")


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains (or resumes) the run described by `cfg` in `workdir`; returns the last metrics."""
    workdir = pathlib.Path(workdir).absolute()
    check_counts(cfg)
    primary = jax.process_index() == 0
    if primary:
        workdir.mkdir(parents=True, exist_ok=True)
        fileio.atomic_write_text(layout.config_path(workdir),
                                 cfg.to_json_best_effort(indent=2, sort_keys=True))

    # ---- mesh
    mesh = sharding.make_mesh(cfg.mesh.to_dict())
    batch_sharding = sharding.batch_sharding(mesh)

    # ---- data: task/mixture -> objective -> converter -> Grain loader, one shard per process
    model_cfg = variants.from_run_config(cfg)
    data = pairing.resolve(cfg, model_cfg)  # task, converter, lengths; checks the pairing
    _log(primary, f"data: {data.task.name}"
         + (f" {data.objective}" if data.objective else "")
         + f" -> {data.converter} batches, lengths {data.lengths}, "
           f"{model_cfg.architecture} model")
    train_ds, make_eval = make_datasets(cfg, data, (jax.process_index(), jax.process_count()))
    train_iter = iter(train_ds)
    shapes = data.batch_shapes(cfg.data.batch_size, cfg.data.pack)

    # ---- model and optimizer
    model = build_model(model_cfg)
    tx = optim.make_optimizer(cfg.optimizer,
                              stacked=optim.scanned_layers if model_cfg.scan_layers else None)

    # ---- state: shardings from the logical annotations, then resume / init_from / init
    shardings = state_shardings(model, tx, shapes, mesh, jax.random.key(cfg.seed))
    checkpointer = ckpt_lib.Checkpointer(layout.checkpoints_dir(workdir), keep=cfg.checkpoint.keep,
                                         keep_every=cfg.checkpoint.keep_every or None,
                                         async_save=cfg.checkpoint.async_save)
    with mesh, sharding.rules_context(mesh):
        state, start = initial_state(cfg, model, model_cfg, tx, shardings, checkpointer, train_iter,
                                     primary)

        # ---- jitted steps
        train_step = jax.jit(
            functools.partial(step_lib.train_step, model=model, tx=tx,
                              lr_schedule=optim.schedule(cfg.optimizer),
                              num_microbatches=cfg.train.num_microbatches, z_loss=cfg.train.z_loss,
                              label_smoothing=cfg.train.label_smoothing),
            in_shardings=(shardings.state, batch_sharding, shardings.replicated),
            out_shardings=(shardings.state, shardings.replicated), donate_argnums=(0,))
        eval_step = jax.jit(functools.partial(step_lib.eval_step, model=model),
                            in_shardings=(shardings.state.params, batch_sharding),
                            out_shardings=shardings.replicated)
        task_eval = finetune.TaskEvaluation.from_config(cfg, model, model_cfg, data.vocab, workdir,
                                                        sharding=batch_sharding, primary=primary)

        # ---- the loop: log, evaluate, checkpoint, stop on SIGTERM
        run = _Run(cfg=cfg, workdir=workdir, primary=primary, train_iter=train_iter,
                   make_eval=make_eval, batch_sharding=batch_sharding, train_step=train_step,
                   eval_step=eval_step, task_eval=task_eval, checkpointer=checkpointer,
                   flops_per_step=pairing.flops_per_step(model_cfg, data.converter, data.lengths,
                                                         cfg.data.batch_size),
                   tokens_per_step=cfg.data.batch_size * data.spec.tokens_per_row(data.lengths),
                   compute_dtype=model_cfg.dtype)
        return run_loop(run, state, start)


@dataclasses.dataclass(frozen=True)
class Shardings:
    state: step_lib.TrainState          # a TrainState of NamedShardings
    abstract_state: step_lib.TrainState  # a TrainState of ShapeDtypeStructs
    example: dict                        # a one-row batch for model.init
    init_key: jax.Array
    replicated: Any


def state_shardings(model, tx, shapes, mesh, init_key) -> Shardings:
    """Shapes and shardings of the train state, derived with eval_shape (nothing allocated)."""
    example = {k: jnp.zeros((1,) + s.shape[1:], s.dtype) for k, s in shapes.items()}
    boxed = jax.eval_shape(model.init, init_key, example)
    params_sh = sharding.param_shardings(boxed, mesh)
    abstract_params = nn.unbox(boxed)
    abstract_state = jax.eval_shape(lambda p: step_lib.init_state(p, tx), abstract_params)
    repl = sharding.replicated(mesh)
    opt_sh = sharding.state_shardings(abstract_state.opt_state, abstract_params, params_sh, mesh)
    return Shardings(step_lib.TrainState(step=repl, params=params_sh, opt_state=opt_sh),
                     abstract_state, example, init_key, repl)


def initial_state(cfg, model, model_cfg, tx, sh: Shardings, checkpointer, train_iter, primary):
    """(state, step): the latest checkpoint (iterator restored too), else init_from, else init."""
    start = checkpointer.latest_step()
    if start is not None:
        abstract = ckpt_lib.abstract_with_shardings(sh.abstract_state, sh.state)
        state = checkpointer.restore(start, abstract, train_iter)
        _log(primary, f"resumed from step {start} in {checkpointer.directory}")
        return state, start
    init_state = jax.jit(lambda p: step_lib.init_state(p, tx), out_shardings=sh.state)
    if cfg.init_from:  # fine-tuning: pretrained params, a fresh optimizer state
        restore.check_init_from(cfg.init_from, model_cfg)
        params = restore.load_params(cfg.init_from, sh.abstract_state.params, sh.state.params)
        _log(primary, f"initialised params from {cfg.init_from}")
        return init_state(params), 0
    init = jax.jit(lambda k: step_lib.init_state(nn.unbox(model.init(k, sh.example)), tx),
                   out_shardings=sh.state)
    return init(sh.init_key), 0


@dataclasses.dataclass
class _Run:
    cfg: Any
    workdir: pathlib.Path
    primary: bool
    train_iter: Any
    make_eval: Any
    batch_sharding: Any
    train_step: Any
    eval_step: Any
    task_eval: Any
    checkpointer: ckpt_lib.Checkpointer
    flops_per_step: float
    tokens_per_step: int
    compute_dtype: str  # the model's, for the CPU matmul peak MFU is taken against


def run_loop(run: _Run, state, start: int) -> dict[str, Any]:
    """Steps from `start` to train.num_steps; one host sync per step (the previous loss)."""
    cfg = run.cfg
    writer = metrics_lib.MetricsWriter(run.workdir, run.primary)
    preemption = _Preemption()
    bar = metrics_lib.progress_bar(cfg.train.num_steps, start)
    dropout_key = jax.random.key(cfg.seed + 1)
    history, last, step, t_log = [], {}, start, time.perf_counter()
    # The long-lived objects of the setup (modules, configs, JAX's caches) out of the garbage
    # collector's scans: each full collection (frequent while Orbax saves) rescanned them.
    gc.collect()
    gc.freeze()
    try:
        while step < cfg.train.num_steps:
            batch = _global_batch(next(run.train_iter), run.batch_sharding)
            state, m = run.train_step(state, batch, dropout_key)
            if history:
                _check_finite(step, history[-1])  # previous step: already computed
            history.append(m)
            step += 1
            bar.update(1)
            if step % cfg.train.log_every == 0 or step == cfg.train.num_steps:
                _check_finite(step, m)
                seconds = (time.perf_counter() - t_log) / len(history)
                last = _summarise(history, seconds, run.tokens_per_step, run.flops_per_step,
                                  run.compute_dtype)
                record = writer.write(step, last, "train")
                bar.set_postfix(loss=f"{record['loss']:.3f}")
                _log(run.primary, _line(record))
                history, t_log = [], time.perf_counter()
            if cfg.train.eval_every and step % cfg.train.eval_every == 0:
                _periodic_eval(run, step, state, writer)
                t_log = time.perf_counter()
            due = step % cfg.checkpoint.every_steps == 0 or step == cfg.train.num_steps
            if due or preemption.requested:
                _check_finite(step, m)
                run.checkpointer.save(step, state, run.train_iter, cfg.to_dict())
            if preemption.requested:
                _log(run.primary, f"SIGTERM: saved a checkpoint at step {step}; exiting")
                break
    finally:
        gc.unfreeze()
        preemption.restore()
        bar.close()
        run.checkpointer.close()
        writer.close()
    return {"step": step, **{k: float(v) for k, v in last.items()}}


def _periodic_eval(run: _Run, step: int, state, writer) -> None:
    if run.cfg.train.eval_steps:
        ev = evaluate_loss(run.eval_step, state.params, run.make_eval(), run.cfg.train.eval_steps,
                           run.batch_sharding)
        _log(run.primary, _line(writer.write(step, ev, "validation")))
    if run.task_eval:  # GLUE/SuperGLUE-style metrics; keeps <workdir>/best/
        _log(run.primary, run.task_eval(step, state.params, writer))


def evaluate_loss(eval_step, params, dataset, num_batches: int, batch_sharding) -> dict:
    totals = None
    for batch in _take(iter(dataset), num_batches):
        out = eval_step(params, _global_batch(batch, batch_sharding))
        totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
    totals = jax.device_get(totals)
    n = max(float(totals["num_tokens"]), 1.0)
    return {"loss": float(totals["loss_sum"]) / n, "accuracy": float(totals["correct"]) / n,
            "num_tokens": int(totals["num_tokens"])}


def _take(iterator, n):
    for _ in range(n):
        try:
            yield next(iterator)
        except StopIteration:
            return


def _summarise(history, seconds_per_step, tokens_per_step, flops, dtype) -> dict:
    host = jax.device_get(history)
    out = {k: float(np.mean([h[k] for h in host])) for k in host[-1] if k != "num_tokens"}
    out["learning_rate"] = float(host[-1]["learning_rate"])
    out["seconds_per_step"] = seconds_per_step
    out["tokens_per_second"] = tokens_per_step / seconds_per_step
    out["mfu"] = metrics_lib.mfu(flops, seconds_per_step, dtype)
    return out


def _line(record: dict) -> str:
    keys = ("loss", "accuracy", "learning_rate", "tokens_per_second", "mfu")
    parts = [f"{k}={record[k]:.4g}" for k in keys if k in record]
    return f"[{record['split']}] step {record['step']}: " + " ".join(parts)


def _log(enabled: bool, message: str) -> None:
    if enabled:
        from tqdm import tqdm
        tqdm.write(message)
