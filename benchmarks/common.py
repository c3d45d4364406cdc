"""Shared pieces of the benchmarks: CLI flags, device choice, the device's peak, synthetic
batches in the batch-key contract (t2t/batch_spec.py), a jitted t2t train step, interleaved timing,
JSON records and a printed table.

Every benchmark alternates the things it compares inside one run (the machines it runs on are
shared and noisy) and reports the median of per-step times, so ratios are what to read.
"""
from __future__ import annotations

import argparse
import functools
import json
import pathlib
import statistics
import sys
import time
from typing import Callable, Sequence

try:
    import t2t  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from t2t import allocator

# A benchmark script run as __main__ (not a test importing it) runs under tcmalloc, as the
# entry points do; t2t and PyTorch share the process, so both sides get the same allocator.
if pathlib.Path(getattr(sys.modules["__main__"], "__file__", None) or "/").resolve().parent \
        == pathlib.Path(__file__).resolve().parent:
    allocator.reexec_with_tcmalloc()

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from t2t import batch_spec, pairing
from t2t.models import model as model_lib
from t2t.models.model import build_model
from t2t.train import metrics as metrics_lib
from t2t.train import optim
from t2t.train import step as step_lib


# ----------------------------------------------------------------------------- CLI / device
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=None, help="write the records here as a JSON list")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="cpu: the CPU configuration; gpu: the GPU configuration (bf16)")
    add_fast_compile(p)
    return p


def add_fast_compile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fast_compile", action="store_true",
                   help="compile with XLA's optimisation passes off (smoke tests only: the "
                        "timings are then not representative)")


# XLA options for every jit of the benchmarks; set by `use_fast_compile`.
_COMPILER_OPTIONS: dict = {}


def use_fast_compile(enabled: bool) -> None:
    _COMPILER_OPTIONS.clear()
    if enabled:
        _COMPILER_OPTIONS.update(xla_backend_optimization_level=0,
                                 xla_llvm_disable_expensive_passes=True)


def jit(fn, **kwargs):
    """jax.jit with the benchmarks' compiler options."""
    return jax.jit(fn, compiler_options=dict(_COMPILER_OPTIONS) or None, **kwargs)


def select_device(name: str, fast_compile: bool = False) -> jax.Device:
    """The first device of the requested platform; exits with a clear message when absent."""
    use_fast_compile(fast_compile)
    if name == "cpu":
        return jax.devices("cpu")[0]
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if not gpus:
        raise SystemExit("--device gpu: JAX sees no GPU on this machine (jax.devices('gpu') is "
                         "empty; install jax[cuda] on a GPU host); run with --device cpu instead")
    return gpus[0]


def peak_flops(device: jax.Device, repeats: int = 5, dtype: str = "float32") -> tuple[float, str]:
    """(peak FLOP/s, where it comes from): on CPU a `dtype` matmul measured now (bfloat16 runs
    twice as fast as float32 on CPUs with AVX512-BF16), else the datasheet bf16 peak."""
    if device.platform == "cpu":
        with jax.default_device(device):
            return (metrics_lib.measure_matmul_peak(repeats=repeats, dtype=jnp.dtype(dtype)),
                    f"measured {dtype} matmul (this run)")
    return metrics_lib.peak_flops_per_device(device), f"datasheet bf16 ({device.device_kind})"


# ----------------------------------------------------------------------------- batches
def converter_for(architecture: str, prefix_lm: bool = False) -> str:
    """The feature converter whose batches a benchmark feeds the architecture: decoder-only
    models get one causal-LM row of inputs + targets tokens, or a prefix-LM row."""
    if architecture == "decoder_only":
        return "prefix_lm" if prefix_lm else "lm"
    return model_lib.FEATURE_CONVERTERS[architecture][0]


def batch_lengths(converter: str, inputs_length: int, targets_length: int) -> dict[str, int]:
    if converter == "lm":
        return {"inputs": 0, "targets": inputs_length + targets_length}
    return {"inputs": inputs_length, "targets": targets_length}


def synthetic_batch(architecture: str, batch_size: int, inputs_length: int, targets_length: int,
                    vocab_size: int, seed: int = 0, prefix_lm: bool = False) -> dict:
    """Random non-padding tokens in the keys of the architecture's batch spec (numpy int32).

    Encoder-decoder: inputs_length encoder tokens, targets_length targets. Decoder-only: one
    sequence of inputs_length + targets_length tokens; with prefix_lm the first inputs_length
    are the fully visible prefix and the loss is on the targets, else the loss is on all.
    """
    rng = np.random.default_rng(seed)
    spec = batch_spec.get(converter_for(architecture, prefix_lm))
    shapes = spec.shapes(batch_lengths(spec.name, inputs_length, targets_length), batch_size)
    targets = rng.integers(2, vocab_size, shapes[spec.targets].shape).astype(np.int32)
    batch = {spec.targets: targets, spec.loss_weights: np.ones_like(targets)}
    if "decoder_input_tokens" in shapes:
        batch["decoder_input_tokens"] = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
    if "encoder_input_tokens" in shapes and "encoder_input_tokens" not in batch:
        batch["encoder_input_tokens"] = rng.integers(
            2, vocab_size, shapes["encoder_input_tokens"].shape).astype(np.int32)
    if spec.name == "prefix_lm":
        pos = np.arange(targets.shape[1])[None]
        batch["decoder_causal_attention"] = np.broadcast_to(
            pos <= inputs_length, targets.shape).astype(np.int32)
        batch[spec.loss_weights] = np.broadcast_to(
            pos >= inputs_length, targets.shape).astype(np.int32)
    return batch


def flops_per_step(cfg, batch_size: int, inputs_length: int, targets_length: int,
                   prefix_lm: bool = False) -> float:
    """Training matmul FLOPs of one step of `synthetic_batch`'s batches (t2t.pairing's count)."""
    converter = converter_for(cfg.architecture, prefix_lm)
    return pairing.flops_per_step(cfg, converter, batch_lengths(converter, inputs_length,
                                                                targets_length), batch_size)


# ----------------------------------------------------------------------------- t2t train step
def optimizer_config(name: str, learning_rate: float = 1e-3) -> ml_collections.ConfigDict:
    """A constant-rate optimizer config for t2t.train.optim (adafactor: T5's settings)."""
    return ml_collections.ConfigDict(dict(name=name, schedule="constant",
                                          learning_rate=learning_rate, warmup_steps=0))


def make_t2t_step(cfg, batch: dict, optimizer: str, device: jax.Device, *, seed: int = 0,
                  learning_rate: float = 1e-3):
    """(state, step) for t2t's train step: `state, metrics = step(state, batch)`.

    The step is t2t.train.step.train_step under jit with the state donated, exactly as the
    training loop runs it on one device (no z-loss, so it computes what HF's loss computes).
    """
    model = build_model(cfg)
    opt_cfg = optimizer_config(optimizer, learning_rate)
    tx = optim.make_optimizer(opt_cfg, stacked=optim.scanned_layers if cfg.scan_layers else None)
    schedule = optim.schedule(opt_cfg)
    with jax.default_device(device):
        batch = jax.device_put(batch, device)
        state = jit(lambda k: step_lib.init_state(nn.unbox(model.init(k, batch)), tx))(
            jax.random.key(seed))
        # Committed to the device like the step's outputs, so the second step does not compile
        # again for a different argument placement.
        state = jax.device_put(state, device)
        dropout_key = jax.device_put(jax.random.key(seed + 1), device)
    step = jit(functools.partial(step_lib.train_step, model=model, tx=tx, lr_schedule=schedule,
                                 z_loss=0.0), donate_argnums=(0,))
    return state, (lambda s, b: step(s, b, dropout_key)), batch


def param_count(params) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


# ----------------------------------------------------------------------------- timing
def interleave(fns: dict[str, Callable[[], None]], *, warmup: int, steps: int,
               warmup_times: dict | None = None, pause: float = 0.0) -> dict[str, list]:
    """Runs each fn `warmup` times, then `steps` rounds of one call each in turn (alternating,
    so load changes on a shared machine hit every side alike); returns seconds per call.
    `warmup_times`, when given, receives the warm-up calls' seconds (the first one compiles).
    `pause` seconds of idle (untimed) precede each timed call, so worker threads still spinning
    after one side's call (OpenMP's, XLA's) do not slow the other side's."""
    for _ in range(warmup):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if warmup_times is not None:
                warmup_times.setdefault(name, []).append(time.perf_counter() - start)
    times = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            time.sleep(pause)
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


# ----------------------------------------------------------------------------- output
def write_records(path: str | None, records: list[dict]) -> None:
    if path:
        pathlib.Path(path).write_text(json.dumps(records, indent=2) + "\n")


def print_table(records: list[dict], columns: Sequence[tuple[str, str, str]]) -> None:
    """columns: (record key, header, format spec); missing values print as '-'."""
    widths = [max(len(h), 10) for _, h, _ in columns]
    widths[0] = max([widths[0]] + [len(str(r.get(columns[0][0], ""))) for r in records])
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                    for i, ((_, h, _), w) in enumerate(zip(columns, widths))))
    for r in records:
        cells = []
        for i, ((key, _, fmt), w) in enumerate(zip(columns, widths)):
            v = r.get(key)
            text = "-" if v is None else format(v, fmt)
            cells.append(text.ljust(w) if i == 0 else text.rjust(w))
        print("  ".join(cells))
