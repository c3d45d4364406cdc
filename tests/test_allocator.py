"""t2t.allocator: entry points re-execute themselves once under tcmalloc (LD_PRELOAD), keep their
arguments, honour T2T_TCMALLOC=0, never loop, and never exec on a plain import (pytest)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from t2t import allocator

REPO = pathlib.Path(__file__).resolve().parents[1]
LIB = allocator.find_tcmalloc()  # found on the dev machine; each test states both outcomes
ARGS = ["two words", "--flag=value", "--config.model.overrides.x=1", ""]

# Appends one line per process start to $STARTS, re-executes, reports what the last one saw.
SCRIPT = """\
import json, os, sys
with open(os.environ["STARTS"], "a") as f:
    f.write("start\\n")
from t2t import allocator
allocator.reexec_with_tcmalloc()
print(json.dumps({"loaded": allocator.tcmalloc_loaded(), "argv": sys.argv[1:],
                  "preload": os.environ.get("LD_PRELOAD"), "marker": os.environ.get("%s"),
                  "threshold": os.environ.get("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD")}))
""" % allocator.MARKER_VAR


def clean_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", allocator.DISABLE_VAR, allocator.MARKER_VAR,
                        "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD")}
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path)]),
               STARTS=str(tmp_path / "starts"), **extra)
    return env


def run(tmp_path, argv, **extra):
    proc = subprocess.run(argv, env=clean_env(tmp_path, **extra), cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    starts = (tmp_path / "starts").read_text().count("start") if (tmp_path / "starts").exists() else 0
    return json.loads(proc.stdout.strip().splitlines()[-1]), starts, proc.stderr


@pytest.mark.parametrize("how", ["file", "module"])
def test_reexec_once_keeps_arguments(tmp_path, how):
    (tmp_path / "reexec_probe.py").write_text(SCRIPT)
    target = [str(tmp_path / "reexec_probe.py")] if how == "file" else ["-m", "reexec_probe"]
    out, starts, err = run(tmp_path, [sys.executable, *target, *ARGS])
    assert out["argv"] == ARGS
    if LIB is not None:
        assert (out["loaded"], starts, out["marker"], out["preload"]) == (True, 2, "1", LIB)
        assert out["threshold"] == str(1 << 60) and "large alloc" not in err
        assert err == ""
    else:  # no library: the process goes on unchanged, one line says how to install it
        assert (out["loaded"], starts, out["marker"], out["preload"]) == (False, 1, "missing", None)
        assert err.strip() == allocator._MISSING


def test_existing_preload_and_threshold_are_kept(tmp_path):
    (tmp_path / "reexec_probe.py").write_text(SCRIPT)
    libm = next((p for p in ("/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib64/libm.so.6",
                             "/lib/aarch64-linux-gnu/libm.so.6") if os.path.exists(p)), "libm.so.6")
    out, starts, _ = run(tmp_path, [sys.executable, str(tmp_path / "reexec_probe.py")],
                         LD_PRELOAD=libm, TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD="123")
    assert out["threshold"] == "123"
    assert out["preload"] == (f"{LIB} {libm}" if LIB else libm)
    assert starts == (2 if LIB else 1)


@pytest.mark.parametrize("value", ["0", "false", "OFF", "no"])
def test_disabled(tmp_path, value):
    (tmp_path / "reexec_probe.py").write_text(SCRIPT)
    out, starts, err = run(tmp_path, [sys.executable, str(tmp_path / "reexec_probe.py"), "x"],
                           T2T_TCMALLOC=value)
    assert (out["loaded"], starts, out["marker"], out["preload"], err) == (False, 1, None, None, "")


def test_marker_prevents_a_second_exec(tmp_path):
    (tmp_path / "reexec_probe.py").write_text(SCRIPT)
    out, starts, err = run(tmp_path, [sys.executable, str(tmp_path / "reexec_probe.py")],
                           **{allocator.MARKER_VAR: "1"})
    assert (out["loaded"], starts, out["preload"], err) == (False, 1, None, "")


def test_importing_entry_points_does_not_exec(tmp_path):
    """What the test suite does: import the CLIs and benchmarks/common.py into a running process."""
    code = ("import json, os, sys; open(os.environ['STARTS'], 'a').write('start\\n'); "
            f"sys.path.insert(0, {str(REPO / 'benchmarks')!r}); "
            "import t2t.train.__main__, t2t.evaluate, t2t.score, common; from t2t import allocator; "
            f"print(json.dumps({{'loaded': allocator.tcmalloc_loaded(), "
            f"'marker': os.environ.get({allocator.MARKER_VAR!r})}}))")
    out, starts, err = run(tmp_path, [sys.executable, "-c", code])
    assert (out, starts) == ({"loaded": False, "marker": None}, 1)
    assert allocator._MISSING not in err


def test_benchmark_script_run_as_main_reexecs(tmp_path):
    """benchmarks/common.py re-executes when the script importing it is __main__ (here via
    runpy, which makes common.py itself the __main__ script)."""
    code = ("import json, os, runpy, sys; open(os.environ['STARTS'], 'a').write('start\\n'); "
            f"runpy.run_path({str(REPO / 'benchmarks' / 'common.py')!r}, run_name='__main__'); "
            "from t2t import allocator; "
            "print(json.dumps({'loaded': allocator.tcmalloc_loaded()}))")
    out, starts, _ = run(tmp_path, [sys.executable, "-c", code])
    assert (out, starts) == (({"loaded": True}, 2) if LIB else ({"loaded": False}, 1))


def test_train_cli_still_runs(tmp_path):
    """Same output and exit status (absl exits 1 after help) with and without the re-exec."""
    runs = [subprocess.run([sys.executable, "-m", "t2t.train", "--helpshort"], cwd=REPO,
                           env=clean_env(tmp_path, **extra), capture_output=True, text=True,
                           timeout=120) for extra in ({}, {allocator.DISABLE_VAR: "0"})]
    # Where tcmalloc is not installed the default run says so once on stderr; the opt-out is silent.
    missing = "" if allocator.find_tcmalloc() else allocator._MISSING + "\n"
    assert [(p.returncode, p.stdout, p.stderr) for p in runs] == [
        (1, runs[1].stdout, missing), (1, runs[1].stdout, "")]
    assert "--workdir: folder for checkpoints" in runs[0].stdout


# ------------------------------------------------------------ in-process, execve replaced
@pytest.fixture
def execs(monkeypatch):
    calls = []
    for var in (allocator.DISABLE_VAR, allocator.MARKER_VAR, "LD_PRELOAD",
                "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"):
        monkeypatch.setenv(var, "")  # records the real value, restored after the test
        monkeypatch.delenv(var)
    monkeypatch.setattr(allocator, "tcmalloc_loaded", lambda: False)
    monkeypatch.setattr(allocator.os, "execve", lambda *a: calls.append(a))
    return calls


def test_exec_arguments(execs, monkeypatch):
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: "/lib/libtcmalloc_minimal.so.4")
    monkeypatch.setenv("LD_PRELOAD", "a.so:b.so")
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-X", "dev", "-m", "t2t.train", "a b", "--c=d"])
    allocator.reexec_with_tcmalloc()
    ((exe, argv, env),) = execs
    assert (exe, argv) == (sys.executable, [sys.executable, "-X", "dev", "-m", "t2t.train", "a b",
                                            "--c=d"])
    assert env["LD_PRELOAD"] == "/lib/libtcmalloc_minimal.so.4 a.so:b.so"
    assert (env[allocator.MARKER_VAR], env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"]) == (
        "1", str(1 << 60))
    assert allocator.MARKER_VAR not in os.environ  # only the new process carries it


def test_missing_library_says_so_once(execs, monkeypatch, capsys):
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)
    allocator.reexec_with_tcmalloc()
    allocator.reexec_with_tcmalloc()
    assert execs == []
    assert capsys.readouterr().err == allocator._MISSING + "\n"
    assert os.environ[allocator.MARKER_VAR] == "missing"  # inherited by child processes


@pytest.mark.parametrize("argv0", ["", "-"])
def test_no_exec_without_a_replayable_command_line(execs, monkeypatch, argv0):
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: "/lib/libtcmalloc_minimal.so.4")
    monkeypatch.setattr(sys, "argv", [argv0])  # interactive / script read from stdin
    allocator.reexec_with_tcmalloc()
    assert execs == []


def test_not_linux(execs, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.find_tcmalloc() is None
    allocator.reexec_with_tcmalloc()
    assert execs == []


def test_find_prefers_minimal():
    if LIB is None:
        assert not any(os.path.exists(os.path.join(d, n))
                       for d in allocator.LIB_DIRS for n in allocator.LIB_NAMES)
    elif os.path.isabs(LIB):
        assert os.path.basename(LIB) in allocator.LIB_NAMES
        minimal = [os.path.join(d, allocator.LIB_NAMES[0]) for d in allocator.LIB_DIRS]
        assert LIB == next((p for p in minimal if os.path.exists(p)), LIB)
