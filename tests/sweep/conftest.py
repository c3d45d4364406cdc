"""Sweep fixtures: a one-point real sweep (started in the background as soon as the first
sweep test runs, so its JAX compiles overlap the fast tests), grid files and a fake Python
that stands in for training in launcher tests."""
import os
import pathlib
import subprocess
import sys

import pytest

from sweep_testing import FAKE_PYTHON, MICRO_GRID, REPO, subprocess_env


class BackgroundSweep:
    def __init__(self, data_dir, root: pathlib.Path):
        self.workdir = root / "W"
        grid = root / "micro_grid.py"
        grid.write_text(MICRO_GRID)
        # Compiled programs persist across test sessions (keyed by program and JAX version).
        cache = os.environ.get("T2T_TEST_JAX_CACHE", str(pathlib.Path("~/.cache/t2t/jax").expanduser()))
        self.argv = [sys.executable, "-m", "t2t.sweep", "--grid", str(grid), "--scale", "micro",
                     "--workdir", str(self.workdir), "--data_dir", str(data_dir), "--jax_cache", cache]
        self.log = root / "sweep.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env=subprocess_env(), stdout=out,
                                         stderr=subprocess.STDOUT)

    def wait(self) -> pathlib.Path:
        rc = self.proc.wait(timeout=600)
        assert rc == 0, f"{' '.join(self.argv)} exited {rc}:\n{self.log.read_text()[-4000:]}"
        return self.workdir


@pytest.fixture(scope="session", autouse=True)
def _background_sweep(tmp_path_factory):
    data = os.environ.get("T2T_DATA_DIR")
    if not data:
        yield None
        return
    sweep = BackgroundSweep(data, tmp_path_factory.mktemp("micro_sweep"))
    yield sweep
    if sweep.proc.poll() is None:
        sweep.proc.kill()
        sweep.proc.wait()


@pytest.fixture(scope="session")
def micro_sweep(_background_sweep, data_dir) -> pathlib.Path:
    """The folder of a finished one-point sweep (pretrain, fine-tune, evaluate on real data)."""
    return _background_sweep.wait()


@pytest.fixture
def fake_python(tmp_path) -> pathlib.Path:
    path = tmp_path / "fake_python"
    path.write_text(FAKE_PYTHON.format(python=sys.executable))
    path.chmod(0o755)
    return path
