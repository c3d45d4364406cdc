"""Run t2t's command-line entry points under tcmalloc instead of glibc malloc.

XLA's CPU runtime allocates large fresh temporary buffers every train step. glibc malloc
serves those from mmap and returns them to the OS (munmap) when freed, so every step pays for
page faults in kernel time; tcmalloc keeps the memory (benchmarks/RESULTS.md has the numbers).

LD_PRELOAD is read by the dynamic loader only when a process starts, so an entry point calls
`reexec_with_tcmalloc()` first thing: the process replaces itself (os.execve: same pid, same
arguments, same open files) with one that preloads the library, once. Call it only from code
that runs as `__main__`, never on import (it would re-execute pytest or a notebook's kernel).
Calling it after jax is imported is still correct, as exec discards the whole process, only
slower (everything is imported twice), so entry points call it before their heavy imports.

T2T_TCMALLOC=0 (or false/off/no) keeps glibc malloc. Without the library nothing changes but
one line on stderr saying how to install it (once per process tree).
"""
from __future__ import annotations

import ctypes.util
import os
import sys

LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
            "/usr/local/lib")
LIB_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")  # the minimal one first: no profiler
DISABLE_VAR = "T2T_TCMALLOC"
MARKER_VAR = "T2T_TCMALLOC_REEXEC"  # set in the re-executed process (and its children): no loops
_OFF = ("0", "false", "off", "no")
_MISSING = ("t2t: tcmalloc not found, XLA CPU steps run slower under glibc malloc; install it with "
            "`apt install libtcmalloc-minimal4` (or libgoogle-perftools4), or set T2T_TCMALLOC=0")


def find_tcmalloc() -> str | None:
    """Path (or loader name) of libtcmalloc_minimal.so.4 / libtcmalloc.so.4; None if absent or
    not on Linux."""
    if not sys.platform.startswith("linux"):
        return None
    for name in LIB_NAMES:
        for folder in LIB_DIRS:
            path = os.path.join(folder, name)
            if os.path.exists(path):
                return path
    for name in ("tcmalloc_minimal", "tcmalloc"):
        found = ctypes.util.find_library(name)  # ldconfig's cache: other distributions' layouts
        if found:
            return found
    return None


def tcmalloc_loaded() -> bool:
    """Whether a tcmalloc library is mapped into this process (from /proc/self/maps)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            return any("libtcmalloc" in line for line in f)
    except OSError:
        return False


def reexec_with_tcmalloc() -> None:
    """Re-execute this Python process with tcmalloc preloaded; returns when there is nothing to
    do: not Linux, T2T_TCMALLOC=0, tcmalloc already loaded, already re-executed once (or told
    the user it is missing), no replayable command line, or no library (one line on stderr)."""
    if (not sys.platform.startswith("linux")
            or os.environ.get(DISABLE_VAR, "").strip().lower() in _OFF
            or os.environ.get(MARKER_VAR) or tcmalloc_loaded()
            or not sys.executable or sys.argv[0] in ("", "-")):  # interactive / stdin: no replay
        return
    lib = find_tcmalloc()
    if lib is None:
        os.environ[MARKER_VAR] = "missing"  # children (sweep stages, workers) stay quiet
        print(_MISSING, file=sys.stderr, flush=True)
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join([lib, *env.get("LD_PRELOAD", "").split()])
    env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 60))  # no "large alloc" lines
    env[MARKER_VAR] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    # sys.orig_argv keeps the interpreter options, `-m module` / `-c code` / the script and its
    # arguments exactly; sys.executable (not argv[0]) so the same interpreter / venv runs again.
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
