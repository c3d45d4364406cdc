"""Running a grid: every point's stages as commands, on this machine or on a TPU VM.

Layout of a sweep folder DIR (`--workdir`):

  DIR/sweep.json                    grid file, grid name, scale, backend, point names
  DIR/<point>/point.json            the point, its resolved stage configs and commands,
                                    parameter count and pretraining FLOPs per example
  DIR/<point>/pretrain/             t2t.train workdir (config.json, metrics.jsonl, checkpoints/)
  DIR/<point>/finetune/<name>/      t2t.train workdir; t2t.evaluate writes eval/<step>/ here
  DIR/<point>/stages/<stage>.json   written atomically when a stage exits 0: it is never rerun
  DIR/<point>/status.json           running (pids) / failed (return code, error tail) / done
  DIR/<point>/logs/<stage>.log      the stage's stdout and stderr, appended per attempt

Re-running the same command skips stages with a marker and reruns the others, which resume
from their last checkpoint (t2t.train resumes in place). A failed stage stops its point;
the other points go on. SIGTERM / SIGINT stop the sweep: running stages get SIGTERM (a
training run saves a checkpoint first) and are recorded as interrupted, not failed.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Mapping, Sequence

from t2t import fileio
from t2t import workdir as layout
from t2t.sweep import grid as grid_lib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
T5_VOCAB = pathlib.Path("vocab/t5_cc_all.32000/spiece.model")   # inside a data folder
ERROR_TAIL_LINES = 20


@dataclasses.dataclass(frozen=True)
class Stage:
    """One command of a point's pipeline."""

    point: str
    name: str                 # pretrain | finetune.<f> | evaluate.<f>
    module: str               # t2t.train | t2t.evaluate
    args: tuple[str, ...]     # after `python -m <module>`
    run_dir: str              # its training workdir relative to the sweep folder (evaluate:
                              # the one it scores), e.g. enc_dec.lm/finetune/rte_cb
    workers: str = "all"      # TPU VM workers: all (multi-host training) or 0 (evaluation)
    config: Mapping | None = None   # the resolved training config (None for evaluate)


# ----------------------------------------------------------------------------- planning
def repo_relative(path: pathlib.Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def plan_point(grid: grid_lib.Grid, grid_ref: str, scale: str, point: str, root: str, *,
               data_dir: str | None = None, vocab: str | None = None) -> list[Stage]:
    """The stages of `point` with paths under `root` (as the machine running them sees it)."""
    base = f"{grid_ref}:scale={scale},point={point},stage="
    common = [("data.data_dir", data_dir), ("data.vocab", vocab)]
    pretrain_dir = f"{root}/{point}/pretrain"
    stages = [_train_stage(grid, scale, point, "pretrain", base, root, "pretrain", common)]
    s = grid.scale(scale)
    for ft in s.finetunes:
        rel = f"finetune/{ft.name}"
        ft_dir = f"{root}/{point}/{rel}"
        stages.append(_train_stage(grid, scale, point, f"finetune.{ft.name}", base, root, rel,
                                   [("init_from", pretrain_dir), *common]))
        args = ["--workdir", ft_dir, "--tasks", ",".join(ft.eval_tasks), "--split", "validation"]
        if s.eval_checkpoint == "best":
            args += ["--checkpoint", f"{ft_dir}/{layout.BEST}"]
        if s.eval_max_examples:
            args += ["--max_examples", str(s.eval_max_examples)]
        if data_dir:
            args += ["--data_dir", data_dir]
        stages.append(Stage(point, f"evaluate.{ft.name}", "t2t.evaluate", tuple(args),
                            f"{point}/{rel}", workers="0"))
    return stages


def _train_stage(grid, scale, point, stage, base, root, rel, overrides) -> Stage:
    overrides = [(k, v) for k, v in overrides if v]
    cfg = grid.config(scale, point, stage)
    grid_lib.set_dotted(cfg, dict(overrides), f"stage {stage}")
    args = (["--config", base + stage, "--workdir", f"{root}/{point}/{rel}"]
            + [f"--config.{k}={v}" for k, v in overrides])
    return Stage(point, stage, "t2t.train", tuple(args), f"{point}/{rel}", config=cfg.to_dict())


def stage_finished(workdir, stage: Stage) -> bool:
    """Whether an exit-0 stage did all its work: a training run has its last checkpoint (a
    run stopped by SIGTERM saves an earlier step and exits 0 too)."""
    if stage.module != "t2t.train":
        return True
    steps = stage.config["train"]["num_steps"]
    return layout.checkpoint_dir(pathlib.Path(workdir) / stage.run_dir, steps).is_dir()


def default_vocab(data_dir: str | None) -> str | None:
    """T5's SentencePiece model inside the data folder, when it is there."""
    if data_dir and (pathlib.Path(data_dir) / T5_VOCAB).is_file():
        return str(pathlib.Path(data_dir) / T5_VOCAB)
    return None


# ----------------------------------------------------------------------------- backends
class LocalBackend:
    """Each stage as a subprocess of this machine's Python, run from the repository root."""

    name = "local"

    def __init__(self, python: str = sys.executable, jax_cache: str | None = None):
        self.python, self.cwd = python, str(REPO_ROOT)
        self.env = {"PYTHONUNBUFFERED": "1"}
        if jax_cache:  # compiled programs are shared between stages with the same shapes
            self.env.update(JAX_COMPILATION_CACHE_DIR=jax_cache,
                            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")

    def argv(self, stage: Stage) -> list[str]:
        return [self.python, "-m", stage.module, *stage.args]

    def describe(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return f"# local backend: each command runs in {self.cwd} with {env}"


class TpuVmBackend:
    """Each stage through `gcloud compute tpus tpu-vm ssh`: training on every worker (JAX's
    multi-host runtime joins them), evaluation on worker 0. Paths are the VM's: the repo
    checked out at `repo` and a sweep folder every worker and this machine share."""

    name = "tpu-vm"

    def __init__(self, tpu: str, zone: str, *, project: str | None = None, repo: str | None = None,
                 python: str = "python3"):
        if not tpu or not zone:
            raise ValueError("--backend tpu-vm needs --tpu NAME and --zone ZONE")
        self.tpu, self.zone, self.project = tpu, zone, project
        self.repo, self.python = repo or str(REPO_ROOT), python
        self.cwd, self.env = None, {}

    def remote_command(self, stage: Stage) -> str:
        return (f"cd {shlex.quote(self.repo)} && "
                + shlex.join([self.python, "-m", stage.module, *stage.args]))

    def argv(self, stage: Stage) -> list[str]:
        argv = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", self.tpu, "--zone", self.zone]
        if self.project:
            argv += ["--project", self.project]
        return argv + [f"--worker={stage.workers}", "--command", self.remote_command(stage)]

    def describe(self) -> str:
        return f"# tpu-vm backend: TPU VM {self.tpu} in {self.zone}, repository {self.repo}"


# ----------------------------------------------------------------------------- state files
def write_json(path: pathlib.Path, data) -> None:
    """Writes a sweep state file atomically (sorted keys; non-JSON values as strings)."""
    fileio.atomic_write_json(path, data, sort_keys=True, default=str)


def marker_path(workdir, point: str, stage: str) -> pathlib.Path:
    return pathlib.Path(workdir) / point / "stages" / f"{stage}.json"


def log_path(workdir, point: str, stage: str) -> pathlib.Path:
    return pathlib.Path(workdir) / point / "logs" / f"{stage}.log"


def pid_alive(pid: int | None, host: str | None) -> bool:
    """Whether process `pid` of this host still runs (False for other hosts' pids)."""
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def error_tail(path: pathlib.Path, lines: int = ERROR_TAIL_LINES) -> str:
    """The last `lines` non-empty lines of a log (progress-bar carriage returns split lines)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 64_000))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    kept = [line.rstrip() for line in text.replace("\r", "\n").split("\n") if line.strip()]
    return "\n".join(kept[-lines:])


def check_sweep_file(workdir: pathlib.Path, info: dict) -> None:
    """Writes DIR/sweep.json, or checks that DIR holds a sweep of the same grid and scale."""
    path = workdir / "sweep.json"
    old = fileio.read_json(path)
    if old and (old.get("grid_name"), old.get("scale")) != (info["grid_name"], info["scale"]):
        raise ValueError(f"{path}: this folder holds grid {old.get('grid_name')!r} at scale "
                         f"{old.get('scale')!r}, not {info['grid_name']!r} at {info['scale']!r}; "
                         "use another --workdir")
    write_json(path, info)


def point_summary(grid: grid_lib.Grid, scale: str, point: str, stages: Sequence[Stage],
                  argvs: Sequence[Sequence[str]]) -> dict:
    """point.json: the point, its model size and cost, and every stage's config and command."""
    from t2t import pairing
    from t2t.models import variants

    p = grid.point(point)
    cfg = grid.config(scale, point, "pretrain")
    model_cfg = variants.from_run_config(cfg)
    task, _, converter, lengths = pairing.pair(cfg, model_cfg)  # no vocabulary read
    flops = pairing.flops_per_step(model_cfg, converter, lengths, 1)
    return {"name": p.name, "grid": grid.name, "scale": scale, "model": p.model,
            "objective": p.objective, "objective_kwargs": dict(p.objective_kwargs),
            "overrides": dict(p.overrides), "description": p.description,
            "pretrain_task": task.name, "converter": converter,
            "params": variants.count_params(model_cfg), "flops_per_example": flops,
            "pretrain_steps": cfg.train.num_steps, "pretrain_batch_size": cfg.data.batch_size,
            "stages": {s.name: {"argv": list(a), "run_dir": s.run_dir, "config": s.config}
                       for s, a in zip(stages, argvs)}}


# ----------------------------------------------------------------------------- running
class Runner:
    """Runs points (each its stages in order) on `parallel` workers, recording state on disk."""

    def __init__(self, workdir, plans: Mapping[str, list[Stage]], backend, parallel: int = 1,
                 verbose: bool = True):
        if parallel < 1:
            raise ValueError(f"--parallel must be >= 1, got {parallel}")
        self.workdir, self.plans = pathlib.Path(workdir), plans
        self.backend, self.parallel, self.verbose = backend, parallel, verbose
        self.stopping = threading.Event()
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    # ---- one stage
    def _run_stage(self, stage: Stage) -> int:
        log = log_path(self.workdir, stage.point, stage.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = self.backend.argv(stage)
        env = {**os.environ, **self.backend.env}
        with open(log, "ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(argv)}\n".encode())
            out.flush()
            with self._lock:
                if self.stopping.is_set():
                    return -signal.SIGTERM
                proc = subprocess.Popen(argv, cwd=self.backend.cwd, env=env, stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                self._procs[stage.point] = proc
            self._write_status(stage.point, "running", stage=stage.name, pid=proc.pid)
            try:
                return proc.wait()
            finally:
                with self._lock:
                    self._procs.pop(stage.point, None)

    # ---- one point
    def run_point(self, point: str) -> str:
        """Runs the point's unfinished stages; returns done, failed, interrupted or busy."""
        status = fileio.read_json(self.workdir / point / "status.json") or {}
        if status.get("state") == "running" and pid_alive(status.get("pid"), status.get("host")):
            return "busy"  # another sweep process is running it
        for stage in self.plans[point]:
            marker = marker_path(self.workdir, point, stage.name)
            if marker.exists():
                continue
            if self.stopping.is_set():
                self._write_status(point, "interrupted", stage=stage.name)
                return "interrupted"
            start = time.time()
            self._say(f"{point}: {stage.name} started")
            rc = self._run_stage(stage)
            seconds = round(time.time() - start, 1)
            if rc == 0 and stage_finished(self.workdir, stage):
                self._say(f"{point}: {stage.name} done in {seconds:.0f}s")
                write_json(marker, {"stage": stage.name, "seconds": seconds,
                                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                    "argv": self.backend.argv(stage)})
                continue
            log = log_path(self.workdir, point, stage.name)
            if self.stopping.is_set() or rc == 0:  # stopped by us, or SIGTERM from elsewhere
                self._say(f"{point}: {stage.name} interrupted after {seconds:.0f}s")
                self._write_status(point, "interrupted", stage=stage.name, returncode=rc)
                return "interrupted"
            self._say(f"{point}: {stage.name} FAILED (exit {rc}) after {seconds:.0f}s; log {log}")
            self._write_status(point, "failed", stage=stage.name, returncode=rc,
                               error=error_tail(log), log=str(log))
            return "failed"
        self._write_status(point, "done")
        return "done"

    def _say(self, message: str) -> None:
        if self.verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def _write_status(self, point: str, state: str, **info) -> None:
        write_json(self.workdir / point / "status.json",
                   {"state": state, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "host": socket.gethostname(), "sweep_pid": os.getpid(), **info})

    # ---- the sweep
    def stop(self, signum=signal.SIGTERM, frame=None) -> None:
        """Stops starting stages and asks running ones to stop (SIGTERM: save and exit)."""
        self.stopping.set()
        with self._lock:
            for proc in self._procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)

    def run(self, points: Sequence[str]) -> dict[str, str]:
        """Runs `points`; returns {point: done|failed|interrupted|busy}."""
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {s: signal.signal(s, self.stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            with concurrent.futures.ThreadPoolExecutor(self.parallel) as pool:
                futures = {p: pool.submit(self.run_point, p) for p in points}
                pending = set(futures.values())
                while pending:  # short waits keep the main thread free for signal handlers
                    _, pending = concurrent.futures.wait(pending, timeout=0.5)
                return {p: f.result() for p, f in futures.items()}
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
