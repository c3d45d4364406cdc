"""How long the training loop stalls per asynchronous Orbax save, against the step time.

  python benchmarks/checkpoint.py [--model t5_v1_1_small] [--batch_size 2] [--rounds 3]
      [--baseline_steps 2] [--overlap_steps 2] [--max_overlap_steps 8] [--cpu_saves 3]
      [--low_priority_writes auto|on|off] [--compress auto|on|off] [--dir DIR]
      [--device cpu|gpu] [--out FILE]

Runs t2t's jitted train step (Adafactor, state donated, as the loop runs it) and saves with
t2t.workdir.checkpointer.Checkpointer (asynchronous; train state + a Grain iterator's state + the
config, as the loop saves them). After compiling and one warm-up save: `--cpu_saves` standalone
saves, each followed by a wait for its write, with no step running; then the rounds. Each round:
`--baseline_steps` steps with no save in flight, one step followed by `Checkpointer.save`, then
at least `--overlap_steps` steps and more while the write is still running (up to
`--max_overlap_steps`), a wait for whatever is left of the write (not a stall: the loop saves
every thousands of steps, far apart), and `--baseline_steps` more steps with no save in flight.

A round's baseline `b` is the median of its steps before and after the save (a shared machine's
load drifts). Per round, as fractions of `b`:
  blocking: the time the loop is blocked per save, i.e. the save() call's duration; it includes
    any wait for a previous write still in flight (none here: each round waits for its write,
    as a loop saving thousands of steps apart never finds one in flight);
  overlap: the slowdown of the steps that overlap the write, i.e. sum(overlapping steps) -
    n_overlapping * b, floored at 0 (the write competes with the step for the CPU cores);
  stall = blocking + overlap (the issue asks < 0.1).
`blocking_fraction`, `overlap_fraction`, `stall_fraction` are the medians over rounds of each
(so the first two need not add up to the third); `step_seconds` the median of all baseline
steps. `save_cpu_seconds` is the median over the standalone saves of the process CPU time
(user + system, all threads) from the save() call to the end of the wait for its write: what a
save costs the cores wherever it runs; `save_cpu_user_seconds` its user part (the system part,
mostly copying the arrays into the page cache, varies more from run to run on a shared VM).
`checkpoint_bytes` is the size on disk of one step's folder (state, iterator state, config).
`write_seconds` is the save's duration from the call to the end of the step (or wait) at which
it was found finished (an upper bound, step resolution).
`overlap_writer_cpu_seconds` (Linux) is the CPU time of the threads that are neither XLA's
(`tf_XLAEigen`) nor the main thread, from the save() call to the end of the overlapping steps:
the write's share of the cores while the steps ran; `overlap_per_writer_cpu` = overlap seconds /
that CPU time, the step time lost per CPU-second the write takes (XLA's threads spin between
ops, so the write runs in short gaps, and an op whose thread lost its core waits on both).
`--low_priority_writes` and `--compress` set those Checkpointer options (auto: its default). CPU:
t5_v1_1_small in float32; GPU: t5_v1_1_base.
"""
from __future__ import annotations

import os
import resource
import shutil
import tempfile
import threading
import time

import common  # noqa: F401  (puts the checkout on sys.path)

import grain
import jax

from t2t.models import variants
from t2t.workdir.checkpointer import Checkpointer, thread_files


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _thread_cpu_seconds() -> dict[int, tuple[str, float]]:
    """{thread id: (kernel thread name, user + system CPU seconds)}; {} where /proc is absent."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for tid, stat in thread_files("stat").items():
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        out[tid] = (stat[stat.index("(") + 1:stat.rindex(")")],
                    (int(fields[11]) + int(fields[12])) / tick)
    return out


def _writer_cpu(before: dict, after: dict) -> float:
    """CPU seconds between two `_thread_cpu_seconds` readings of threads other than XLA's and
    the main thread (the save's Python and TensorStore threads)."""
    main = threading.main_thread().native_id
    return sum(cpu - before.get(tid, (name, 0.0))[1] for tid, (name, cpu) in after.items()
               if tid != main and not name.startswith("tf_XLA"))


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path)
               for f in files)


def measure(cfg, batch_size: int, device, directory: str, *, rounds: int, baseline_steps: int,
            overlap_steps: int, max_overlap_steps: int, cpu_saves: int,
            low_priority_writes: bool | None, compress: bool | None):
    """Per-round timings (seconds) of baseline steps, save calls, overlapping steps, the wait for
    the write still running after them, and the write's duration (upper bound); the process CPU
    seconds of standalone saves and the size of a checkpoint."""
    batch = common.synthetic_batch(cfg.architecture, batch_size, 512, 114, cfg.vocab_size)
    state, step, jbatch = common.make_t2t_step(cfg, batch, "adafactor", device)
    data_iter = iter(grain.MapDataset.range(10**6).batch(batch_size).to_iter_dataset())
    holder = [state]

    def train():
        next(data_iter)
        holder[0], metrics = step(holder[0], jbatch)
        jax.block_until_ready((holder[0], metrics))

    options = {} if compress is None else {"compress": compress}
    checkpointer = Checkpointer(directory, keep=2, async_save=True,
                                low_priority_writes=low_priority_writes, **options)
    config = {"model": cfg.to_dict(), "batch_size": batch_size}
    out = {"baseline": [], "save_call": [], "overlap": [], "wait": [], "write": [], "writer_cpu": [],
           "save_cpu": [], "low_priority_writes": checkpointer.low_priority_writes,
           "compress": checkpointer.compress}
    try:
        train(), train()  # compile; then one save to warm Orbax up (directories, threads)
        checkpointer.save(0, holder[0], data_iter, config)
        checkpointer.wait()
        for s in range(1, cpu_saves + 1):  # standalone: no step competes, so CPU time is the save's
            user, system = _cpu_seconds()
            checkpointer.save(s, holder[0], data_iter, config)
            checkpointer.wait()
            out["save_cpu"].append([a - b for a, b in zip(_cpu_seconds(), (user, system))])
        out["checkpoint_bytes"] = _folder_bytes(os.path.join(checkpointer.directory, str(cpu_saves)))
        for r in range(cpu_saves + 1, cpu_saves + rounds + 1):
            before = [_timed(train) for _ in range(baseline_steps)]
            train()
            threads, start = _thread_cpu_seconds(), time.perf_counter()
            checkpointer.save(r, holder[0], data_iter, config)
            out["save_call"].append(time.perf_counter() - start)
            steps, done_at = [], None
            while len(steps) < max_overlap_steps and (
                    len(steps) < overlap_steps or checkpointer.saving()):
                steps.append(_timed(train))
                if done_at is None and not checkpointer.saving():
                    done_at = time.perf_counter()
            out["overlap"].append(steps)
            if threads:
                out["writer_cpu"].append(_writer_cpu(threads, _thread_cpu_seconds()))
            out["wait"].append(_timed(checkpointer.wait))
            out["write"].append((done_at or time.perf_counter()) - start)
            out["baseline"].append(before + [_timed(train) for _ in range(baseline_steps)])
    finally:
        checkpointer.close()
    return out, common.param_count(holder[0].params)


def summarise(name: str, cfg, params: int, t: dict, batch_size: int, device) -> dict:
    # Each round against its own baseline (steps just before and after it), so that a shared
    # machine's load drifting between rounds does not count as (or hide) a stall.
    bases = [common.median(steps) for steps in t["baseline"]]
    base = common.median([x for steps in t["baseline"] for x in steps])
    blocking = t["save_call"]
    overlap = [max(0.0, sum(steps) - b * len(steps)) for steps, b in zip(t["overlap"], bases)]
    stalls = [call + more for call, more in zip(blocking, overlap)]

    def fractions(xs):
        return [x / b for x, b in zip(xs, bases)]

    return {"name": name, "params": params, "dtype": cfg.dtype, "batch_size": batch_size,
            "device": device.device_kind, "step_seconds": base,
            "save_call_seconds": common.median(blocking),
            "overlap_extra_seconds": common.median(overlap),
            "stall_seconds": common.median(stalls),
            "blocking_fraction": common.median(fractions(blocking)),
            "overlap_fraction": common.median(fractions(overlap)),
            "stall_fraction": common.median(fractions(stalls)),
            "save_cpu_seconds": (common.median([sum(c) for c in t["save_cpu"]])
                                 if t["save_cpu"] else None),
            "save_cpu_user_seconds": (common.median([c[0] for c in t["save_cpu"]])
                                      if t["save_cpu"] else None),
            "checkpoint_bytes": t.get("checkpoint_bytes"),
            "wait_after_overlap_seconds": common.median(t["wait"]),
            "overlap_writer_cpu_seconds": (common.median(t["writer_cpu"])
                                           if t["writer_cpu"] else None),
            "overlap_per_writer_cpu": (common.median([o / c for o, c in zip(overlap, t["writer_cpu"])
                                                      if c > 0]) if t["writer_cpu"] else None),
            "write_seconds": common.median(t["write"]),
            "low_priority_writes": t["low_priority_writes"], "compress": t["compress"],
            "baseline_steps": t["baseline"],
            "save_calls": t["save_call"], "overlap_steps": t["overlap"], "writes": t["write"],
            "save_cpu_user_system_seconds": t["save_cpu"], "stalls": stalls,
            "blocking_fractions": fractions(blocking), "overlap_fractions": fractions(overlap),
            "stall_fractions": fractions(stalls)}


COLUMNS = [("name", "model", ""), ("step_seconds", "step s", ".3f"),
           ("save_call_seconds", "save() s", ".3f"), ("overlap_extra_seconds", "overlap +s", ".3f"),
           ("blocking_fraction", "block/step", ".3f"), ("overlap_fraction", "overlap/step", ".3f"),
           ("stall_fraction", "stall/step", ".3f"), ("save_cpu_seconds", "save CPU s", ".2f"),
           ("save_cpu_user_seconds", "of it user s", ".2f"),
           ("overlap_writer_cpu_seconds", "writer CPU s", ".2f"),
           ("overlap_per_writer_cpu", "overlap/CPU", ".2f"),
           ("checkpoint_mb", "ckpt MB", ".1f"),
           ("write_seconds", "write s", ".2f"), ("wait_after_overlap_seconds", "write left s", ".2f"),
           ("low_priority_writes", "low prio", ""), ("compress", "compress", "")]


def main(argv=None) -> list[dict]:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="variant (default t5_v1_1_small; gpu: base)")
    p.add_argument("--batch_size", type=int, default=0, help="default 2 on cpu, 32 on gpu")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--baseline_steps", type=int, default=2, help="per round")
    p.add_argument("--overlap_steps", type=int, default=2, help="at least, per round")
    p.add_argument("--max_overlap_steps", type=int, default=8,
                   help="at most, per round, while the write is still running")
    p.add_argument("--cpu_saves", type=int, default=3,
                   help="standalone saves (no steps running) whose CPU time is measured")
    p.add_argument("--low_priority_writes", choices=["auto", "on", "off"], default="auto",
                   help="the Checkpointer option (auto: its default for this host)")
    p.add_argument("--compress", choices=["auto", "on", "off"], default="auto",
                   help="the Checkpointer option (auto: its default)")
    p.add_argument("--dir", default=None, help="checkpoint folder (default: a temporary one)")
    args = p.parse_args(argv)
    device = common.select_device(args.device, args.fast_compile)
    gpu = args.device == "gpu"
    name = args.model or ("t5_v1_1_base" if gpu else "t5_v1_1_small")
    cfg = variants.get_model_config(name, dtype="bfloat16" if gpu else "float32")
    batch_size = args.batch_size or (32 if gpu else 2)
    directory = args.dir or tempfile.mkdtemp(prefix="t2t_ckpt_bench_")
    choice = {"auto": None, "on": True, "off": False}
    try:
        times, params = measure(cfg, batch_size, device, directory, rounds=args.rounds,
                                baseline_steps=args.baseline_steps,
                                overlap_steps=args.overlap_steps,
                                max_overlap_steps=args.max_overlap_steps,
                                cpu_saves=args.cpu_saves,
                                low_priority_writes=choice[args.low_priority_writes],
                                compress=choice[args.compress])
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    records = [summarise(name, cfg, params, times, batch_size, device)]
    rows = [dict(r, checkpoint_mb=r["checkpoint_bytes"] / 1e6 if r["checkpoint_bytes"] else None)
            for r in records]
    print("stall = blocking (the save() call) + overlap (overlapping steps' time beyond the "
          "baseline step); save CPU = process CPU seconds of a standalone save + wait")
    common.print_table(rows, COLUMNS)
    common.write_records(args.out, records)
    return records


if __name__ == "__main__":
    main()
