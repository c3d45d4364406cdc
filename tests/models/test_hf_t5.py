"""t2t against Hugging Face transformers' T5 (PyTorch CPU): logits, greedy decode, round trips.

Random-initialised HF models with the T5 v1.0 small and v1.1 small shapes. Before comparing, the
HF weights are rescaled to a trained model's regime (attention/MLP outputs x8 so the layers, not
the tied input embedding, decide the argmax; the untied v1.1 head by d_model^-0.5 so logits are
O(1) as in a trained model, which makes 1e-4 a meaningful float32 tolerance).
"""
import functools
import json

import jax
import numpy as np
import pytest

from t2t import convert as convert_cli
from t2t.models import hf_t5 as convert
from t2t.models.model import build_model
from t2t.models.variants import get_model_config
from t2t.workdir import model_dir

from model_testing import fast_jit

torch = pytest.importorskip("torch", reason="HF comparison needs torch (pip install -e .[test])")
torch.set_num_threads(1)  # the CPU is shared; threads only add contention here
transformers = pytest.importorskip("transformers", reason="HF comparison needs transformers 4.57")


def _hf_model(cfg, seed=0):
    hf_cfg = transformers.T5Config(**convert.t2t_config_to_hf(cfg))
    torch.manual_seed(seed)
    hf = transformers.T5ForConditionalGeneration(hf_cfg).eval()
    with torch.no_grad():
        for name, w in hf.named_parameters():
            if name.endswith((".o.weight", ".wo.weight")):
                w.mul_(8.0)
            if name == "lm_head.weight":
                w.mul_(cfg.d_model ** -0.5)
    return hf


def _state(hf):
    return {k: v.detach().numpy().copy() for k, v in hf.state_dict().items()}


def _batch(vocab_size):
    rs = np.random.RandomState(0)
    enc = rs.randint(2, vocab_size, (2, 12)).astype(np.int32)
    enc[1, 9:] = 0  # padding in the second example
    tgt = rs.randint(2, vocab_size, (2, 7)).astype(np.int32)
    return {"encoder_input_tokens": enc,
            "decoder_input_tokens": np.pad(tgt[:, :-1], ((0, 0), (1, 0))),
            "decoder_target_tokens": tgt, "decoder_loss_weights": np.ones_like(tgt)}


@functools.lru_cache(maxsize=None)
def _pair(name):
    cfg = get_model_config(name, dtype="float32", dropout_rate=0.0)
    hf = _hf_model(cfg)
    params = convert.hf_state_to_params(_state(hf), cfg)
    return cfg, hf, params, build_model(cfg), _batch(cfg.vocab_size)


@pytest.fixture(params=["t5_v1_0_small", "t5_v1_1_small"])
def pair(request):
    return _pair(request.param)


def _torch(x):
    return torch.tensor(np.asarray(x), dtype=torch.long)


def test_logits_match_transformers(pair):
    cfg, hf, params, model, batch = pair
    with torch.no_grad():
        expected = hf(input_ids=_torch(batch["encoder_input_tokens"]),
                      attention_mask=_torch(batch["encoder_input_tokens"] > 0),
                      decoder_input_ids=_torch(batch["decoder_input_tokens"])).logits.numpy()
    got = np.asarray(fast_jit(model.logits)(params, batch))
    assert got.shape == expected.shape == (2, 7, cfg.vocab_size)
    assert np.abs(expected).max() > 1.0  # the comparison is not of near-zero numbers
    np.testing.assert_array_less(np.abs(got - expected).max(), 1e-4)


def test_greedy_decode_matches_transformers(pair):
    cfg, hf, params, model, batch = pair
    steps = 8
    with torch.no_grad():
        expected = hf.generate(input_ids=_torch(batch["encoder_input_tokens"]),
                               attention_mask=_torch(batch["encoder_input_tokens"] > 0),
                               max_new_tokens=steps, do_sample=False, num_beams=1).numpy()
    got = np.asarray(fast_jit(lambda p, b: model.predict(
        p, b, max_decode_length=steps, jit=False))(params, batch))
    assert expected[:, 0].tolist() == [0, 0]  # HF output starts with the decoder start token
    np.testing.assert_array_equal(got, expected[:, 1:])
    assert len(set(got[0].tolist())) > 1  # a real sequence, not one repeated id


def test_state_dict_round_trip_is_exact(pair):
    cfg, hf, params, _, _ = pair
    state = convert.params_to_hf_state(params, cfg)
    expected = _state(hf)
    assert sorted(state) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    jax.tree.map(np.testing.assert_array_equal, convert.hf_state_to_params(state, cfg), params)


def test_convert_cli_round_trips_are_exact(tmp_path):
    """HF dir -> `t2t.convert` -> t2t (Orbax) -> `t2t.convert --to hf` -> transformers, and the
    exported HF dir back to t2t: every tensor bit for bit, configs equal. A v1.1-style model
    (gated-gelu, untied head, d_kv != d_model / heads) kept small: this test is about files."""
    cfg = get_model_config("t5_v1_1_small", vocab_size=512, num_encoder_layers=2,
                           num_decoder_layers=3, dtype="float32")
    hf = _hf_model(cfg, seed=2)
    params = convert.hf_state_to_params(_state(hf), cfg)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    assert convert_cli.main(["--from", "hf", "--src", str(tmp_path / "hf"),
                             "--dst", str(tmp_path / "t2t")]) == 0
    stored = json.loads((tmp_path / "t2t" / "model_config.json").read_text())
    assert (stored["architecture"], stored["activation"], stored["tie_embeddings"]) == (
        "encoder_decoder", cfg.activation, cfg.tie_embeddings)
    cfg2, params2 = model_dir.load_checkpoint(tmp_path / "t2t")
    assert cfg2.to_dict() == cfg.to_dict()
    jax.tree.map(np.testing.assert_array_equal, params2, params)
    assert convert_cli.main(["--from", "t2t", "--to", "hf", "--src", str(tmp_path / "t2t"),
                             "--dst", str(tmp_path / "back")]) == 0
    back = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "back")
    for key, value in _state(hf).items():
        np.testing.assert_array_equal(back.state_dict()[key].numpy(), value, err_msg=key)
    cfg3, params3 = convert.load_hf_checkpoint(tmp_path / "back")  # t2t -> HF -> t2t
    assert cfg3.to_dict() == cfg.to_dict()
    jax.tree.map(np.testing.assert_array_equal, params3, params2)


def test_pickle_weights_need_explicit_permission(tmp_path):
    cfg = get_model_config("tiny", vocab_size=64)
    hf = _hf_model(cfg, seed=1)
    hf.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "pytorch_model.bin").is_file()
    with pytest.raises(ValueError, match="allow_pickle"):
        convert.load_hf_checkpoint(tmp_path)
    cfg2, params = convert.load_hf_checkpoint(tmp_path, allow_pickle=True)
    expected = convert.hf_state_to_params(_state(hf), cfg2)
    jax.tree.map(np.testing.assert_array_equal, params, expected)


def test_hf_incompatible_config_is_named():
    with pytest.raises(ValueError, match="position='rope'"):
        convert.t2t_config_to_hf(get_model_config("tiny", position="rope"))
