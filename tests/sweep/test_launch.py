"""The launcher: exact commands (local and TPU VM dry runs), failure, skip, resume, SIGTERM."""
import json
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from t2t.sweep import __main__ as cli
from t2t.sweep import launch, status

from sweep_testing import REPO, subprocess_env

T5_TABLE2 = str(REPO / "experiments" / "t5_table2.py")

# Two points at a 3-step scale: what the fake Python needs to leave checkpoints/3.
FAKE_GRID = textwrap.dedent('''\
    import dataclasses
    from t2t.sweep import grid as g

    SCALE = dataclasses.replace(g.TINY, name="fake", pretrain_steps=3, finetune_steps=3)
    GRID = g.Grid("fake", points=[g.Point("a", "tiny", "span_corruption"),
                                  g.Point("b", "tiny", "prefix_lm")], scales={"fake": SCALE})
    get_config = GRID.get_config
''')


def dry_run_lines(capsys, *argv) -> list[str]:
    assert cli.main(list(argv) + ["--dry-run"]) == 0
    return capsys.readouterr().out.splitlines()


def test_local_dry_run_prints_the_exact_commands(capsys, tmp_path):
    w, d, cache = tmp_path / "W", tmp_path / "data", tmp_path / "jax"
    (d / "vocab" / "t5_cc_all.32000").mkdir(parents=True)
    (d / "vocab" / "t5_cc_all.32000" / "spiece.model").write_bytes(b"")
    lines = dry_run_lines(capsys, "--grid", T5_TABLE2, "--scale", "tiny", "--workdir", str(w),
                          "--only", "lm.*", "--data_dir", str(d), "--jax_cache", str(cache))
    py, vocab, p = sys.executable, f"{d}/vocab/t5_cc_all.32000/spiece.model", f"{w}/lm.lm"
    data = [f"--config.data.data_dir={d}", f"--config.data.vocab={vocab}"]
    expected_lm_lm = [
        [py, "-m", "t2t.train", "--config", f"{T5_TABLE2}:scale=tiny,point=lm.lm,stage=pretrain",
         "--workdir", f"{p}/pretrain", *data],
        [py, "-m", "t2t.train", "--config", f"{T5_TABLE2}:scale=tiny,point=lm.lm,stage=finetune.rte_cb",
         "--workdir", f"{p}/finetune/rte_cb", f"--config.init_from={p}/pretrain", *data],
        [py, "-m", "t2t.evaluate", "--workdir", f"{p}/finetune/rte_cb", "--tasks", "glue_rte,super_glue_cb",
         "--split", "validation", "--max_examples", "32", "--data_dir", str(d)]]
    assert lines[0] == (f"# local backend: each command runs in {REPO} with PYTHONUNBUFFERED=1 "
                        f"JAX_COMPILATION_CACHE_DIR={cache} JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 "
                        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0")
    assert [line for line in lines if line.startswith("# point")] == ["# point lm.denoising", "# point lm.lm"]
    assert [shlex.split(line) for line in lines[-3:]] == expected_lm_lm
    assert not w.exists()  # a dry run writes nothing


def test_tpu_vm_dry_run_prints_multi_worker_commands(capsys, tmp_path):
    lines = dry_run_lines(capsys, "--grid", T5_TABLE2, "--workdir", str(tmp_path / "W"), "--backend", "tpu-vm",
                          "--tpu", "t5-v4-32", "--zone", "us-central2-b", "--project", "proj",
                          "--remote_repo", "/home/me/t2t", "--remote_workdir", "/mnt/sweeps/table2",
                          "--data_dir", "/mnt/data", "--vocab", "/mnt/data/spiece.model")
    commands = [shlex.split(line) for line in lines if not line.startswith("#")]
    assert len(commands) == 10 * 5  # every point: pretrain, then fine-tune + evaluate on GLUE and SuperGLUE
    gcloud = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "t5-v4-32", "--zone", "us-central2-b",
              "--project", "proj"]
    assert all(c[:10] == gcloud and c[11] == "--command" and len(c) == 13 for c in commands)
    assert [c[10] for c in commands[:5]] == ["--worker=all", "--worker=all", "--worker=0",
                                             "--worker=all", "--worker=0"]
    data = "--config.data.data_dir=/mnt/data --config.data.vocab=/mnt/data/spiece.model"
    root = "/mnt/sweeps/table2/prefix_lm.lm"
    assert [c[12] for c in commands[-5:]] == [
        "cd /home/me/t2t && python3 -m t2t.train --config experiments/t5_table2.py:scale=paper,"
        f"point=prefix_lm.lm,stage=pretrain --workdir {root}/pretrain {data}",
        "cd /home/me/t2t && python3 -m t2t.train --config experiments/t5_table2.py:scale=paper,"
        f"point=prefix_lm.lm,stage=finetune.glue --workdir {root}/finetune/glue "
        f"--config.init_from={root}/pretrain {data}",
        f"cd /home/me/t2t && python3 -m t2t.evaluate --workdir {root}/finetune/glue --tasks glue "
        f"--split validation --checkpoint {root}/finetune/glue/best --data_dir /mnt/data",
        "cd /home/me/t2t && python3 -m t2t.train --config experiments/t5_table2.py:scale=paper,"
        f"point=prefix_lm.lm,stage=finetune.super_glue --workdir {root}/finetune/super_glue "
        f"--config.init_from={root}/pretrain {data}",
        f"cd /home/me/t2t && python3 -m t2t.evaluate --workdir {root}/finetune/super_glue --tasks "
        f"super_glue --split validation --checkpoint {root}/finetune/super_glue/best --data_dir /mnt/data"]


def test_cli_errors_are_one_clear_line(tmp_path):
    with pytest.raises(SystemExit, match=r"--only x\* matches no point of grid 't5_table2'"):
        cli.main(["--grid", T5_TABLE2, "--workdir", str(tmp_path), "--only", "x*", "--dry-run"])
    with pytest.raises(SystemExit, match="--backend tpu-vm needs --tpu NAME and --zone ZONE"):
        cli.main(["--grid", T5_TABLE2, "--workdir", str(tmp_path), "--backend", "tpu-vm", "--dry-run"])
    with pytest.raises(SystemExit, match=f"{tmp_path}/sweep.json not found"):
        cli.main(["--workdir", str(tmp_path), "--status"])


# ----------------------------------------------------------------------------- fake runs
def sweep_argv(tmp_path, fake_python) -> list[str]:
    grid = tmp_path / "fake_grid.py"
    grid.write_text(FAKE_GRID)
    return ["--grid", str(grid), "--scale", "fake", "--workdir", str(tmp_path / "W"), "--python",
            str(fake_python), "--parallel", "2", "--jax_cache", ""]


def fake_env(tmp_path, **env) -> dict:
    return {"FAKE_LOG": str(tmp_path / "calls.jsonl"), "FAKE_STEPS": "3",
            "FAKE_READY": str(tmp_path / "ready"), "FAKE_FAIL": "", "FAKE_HANG": "", **env}


def run_in_process(tmp_path, fake_python, monkeypatch, capsys, **env) -> tuple[int, str]:
    """`python -m t2t.sweep` in this process (its stages are fake-Python subprocesses)."""
    for key, value in fake_env(tmp_path, **env).items():
        monkeypatch.setenv(key, value)
    try:
        rc = cli.main(sweep_argv(tmp_path, fake_python))
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().out


def run_sweep(tmp_path, fake_python, **env) -> subprocess.Popen:
    """`python -m t2t.sweep` as a process of its own (to be signalled)."""
    argv = [sys.executable, "-m", "t2t.sweep", *sweep_argv(tmp_path, fake_python)]
    return subprocess.Popen(argv, cwd=REPO, env=subprocess_env(**fake_env(tmp_path, **env)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def calls(tmp_path) -> list[list[str]]:
    lines = (tmp_path / "calls.jsonl").read_text().splitlines()
    (tmp_path / "calls.jsonl").unlink()
    w = str(tmp_path / "W") + "/"
    return sorted([module, workdir.replace(w, "")] for module, workdir in map(json.loads, lines))


def test_failed_point_is_recorded_others_go_on_and_a_rerun_skips_finished_stages(
        tmp_path, fake_python, monkeypatch, capsys):
    rc, out = run_in_process(tmp_path, fake_python, monkeypatch, capsys, FAKE_FAIL="b/finetune")
    assert rc == 1, out
    assert calls(tmp_path) == [
        ["t2t.evaluate", "a/finetune/rte_cb"], ["t2t.train", "a/finetune/rte_cb"], ["t2t.train", "a/pretrain"],
        ["t2t.train", "b/finetune/rte_cb"], ["t2t.train", "b/pretrain"]]
    w = tmp_path / "W"
    failed = json.loads((w / "b" / "status.json").read_text())
    assert (failed["state"], failed["stage"], failed["returncode"]) == ("failed", "finetune.rte_cb", 2)
    assert failed["error"].splitlines()[-1] == f"ValueError: boom in {w}/b/finetune/rte_cb"
    assert sorted(p.name for p in (w / "b" / "stages").glob("*.json")) == ["pretrain.json"]
    _, points = status.sweep_status(w)
    assert [(p.name, p.state, p.stages_done, p.stage) for p in points] == [
        ("a", "done", 3, ""), ("b", "failed", 1, "finetune.rte_cb")]
    shown = status.format_status(*status.sweep_status(w)).splitlines()
    assert shown[0] == f"sweep fake ({tmp_path}/fake_grid.py) at scale fake, backend local: 1 done, 1 failed"
    assert shown[-1] == f"    ValueError: boom in {w}/b/finetune/rte_cb"

    rc, out = run_in_process(tmp_path, fake_python, monkeypatch, capsys)
    assert rc == 0, out
    assert calls(tmp_path) == [["t2t.evaluate", "b/finetune/rte_cb"], ["t2t.train", "b/finetune/rte_cb"]]
    assert out.splitlines()[-3:] == ["point  state  stages  stage  step  metric",
                                     "a      done   3/3", "b      done   3/3"]
    assert [re.sub(r"\d+s$", "Ns", line[11:]) for line in out.splitlines()[1:5]] == [
        "b: finetune.rte_cb started", "b: finetune.rte_cb done in Ns", "b: evaluate.rte_cb started",
        "b: evaluate.rte_cb done in Ns"]


def test_sigterm_interrupts_running_stages_and_a_rerun_resumes_them(tmp_path, fake_python, monkeypatch,
                                                                   capsys):
    proc = run_sweep(tmp_path, fake_python, FAKE_HANG="a/pretrain")
    deadline = time.time() + 60
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
        time.sleep(0.05)
    while not (tmp_path / "W" / "b" / "status.json").read_text().count('"done"'):
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    # The hung stage got SIGTERM and exited 0 without its last checkpoint: interrupted, not done.
    assert ["SIGTERM", "a/pretrain"] in calls(tmp_path)
    state = json.loads((tmp_path / "W" / "a" / "status.json").read_text())
    assert (state["state"], state["stage"], state["returncode"]) == ("interrupted", "pretrain", 0)
    assert not (tmp_path / "W" / "a" / "stages" / "pretrain.json").exists()

    rc, out = run_in_process(tmp_path, fake_python, monkeypatch, capsys)
    assert rc == 0, out
    assert calls(tmp_path) == [["t2t.evaluate", "a/finetune/rte_cb"], ["t2t.train", "a/finetune/rte_cb"],
                               ["t2t.train", "a/pretrain"]]


def test_a_sweep_folder_keeps_its_grid(tmp_path, fake_python, monkeypatch, capsys):
    (tmp_path / "W").mkdir()
    launch.write_json(tmp_path / "W" / "sweep.json", {"grid_name": "t5_objectives", "scale": "tiny"})
    rc, _ = run_in_process(tmp_path, fake_python, monkeypatch, capsys)
    assert rc == (
        f"t2t.sweep: {tmp_path}/W/sweep.json: this folder holds grid 't5_objectives' at scale 'tiny', "
        "not 'fake' at 'fake'; use another --workdir")
