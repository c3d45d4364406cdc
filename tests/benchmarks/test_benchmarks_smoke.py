"""Each benchmark runs end to end at the tiny shape (1 step, XLA optimisations off) and writes
the JSON records its README promises. Nothing here is timed: speed is the benchmarks' job."""
import json
import pathlib
import sys

import pytest

from t2t.models import variants

BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

TINY = ["--steps", "1", "--warmup", "1", "--fast_compile"]


def _run(module: str, tmp_path, *argv) -> list[dict]:
    mod = __import__(module)
    out = tmp_path / f"{module}.json"
    returned = mod.main([*argv, "--out", str(out)])
    records = json.loads(out.read_text())
    assert records == json.loads(json.dumps(returned))
    return records


def test_train_step(tmp_path):
    pytest.importorskip("torch", reason="the HF side needs torch (pip install -e .[test])")
    (r,) = _run("train_step", tmp_path, "--configs", "tiny", "--pause", "0", *TINY)
    assert {"name", "t2t_seconds_per_step", "hf_seconds_per_step", "speedup",
            "tokens_per_second", "mfu"} <= set(r)
    assert r["name"] == "tiny" and r["params"] == 303_744  # t2t == HF, asserted inside
    assert r["speedup"] == pytest.approx(r["hf_seconds_per_step"] / r["t2t_seconds_per_step"])
    assert r["tokens_per_second"] == pytest.approx(8 * 40 / r["t2t_seconds_per_step"])


def test_mfu(tmp_path):
    records = _run("mfu", tmp_path, "--scale", "tiny", "--archs",
                   "table2_enc_dec_shared,table2_prefix_lm", *TINY)
    assert [r["name"] for r in records] == ["table2_enc_dec_shared", "table2_prefix_lm"]
    for r in records:
        assert 0 < r["mfu"] == pytest.approx(r["flops_per_step"] / r["seconds_per_step"]
                                             / r["peak_flops"])


def test_mfu_shapes_keep_table2_relations():
    import common
    import mfu
    scale = mfu.SCALES["cpu"]
    cfgs = {name: mfu.arch_config(name, scale) for name in mfu.ARCHS}
    flops = {n: common.flops_per_step(c, 1, 512, 114) for n, c in cfgs.items()}
    assert flops["table2_enc_dec_shared"] == flops["table2_enc_dec"]  # same FLOPs (M)
    assert flops["table2_lm"] == flops["table2_prefix_lm"]
    assert [cfgs["table2_enc_dec_6layer"].num_encoder_layers,
            cfgs["table2_enc_dec"].num_encoder_layers, cfgs["table2_lm"].num_decoder_layers] == [2, 4, 4]
    params = {n: variants.count_params(c) for n, c in cfgs.items()}
    assert params["table2_enc_dec_shared"] < params["table2_enc_dec"]  # P vs 2P stacks
    assert cfgs["table2_prefix_lm"].prefix_lm and not cfgs["table2_lm"].prefix_lm


def test_decode(tmp_path):
    records = _run("decode", tmp_path, "--model", "tiny", "--inputs_length", "16",
                   "--targets_length", "6", "--beams", "2", "--rounds", "1", "--fast_compile")
    assert [r["name"] for r in records] == ["greedy", "beam2"]
    for r in records:
        assert r["speedup"] == pytest.approx(r["no_cache_seconds"] / r["cache_seconds"])
        assert r["cache_tokens_per_second"] == pytest.approx(6 / r["cache_seconds"])


def test_checkpoint(tmp_path):
    (r,) = _run("checkpoint", tmp_path, "--model", "tiny", "--rounds", "1", "--overlap_steps",
                "1", "--cpu_saves", "1", "--dir", str(tmp_path / "ckpt"), "--fast_compile")
    assert r["stall_fraction"] == pytest.approx(r["stall_seconds"] / r["step_seconds"])
    assert r["stall_fraction"] == pytest.approx(r["blocking_fraction"] + r["overlap_fraction"])
    assert r["blocking_fraction"] == pytest.approx(r["save_call_seconds"] / r["step_seconds"])
    assert r["stall_seconds"] >= r["save_call_seconds"] > 0
    assert r["save_cpu_seconds"] >= r["save_cpu_user_seconds"] > 0
    assert r["checkpoint_bytes"] > 0 and r["compress"] is False
    assert r["overlap_writer_cpu_seconds"] >= 0  # Linux; clock-tick resolution (10 ms)
    if r["overlap_fraction"] > 0 and r["overlap_writer_cpu_seconds"] > 0:
        assert r["overlap_per_writer_cpu"] == pytest.approx(
            r["overlap_extra_seconds"] / r["overlap_writer_cpu_seconds"])
    # step 0 warms up, step 1 is the standalone save, step 2 the timed one (keep=2)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir() if p.is_dir()) == ["1", "2"]


def test_data_throughput_feeds_the_step(tmp_path, monkeypatch):
    monkeypatch.delenv("T2T_DATA_DIR", raising=False)  # the built-in corpus: no data needed
    records = _run("data_throughput", tmp_path, "--batch_size", "4", "--batches", "2",
                   "--warmup", "1", "--workers", "0", "--objectives", "", "--step_model", "tiny",
                   "--step_batch_size", "2", "--step_rounds", "1", "--fast_compile")
    feed = records[-1]
    assert feed["name"] == "feed/span_corruption/tiny"
    assert feed["pipeline_over_step"] == pytest.approx(
        feed["pipeline_tokens_per_s"] / feed["step_tokens_per_s"])
    assert all(r["steps_per_s_fed"] == pytest.approx(r["rows_per_s"] / 4) for r in records[:-1])
