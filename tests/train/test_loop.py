"""The training loop end to end on the tiny config: exact resume (clean restart, SIGTERM,
kill -9), multi-host equals single-host, NaN stops the run, CLI errors."""
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import tiny_test
from tests.conftest import xla_flags
from t2t.train import loop
from t2t import fileio
from t2t.workdir import metrics_path, read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]
# 4 devices, 2 fixed data shards: comparable with 2 processes x 2 devices.
OVERRIDES = ["--config.mesh.data=4", "--config.data.num_shards=2"]


def _config(**changes):
    cfg = tiny_test.get_config()
    cfg.mesh.data = 4
    cfg.data.num_shards = 2
    cfg.optimizer.schedule = "rsqrt"   # a schedule with its own length: extension must not bend it
    cfg.optimizer.learning_rate = 0.01
    cfg.optimizer.warmup_steps = 4
    for key, value in changes.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def _losses(workdir):
    return {r["step"]: r["loss"] for r in read_metrics(workdir) if r["split"] == "train"}


def _params(workdir, step):
    import orbax.checkpoint as ocp
    restored = ocp.StandardCheckpointer().restore(pathlib.Path(workdir) / "checkpoints" / str(step) / "state")
    return restored["params"]


def _env():
    env = dict(os.environ, XLA_FLAGS=xla_flags(8), PYTHONPATH=str(ROOT))
    return env


def _cli(workdir, *extra):
    return [sys.executable, "-m", "t2t.train", "--config", str(ROOT / "configs" / "tiny_test.py"),
            "--workdir", str(workdir), *OVERRIDES, "--config.optimizer.schedule=rsqrt",
            "--config.optimizer.learning_rate=0.01", "--config.optimizer.warmup_steps=4", *extra]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    loop.train_and_evaluate(_config(), str(workdir))
    return workdir


def test_straight_run_learns_and_logs(straight):
    records = read_metrics(straight)
    assert [r["step"] for r in records] == list(range(1, 21))
    for key in ("step", "loss", "learning_rate", "tokens_per_second", "mfu", "split"):
        assert key in records[0]
    assert records[-1]["loss"] < records[0]["loss"] - 0.5
    assert records[0]["learning_rate"] == pytest.approx(0.01 / 2)  # 0.01 / sqrt(max(0, 4))
    assert (straight / "config.json").exists() and list((straight / "tensorboard").iterdir())
    assert sorted(int(p.name) for p in (straight / "checkpoints").iterdir() if p.name.isdigit()) == [10, 15, 20]


def test_resume_is_exact(straight, tmp_path):
    loop.train_and_evaluate(_config(**{"train.num_steps": 10}), str(tmp_path))
    loop.train_and_evaluate(_config(), str(tmp_path))  # raising num_steps continues the run
    assert _losses(tmp_path) == _losses(straight)
    a, b = _params(tmp_path, 20), _params(straight, 20)
    import jax
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_sigterm_then_kill9_then_resume(straight, tmp_path):
    # 1) SIGTERM after the first checkpoint: a checkpoint at the current step, clean exit.
    proc = subprocess.Popen(_cli(tmp_path, "--config.train.num_steps=20"), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: (tmp_path / "checkpoints" / "5").is_dir(), proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    stopped = max(r["step"] for r in read_metrics(tmp_path))
    assert "SIGTERM: saved a checkpoint at step" in out
    assert (tmp_path / "checkpoints" / str(stopped)).is_dir()
    # 2) restart, then kill -9 at a random moment after one more checkpoint.
    proc = subprocess.Popen(_cli(tmp_path, "--config.train.num_steps=20"), env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    next_ckpt = (stopped // 5 + 1) * 5
    _wait_for(lambda: (tmp_path / "checkpoints" / str(next_ckpt)).is_dir() or proc.poll() is not None, proc)
    time.sleep(random.uniform(0.0, 1.0))
    proc.kill()
    proc.wait()
    # 3) resume to the end: every logged step's loss equals the straight run's.
    result = subprocess.run(_cli(tmp_path, "--config.train.num_steps=20"), env=_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    losses = {}
    raw = fileio.read_jsonl(metrics_path(tmp_path))  # every row, also steps logged twice
    for r in raw:  # steps logged twice (after a crash) must agree too
        assert losses.setdefault(r["step"], r["loss"]) == r["loss"]
    assert losses == _losses(straight)


def _wait_for(condition, proc, timeout=300):
    start = time.time()
    while not condition():
        if proc.poll() is not None and not condition():
            raise AssertionError(f"process ended early: {proc.stdout.read()}")
        if time.time() - start > timeout:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.2)


def test_two_processes_equal_one(straight, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(_env(), XLA_FLAGS=xla_flags(2))
    cmd = _cli(tmp_path, "--config.train.num_steps=8", "--config.mesh.data=-1",
               "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2")
    procs = [subprocess.Popen(cmd + ["--process_id", str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    multi, single = _losses(tmp_path), _losses(straight)
    assert sorted(multi) == list(range(1, 9))
    for step, loss in multi.items():
        assert loss == pytest.approx(single[step], rel=1e-5, abs=1e-5)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = _config(**{"optimizer.schedule": "constant", "optimizer.learning_rate": 1e30,
                     "train.num_steps": 6, "checkpoint.every_steps": 1, "mesh.data": 1,
                     "data.num_shards": 0})
    with pytest.raises(loop.NonFiniteLossError, match="loss is nan at step"):
        loop.train_and_evaluate(cfg, str(tmp_path))
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    losses = _losses(tmp_path)
    assert steps and all(np.isfinite(losses[s]) for s in steps)


def test_unknown_override_is_an_error(tmp_path):
    result = subprocess.run(_cli(tmp_path, "--config.train.num_stepz=3"), env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "num_stepz" in result.stderr


def test_restore_onto_a_different_mesh(straight, tmp_path):
    loop.train_and_evaluate(_config(**{"train.num_steps": 10, "mesh.data": 1}), str(tmp_path))
    loop.train_and_evaluate(_config(**{"train.num_steps": 12, "mesh.data": 2, "mesh.fsdp": 2,
                                       "mesh.tensor": 2}), str(tmp_path))
    losses, reference = _losses(tmp_path), _losses(straight)
    assert sorted(losses) == list(range(1, 13))
    for step in (11, 12):
        assert losses[step] == pytest.approx(reference[step], rel=1e-5, abs=1e-5)
