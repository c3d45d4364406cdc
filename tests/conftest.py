"""Shared pytest fixtures: the real-data folder and a small SentencePiece vocabulary."""
import os
import pathlib

# Eight simulated CPU devices for the sharding tests, and XLA's cheap CPU compile (tests are
# compile-bound; results stay deterministic). Set before JAX is imported anywhere.
FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def xla_flags(num_devices: int) -> str:
    """XLA_FLAGS for a test process (subprocesses must match the parent to agree bit for bit)."""
    return f"--xla_force_host_platform_device_count={num_devices} {FAST_COMPILE_FLAGS}"


os.environ.setdefault("XLA_FLAGS", xla_flags(8))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The folder of real GLUE/SuperGLUE/C4 files (T2T_DATA_DIR); skips when it is not set."""
    path = os.environ.get("T2T_DATA_DIR")
    if not path:
        pytest.skip("T2T_DATA_DIR is not set: real-data tests need ../shared/data (see README)")
    path = pathlib.Path(path)
    if not path.is_dir():
        pytest.fail(f"T2T_DATA_DIR={path} is not a directory")
    return path


@pytest.fixture(scope="session")
def t5_vocab_path(data_dir) -> pathlib.Path:
    """T5's public cc_all.32000 SentencePiece model inside the data folder."""
    return data_dir / "vocab" / "t5_cc_all.32000" / "spiece.model"


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """A private cache (trained vocabularies, CPU peak) shared by the whole session."""
    if "T2T_CACHE_DIR" not in os.environ:
        os.environ["T2T_CACHE_DIR"] = str(tmp_path_factory.mktemp("t2t_cache"))
    yield
