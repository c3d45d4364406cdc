"""cfg.scan_layers and cfg.remat_policy change how the network is traced, never its numbers:
the scanned model on the stacked weights of a looped one gives the same logits, loss, gradients
and decodes; every remat policy gives the same gradients; HF conversion and sharding see the
scanned layout."""
import functools

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from t2t.models import hf_t5 as convert, scan, variants
from t2t.workdir import model_dir
from t2t.models.model import build_model, cross_entropy

from model_testing import enc_dec_batch, fast_jit, prefix_lm_batch

TOL = 1e-5
CASES = {  # name -> (variant, overrides)
    "enc_dec": ("tiny", {}),
    "enc_dec_shared": ("tiny", dict(shared_encoder_decoder=True, position="rope")),
    "causal_lm": ("tiny_decoder_only", dict(position="alibi", num_kv_heads=2)),
    "prefix_lm": ("tiny_prefix_lm", dict(position="absolute", max_length=16)),
    "encoder_only": ("tiny_encoder_only", dict(position="sinusoidal", norm="layer")),
}


def _cfg(case, **extra):
    variant, overrides = CASES[case]
    return variants.get_model_config(variant, **overrides, **extra)


def _batch(cfg):
    if cfg.architecture == "decoder_only":
        batch = prefix_lm_batch()
        return batch if cfg.prefix_lm else {k: v for k, v in batch.items()
                                            if k != "decoder_causal_attention"}
    batch = enc_dec_batch()
    if cfg.architecture == "encoder_only":  # MLM: targets aligned with the inputs
        tgt = np.where(batch["encoder_input_tokens"] > 0, 5, 0).astype(np.int32)
        return {"encoder_input_tokens": batch["encoder_input_tokens"],
                "encoder_target_tokens": tgt, "encoder_loss_weights": (tgt > 0).astype(np.int32)}
    return batch


@functools.lru_cache(maxsize=None)
def _looped(case):
    """(cfg, unboxed looped params, batch) for a case."""
    cfg = _cfg(case)
    batch = _batch(cfg)
    params = nn.unbox(fast_jit(build_model(cfg).init)(jax.random.key(0), batch))
    return cfg, params, batch


@functools.lru_cache(maxsize=None)
def _loss_and_grads(case, scan_layers=False, remat_policy="none", dropout_rate=0.0):
    """(loss, logits, grads in the looped layout) of a case's looped weights, run looped or
    scanned (stacked weights); with dropout_rate > 0 in train mode with a fixed dropout rng."""
    _, params, batch = _looped(case)
    cfg = _cfg(case, scan_layers=scan_layers, remat_policy=remat_policy,
               dropout_rate=dropout_rate)
    model = build_model(cfg)
    train = dropout_rate > 0

    def f(p):  # Model.loss is cross_entropy(Model.logits): one forward gives both
        logits = model.logits(p, batch, train=train, dropout_rng=jax.random.key(3))
        loss, _ = cross_entropy(logits, batch[model.spec.targets],
                                batch[model.spec.loss_weights])
        return loss, logits
    if scan_layers:
        params = scan.stack_layers(params, cfg)
    (loss, logits), grads = fast_jit(jax.value_and_grad(f, has_aux=True))(params)
    return loss, logits, scan.unstack_layers(grads, cfg) if scan_layers else grads


def _assert_trees_close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=TOL, rtol=TOL), a, b)


@pytest.mark.parametrize("case", sorted(CASES))
def test_scanned_equals_looped(case):
    cfg, params, batch = _looped(case)
    scfg = _cfg(case, scan_layers=True)
    assert jax.tree.structure(scan.stack_layers(params, scfg)) == jax.tree.structure(
        nn.unbox(jax.eval_shape(build_model(scfg).init, jax.random.key(0), batch)))
    loss, logits, grads = _loss_and_grads(case)
    s_loss, s_logits, s_grads = _loss_and_grads(case, scan_layers=True)
    np.testing.assert_allclose(s_loss, loss, rtol=TOL)
    np.testing.assert_allclose(s_logits, logits, atol=TOL, rtol=TOL)
    _assert_trees_close(s_grads, grads)


@pytest.mark.parametrize("case,scan_layers,policy,dropout_rate", [
    ("enc_dec", False, "full", 0.0), ("causal_lm", True, "dots", 0.3)])
def test_remat_policies_give_equal_grads(case, scan_layers, policy, dropout_rate):
    """Same grads as without remat; with dropout the recomputation redraws the same masks."""
    _assert_trees_close(_loss_and_grads(case, scan_layers, policy, dropout_rate)[2],
                        _loss_and_grads(case, scan_layers, "none", dropout_rate)[2])


@pytest.mark.parametrize("case,method", [("enc_dec_shared", "beam"), ("prefix_lm", "greedy")])
def test_cached_decoding_equal_with_scan(case, method):
    cfg, params, batch = _looped(case)
    scfg = _cfg(case, scan_layers=True, remat_policy="full")
    kwargs = dict(max_decode_length=5, method=method, num_beams=2, return_scores=True)
    looped = build_model(cfg).predict(params, batch, **kwargs)
    scanned = build_model(scfg).predict(scan.stack_layers(params, scfg), batch, **kwargs)
    _assert_trees_close(scanned, looped)


def test_scanned_cache_keeps_batch_leading():
    cfg, params, batch = _looped("enc_dec")
    scfg = _cfg("enc_dec", scan_layers=True)
    _, cache, _, _ = build_model(scfg).init_decoding(scan.stack_layers(params, scfg), batch, 7)
    shapes = {x.shape for x in jax.tree.leaves(cache)}
    assert shapes == {(2, cfg.num_decoder_layers, 7, cfg.num_heads, cfg.head_dim)}


def test_scanned_params_count_and_partition_specs():
    cfg = _cfg("enc_dec", scan_layers=True)
    boxed = jax.eval_shape(build_model(cfg).init, jax.random.key(0), _batch(cfg))
    assert sum(x.size for x in jax.tree.leaves(nn.unbox(boxed))) == variants.count_params(cfg)
    specs = nn.get_partition_spec(boxed)
    assert specs["decoder"]["layers"]["self_attention"]["query"]["kernel"] == P(
        "layers", "embed", "heads", "kv")
    assert specs["decoder"]["relpos_bias"]["rel_embedding"] == P("heads", "relpos_buckets")
    from t2t import sharding as sharding_lib
    mesh = sharding_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    shardings = sharding_lib.param_shardings(boxed, mesh)
    assert shardings["encoder"]["layers"]["mlp"]["wi"]["kernel"].spec == P(None, "fsdp", "tensor")
    for sharding, leaf in zip(jax.tree.leaves(shardings), jax.tree.leaves(nn.unbox(boxed))):
        assert len(sharding.spec) == leaf.ndim


def test_stack_unstack_round_trip_and_errors():
    cfg, params, _ = _looped("enc_dec_shared")
    stacked = scan.stack_layers(params, cfg)
    assert sorted(stacked) == sorted(params) and "layers_0" not in stacked["encoder"]
    jax.tree.map(np.testing.assert_array_equal, scan.unstack_layers(stacked, cfg), params)
    with pytest.raises(KeyError, match="not the looped layout"):
        scan.stack_layers(stacked, cfg)
    with pytest.raises(KeyError, match="not the scanned layout"):
        scan.unstack_layers(params, cfg)


def test_bad_remat_policy_names_field():
    with pytest.raises(ValueError, match=r"remat_policy='everything'.*none\|full\|dots"):
        variants.get_model_config("tiny", remat_policy="everything")


def test_hf_round_trip_with_scanned_config(tmp_path):
    """HF T5 -> scanned t2t params: logits equal transformers'; t2t -> HF (functions and
    `python -m t2t.convert` on a scanned checkpoint) gives back every tensor bit for bit."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from t2t import convert as convert_cli
    cfg = variants.get_model_config("tiny", activation="gated-gelu", tie_embeddings=False,
                                    num_decoder_layers=3, scan_layers=True)
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(
        transformers.T5Config(**convert.t2t_config_to_hf(cfg))).eval()
    state = {k: v.detach().numpy().copy() for k, v in hf.state_dict().items()}
    params = convert.hf_state_to_params(state, cfg)
    assert params["decoder"]["layers"]["mlp"]["wi_0"]["kernel"].shape == (3, 32, 64)
    batch = enc_dec_batch()
    with torch.no_grad():
        expected = hf(input_ids=torch.tensor(batch["encoder_input_tokens"], dtype=torch.long),
                      attention_mask=torch.tensor(batch["encoder_input_tokens"] > 0),
                      decoder_input_ids=torch.tensor(batch["decoder_input_tokens"],
                                                     dtype=torch.long)).logits.numpy()
    got = fast_jit(build_model(cfg).logits)(params, batch)
    valid = batch["decoder_target_tokens"] > 0  # t2t masks the padded decoder positions
    np.testing.assert_allclose(np.asarray(got)[valid], expected[valid], atol=1e-4)
    model_dir.save_checkpoint(tmp_path / "t2t", cfg, params)
    assert convert_cli.main(["--from", "t2t", "--src", str(tmp_path / "t2t"),
                             "--dst", str(tmp_path / "hf")]) == 0
    _, back = convert.load_hf_checkpoint(tmp_path / "hf", scan_layers=True)
    jax.tree.map(np.testing.assert_array_equal, back, params)
    reloaded = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "hf")
    for key, value in reloaded.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[key], err_msg=key)
