"""Training metrics: JSONL + TensorBoard in the workdir, a progress bar, and MFU.

MFU = achieved model FLOPs per second / peak FLOPs of the hardware that ran them.
Model FLOPs per step = `t2t.models.variants.flops_per_token` (training FLOPs:
3x the forward matmul FLOPs, attention included, per target token) x target
tokens per step (padding included, as the hardware computes it). Accelerators:
the dense bf16 datasheet peak per device x devices. CPU: the host's measured
matmul peak in the model's compute dtype (float32 accumulation) x hosts, as all
of a host's CPU devices share its cores; measured in each process and cached in
~/.cache/t2t as the best reading the host has given (a reading taken while other
work shares the cores can only be lower, so it never replaces a higher one).
"""
from __future__ import annotations

import json
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from t2t import fileio
from t2t import workdir as layout

# Dense bf16 peak FLOP/s per chip, from vendor datasheets.
PEAK_FLOPS = {
    "TPU v2": 45e12, "TPU v3": 123e12, "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12,
    "TPU v5p": 459e12, "TPU v5": 459e12, "TPU v6 lite": 918e12, "TPU v6e": 918e12,
    "NVIDIA H100": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100": 312e12, "NVIDIA L4": 121e12,
    "NVIDIA A10G": 125e12, "NVIDIA V100": 125e12,
}


def _cpu_peak_cache() -> pathlib.Path:
    return pathlib.Path(os.environ.get("T2T_CACHE_DIR", "~/.cache/t2t")).expanduser() / "cpu_peak.json"


def measure_matmul_peak(n: int = 1024, repeats: int = 5, dtype=jnp.float32) -> float:
    """Best matmul FLOP/s of one device in `dtype` (float32 accumulation; the CPU 'peak')."""
    x = jnp.ones((n, n), dtype)
    f = jax.jit(lambda a: jnp.matmul(a, a, preferred_element_type=jnp.float32))
    f(x).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(x).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def peak_flops_per_device(device=None, dtype="float32") -> float:
    """Datasheet dense bf16 peak of an accelerator; on CPU the host's `cpu_peak_flops` in
    `dtype` (the whole host: its CPU devices share the cores); NaN for unknown accelerators."""
    device = device or jax.devices()[0]
    kind = device.device_kind
    for name, peak in PEAK_FLOPS.items():
        if kind.startswith(name) or name in kind:
            return peak
    if device.platform != "cpu":
        return float("nan")
    return cpu_peak_flops(dtype)


_CPU_PEAKS: dict[str, float] = {}  # this process's answer, per dtype


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def cpu_peak_flops(dtype="float32") -> float:
    """This host's matmul peak in `dtype` (FLOP/s, all cores): the best of this process's
    measurement and the cached best of earlier ones on the same CPU model and core count,
    worked out once per process and dtype; the cache keeps the maximum, written atomically."""
    name = jnp.dtype(dtype).name
    if name in _CPU_PEAKS:
        return _CPU_PEAKS[name]
    measured = measure_matmul_peak(dtype=jnp.dtype(dtype))
    cache = _cpu_peak_cache()
    key = f"{_cpu_model()}:{os.cpu_count()}:{name}"
    try:
        table = fileio.read_json(cache, default={})
    except (OSError, ValueError):
        table = {}
    best = max(measured, float(table.get(key, 0.0)))
    if table.get(key) != best:
        table[key] = best
        try:
            fileio.atomic_write_json(cache, table, indent=None)
        except OSError:
            pass  # a read-only home: the measurement still serves this process
    _CPU_PEAKS[name] = best
    return best


def mfu(flops_per_step: float, seconds_per_step: float, dtype="float32") -> float:
    """Model FLOPs utilisation of a step over all participating hardware: accelerators' peak
    per device x devices, or on CPU the host peak in `dtype` x hosts (processes)."""
    device = jax.devices()[0]
    units = jax.process_count() if device.platform == "cpu" else jax.device_count()
    return flops_per_step / seconds_per_step / (peak_flops_per_device(device, dtype) * units)


def _summary_writer(logdir: pathlib.Path):
    """tensorboardX's SummaryWriter, imported without PyTorch when the process has not loaded it:
    tensorboardX imports torch if installed only to accept torch tensors (we log floats), which
    cost every training process ~1 s and ~300 MB at start."""
    blocked = "torch" not in sys.modules
    if blocked:
        sys.modules["torch"] = None  # makes `import torch` raise ImportError
    try:
        from tensorboardX import SummaryWriter
    finally:
        if blocked:
            del sys.modules["torch"]
    return SummaryWriter(str(logdir))


class MetricsWriter:
    """Appends one JSON object per log step to <workdir>/metrics.jsonl and mirrors to TensorBoard.

    Only the primary process (process 0) writes.
    """

    def __init__(self, workdir: str | os.PathLike, primary: bool = True):
        self.primary = primary
        self.path = layout.metrics_path(workdir)
        self._tb = None
        if primary:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tb = _summary_writer(layout.tensorboard_dir(workdir))

    def write(self, step: int, values: dict, split: str = "train") -> dict:
        record = {"step": int(step), "split": split,
                  **{k: _scalar(v) for k, v in values.items()}}
        if self.primary:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
            for k, v in record.items():
                if k not in ("step", "split") and isinstance(v, (int, float)) and np.isfinite(v):
                    self._tb.add_scalar(f"{split}/{k}", v, step)
            self._tb.flush()
        return record

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _scalar(v):
    v = np.asarray(v)
    return float(v) if v.dtype.kind == "f" else int(v)


def progress_bar(total: int, initial: int):
    """A tqdm bar with ETA on a terminal; a silent stand-in otherwise."""
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, dynamic_ncols=True, disable=not sys.stderr.isatty(),
                unit="step")
