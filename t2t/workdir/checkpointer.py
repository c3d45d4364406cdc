"""Checkpoints on Orbax: train state, the Grain iterator state and the resolved config.

Saves are asynchronous; Orbax writes each step into a temporary folder and
renames it when complete, so a run killed mid-save resumes from the last
complete checkpoint. Restoring takes abstract arrays that carry the target
shardings, so a checkpoint restores onto any mesh.

On a CPU-only host the write shares the cores with XLA's step, so by default
(`low_priority_writes`) the save runs at the lowest CPU priority: a step that
overlaps the write loses little time to it, and the write finishes in the gaps
XLA leaves; and the arrays are written uncompressed (`compress`), which cuts
the CPU time a save costs by about a third. See `Checkpointer` for how.
"""
from __future__ import annotations

import json
import os
import queue
import sys
import threading
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

# Lowest nice value; per thread on Linux (setpriority on a thread id affects that thread only).
_LOWEST_NICE = 19
# TensorStore's C++ pool threads (comm names) do Orbax's array writes and compression.
_WRITER_COMM_PREFIXES = ("ts_",)
# XLA's and the compiler's threads: never lowered (they run the train step).
_PROTECTED_COMM_PREFIXES = ("tf_", "XLA", "xla", "llvm", "pjrt", "PjRt")


class _IteratorSnapshot:
    """The iterator's state captured at save time (the loop moves on during async saves)."""

    def __init__(self, iterator):
        self._state = json.dumps(iterator.get_state(), indent=1).encode()

    def get_state(self) -> bytes:
        return self._state


# ----------------------------------------------------------------------------- thread priority
def priorities_supported() -> bool:
    """Whether per-thread CPU priorities can be set here (Linux: /proc/self/task and setpriority)."""
    return sys.platform.startswith("linux") and os.path.isdir("/proc/self/task") \
        and hasattr(os, "setpriority")


def lower_thread_priority(tid: int) -> bool:
    """Sets thread `tid` to nice 19 and, where allowed, SCHED_IDLE; False if it is gone.

    SCHED_IDLE threads run only when no normal thread wants the core, and lose the core at once
    when one wakes (nice 19 alone still takes a share and wakes later). Both only lower the
    priority, so no privilege is needed.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, tid, _LOWEST_NICE)
    except (ProcessLookupError, PermissionError):
        return False
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except OSError:  # gone meanwhile, or not permitted: nice 19 stays
            pass
    return True


def thread_files(name: str) -> dict[int, str]:
    """{thread id: text of /proc/self/task/<id>/<name>} for this process's threads ("comm",
    "stat", ...); {} where /proc is absent. Threads that exit meanwhile are left out."""
    out = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/{name}") as f:
                out[int(tid)] = f.read()
        except OSError:
            continue  # the thread exited meanwhile
    return out


def _thread_comms() -> dict[int, str]:
    """{thread id: kernel thread name} of this process; {} where /proc is absent."""
    return {tid: text.strip() for tid, text in thread_files("comm").items()}


def _orbax_python_threads() -> set[int]:
    """Native ids of Python threads currently running Orbax code (found from their stacks)."""
    frames = sys._current_frames()  # noqa: SLF001  (the documented way to see other threads)
    ids = set()
    for thread in threading.enumerate():
        frame = frames.get(thread.ident)
        while frame is not None:
            if "orbax" in frame.f_code.co_filename:
                ids.add(thread.native_id)
                break
            frame = frame.f_back
    return ids


def lower_writer_threads() -> list[int]:
    """Lowers the priority of TensorStore's pool threads and Python threads running Orbax code.

    Never touches the main thread or XLA's/LLVM's threads. Returns the thread ids lowered; a
    no-op (empty) where per-thread priorities are not supported.
    """
    if not priorities_supported():
        return []
    main = threading.main_thread().native_id
    comms = _thread_comms()
    wanted = {tid for tid, comm in comms.items() if comm.startswith(_WRITER_COMM_PREFIXES)}
    wanted |= _orbax_python_threads()
    lowered = []
    for tid in sorted(wanted):
        comm = comms.get(tid, "")
        if tid == main or comm.startswith(_PROTECTED_COMM_PREFIXES):
            continue
        if lower_thread_priority(tid):
            lowered.append(tid)
    return lowered


# ----------------------------------------------------------------------------- pinning
def _on_cpu(tree) -> bool:
    """True when every jax.Array leaf lives on CPU devices only."""
    return all(d.platform == "cpu" for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)
               for d in x.sharding.device_set)


def _pin_host_buffers(tree) -> list[np.ndarray]:
    """Zero-copy NumPy views of every CPU buffer in `tree`.

    While a view exists XLA cannot reuse that buffer for a donated argument (the donation falls
    back to a fresh buffer), so the arrays keep their values until Orbax has taken its own views,
    even if the loop runs (donating) steps meanwhile. Nothing is copied.
    """
    return [np.asarray(shard.data) for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)
            for shard in x.addressable_shards]


class _LowPriorityWorker:
    """One thread at the lowest priority that runs submitted calls in order (Orbax's save calls).

    Started once, up front: starting a thread per save would make the caller wait for the new,
    low-priority thread to be scheduled (Thread.start's handshake needs the GIL back from it).
    """

    def __init__(self, name: str):
        self._jobs: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        lower_thread_priority(threading.get_native_id())
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except BaseException as e:  # noqa: BLE001  (re-raised on the caller's thread)
                self._error = e
            finally:
                self._jobs.task_done()

    def submit(self, job) -> None:
        self._jobs.put(job)

    def busy(self) -> bool:
        return self._jobs.unfinished_tasks > 0

    def join(self) -> BaseException | None:
        """Waits until every submitted call returned; the first error since the last join."""
        self._jobs.join()
        error, self._error = self._error, None
        return error

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()


# ----------------------------------------------------------------------------- checkpointer
def _state_handler(compress: bool) -> ocp.PyTreeCheckpointHandler:
    """What StandardCheckpointHandler builds (it wraps this handler, same format on disk), with
    the compression choice it does not expose."""
    return ocp.PyTreeCheckpointHandler(save_concurrent_gb=96, restore_concurrent_gb=96,
                                       use_compression=compress)


class Checkpointer:
    """Keep-N and keep-every-K checkpoints of (state, data iterator, config) in `directory`.

    `low_priority_writes` (default: on when JAX runs on CPU and the OS has per-thread priorities,
    i.e. Linux; elsewhere a no-op) makes an asynchronous save cheap for a loop that shares the
    CPU with the write:

    * `save()` only snapshots the iterator state and pins the arrays' host buffers (zero-copy,
      ~5-20 ms), then hands Orbax's save call, whose own blocking part walks the 763-array tree
      in Python (0.1-0.5 s), to one background thread; single-process CPU runs only: on other
      hosts Orbax is called directly (an accelerator's device-to-host copy must finish before
      the step donates the buffers).
    * that thread runs at nice 19 + SCHED_IDLE, so the threads Orbax and TensorStore start from
      it inherit the priority (it also lowers TensorStore's pool threads and any thread running
      Orbax code, in case they were started elsewhere, e.g. by a restore). XLA's threads keep the
      cores; the write fills the gaps they leave and takes longer in wall time.

    Checkpoints stay atomic (Orbax's temporary folder + rename) and identical in content.
    TensorStore's thread pool is process-wide: if a normal-priority save ran earlier in the same
    process, its pool threads are lowered at each save, but pool threads they start during a
    write run at their (normal) priority until the next save lowers them.

    `compress` (default off) writes the arrays with zstd, Orbax's default. Off, because float32
    weights and optimizer moments barely compress while zstd costs CPU time that steps
    overlapping the write lose (benchmarks/RESULTS.md). Either way
    the format is Orbax's PyTree checkpoint (zarr arrays in OCDBT; StandardCheckpointHandler,
    used before, wraps the same handler): each array records its own codec, so compressed and
    uncompressed checkpoints restore alike.
    """

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, keep_every: int | None = None,
                 async_save: bool = True, low_priority_writes: bool | None = None,
                 compress: bool = False):
        self.directory = os.path.abspath(os.fspath(directory))
        if low_priority_writes is None:
            low_priority_writes = jax.default_backend() == "cpu" and priorities_supported()
        self.low_priority_writes = bool(low_priority_writes) and priorities_supported()
        self.compress = compress
        self._worker = (_LowPriorityWorker("t2t_checkpoint_save")
                        if async_save and self.low_priority_writes else None)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, keep_period=keep_every or None,
            enable_async_checkpointing=async_save, create=True)
        self._manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={"state": _state_handler(compress),
                           "data": grain.checkpoint.CheckpointHandler(),
                           "config": ocp.JsonCheckpointHandler()})

    def latest_step(self) -> int | None:
        self._join_submit()
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        self._join_submit()
        return list(self._manager.all_steps())

    def save(self, step: int, state, data_iterator=None, config: dict | None = None) -> None:
        """Starts saving `state` (and the iterator's state, the config) as `step`; returns early
        when asynchronous. Waits first for the previous save to be handed to Orbax."""
        self._join_submit()
        items = {"state": ocp.args.PyTreeSave(state)}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(_IteratorSnapshot(data_iterator))
        if config is not None:
            items["config"] = ocp.args.JsonSave(config)
        args = ocp.args.Composite(**items)
        if self._worker is None or jax.process_count() != 1 or not _on_cpu(state):
            self._manager.save(step, args=args, force=True)
            return
        pins = _pin_host_buffers(state)

        def submit():  # on the worker: Orbax's threads started from here inherit its priority
            self._manager.save(step, args=args, force=True)
            pins.clear()  # Orbax holds its own host views of the arrays from here on
            lower_writer_threads()

        self._worker.submit(submit)

    def _join_submit(self) -> None:
        """Waits for the background save call; re-raises its error here."""
        error = self._worker.join() if self._worker is not None else None
        if error is not None:
            raise RuntimeError(f"checkpoint save in {self.directory} failed: {error}") from error

    def restore(self, step: int, abstract_state, data_iterator=None) -> Any:
        """The state at `step`, laid out as `abstract_state`'s shardings; restores the iterator too."""
        self._join_submit()
        items = {"state": ocp.args.PyTreeRestore(
            abstract_state, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state))}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"]

    def restore_config(self, step: int) -> dict:
        self._join_submit()
        return self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

    def saving(self) -> bool:
        """Whether a save is still being handed to Orbax or written (does not block)."""
        return ((self._worker is not None and self._worker.busy())
                or self._manager.is_saving_in_progress())

    def wait(self) -> None:
        """Blocks until the last save is complete on disk."""
        self._join_submit()
        self._manager.wait_until_finished()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._worker is not None:
                self._worker.close()
                self._worker = None
            self._manager.close()


def abstract_with_shardings(tree, shardings):
    """ShapeDtypeStructs carrying target shardings, for restoring onto a mesh."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
