"""MFU: the CPU peak is the host's best measured matmul rate per compute dtype, shared by all of
the host's CPU devices; the disk cache never lets a reading taken under load lower it."""
import json

import jax
import jax.numpy as jnp
import pytest

from t2t.train import metrics


@pytest.fixture
def fake_peaks(tmp_path, monkeypatch):
    """measure_matmul_peak returns the next queued reading per dtype; a fresh cache folder."""
    monkeypatch.setenv("T2T_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(metrics, "_CPU_PEAKS", {})
    readings = {"float32": [], "bfloat16": []}

    def measure(n=1024, repeats=5, dtype=jnp.float32):
        return readings[jnp.dtype(dtype).name].pop(0)

    monkeypatch.setattr(metrics, "measure_matmul_peak", measure)
    return readings, tmp_path / "cpu_peak.json"


def _new_process(monkeypatch):
    monkeypatch.setattr(metrics, "_CPU_PEAKS", {})


def test_cpu_peak_keeps_the_best_reading_per_dtype(fake_peaks, monkeypatch):
    readings, cache = fake_peaks
    readings["float32"] += [100e9, 50e9, 200e9]
    readings["bfloat16"] += [400e9]
    assert metrics.cpu_peak_flops("float32") == 100e9
    assert metrics.cpu_peak_flops("float32") == 100e9  # measured once per process
    _new_process(monkeypatch)
    assert metrics.cpu_peak_flops("float32") == 100e9  # 50e9 (a loaded host) does not win
    _new_process(monkeypatch)
    assert metrics.cpu_peak_flops("float32") == 200e9
    assert metrics.cpu_peak_flops(jnp.bfloat16) == 400e9
    table = json.loads(cache.read_text())
    assert sorted(table.values()) == [200e9, 400e9]
    assert all(k.endswith((":float32", ":bfloat16")) for k in table)
    assert readings == {"float32": [], "bfloat16": []}


def test_unreadable_cache_is_replaced(fake_peaks):
    readings, cache = fake_peaks
    cache.write_text("{not json")
    readings["float32"].append(123e9)
    assert metrics.cpu_peak_flops() == 123e9
    assert list(json.loads(cache.read_text()).values()) == [123e9]


def test_cpu_mfu_is_over_the_host_peak_times_hosts(fake_peaks):
    readings, _ = fake_peaks
    readings["bfloat16"].append(400e9)
    # 100 GFLOP in 0.5 s on a 400 GFLOP/s host: 0.5, however many CPU devices share the host.
    got = metrics.mfu(100e9, 0.5, "bfloat16")
    assert got == pytest.approx(0.5 / jax.process_count())


def test_measured_peak_is_a_real_rate():
    rate = metrics.measure_matmul_peak(n=256, repeats=2)
    assert 1e8 < rate < 1e14
