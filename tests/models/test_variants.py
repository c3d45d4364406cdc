"""Named shapes: published parameter counts, Table 2 ratios, count_params vs real params."""
import flax.linen as nn
import jax
import pytest

from t2t.models.model import build_model, example_batch
from t2t.models.variants import count_params, flops_per_token, get_model_config

# Published sizes (HF `num_parameters()` of t5-small/base, google/t5-v1_1-small/base).
PUBLISHED = {"t5_v1_0_small": 60_506_624, "t5_v1_0_base": 222_903_552,
             "t5_v1_1_small": 76_961_152, "t5_v1_1_base": 247_577_856}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts(name):
    n = count_params(get_model_config(name))
    print(f"{name}: {n:,} parameters")
    assert n == PUBLISHED[name]


def _actual_params(cfg):
    shapes = jax.eval_shape(build_model(cfg).init, jax.random.PRNGKey(0),
                            example_batch(cfg.architecture))
    return sum(x.size for x in jax.tree.leaves(nn.unbox(shapes)))


@pytest.mark.parametrize("name,overrides", [
    ("t5_v1_1_xxl", {}),  # 11B params, traced abstractly: never allocated or compiled
    ("table2_enc_dec_shared", {}),
    ("tiny", {"position": "absolute", "norm": "layer", "num_kv_heads": 2}),
    ("tiny_decoder_only", {"activation": "swiglu", "position": "rope"}),
    ("tiny_encoder_only", {"tie_embeddings": False, "position": "alibi"}),
])
def test_count_params_matches_the_built_model(name, overrides):
    cfg = get_model_config(name, **overrides)
    assert count_params(cfg) == _actual_params(cfg)


def test_table2_family_ratios():
    p = {n: count_params(get_model_config(n)) for n in
         ("table2_enc_dec", "table2_enc_dec_shared", "table2_enc_dec_6layer", "table2_lm",
          "table2_prefix_lm")}
    f = {n: flops_per_token(get_model_config(n), 512, 512) for n in p}
    P, M = p["table2_lm"], f["table2_enc_dec"]
    print({n: (round(p[n] / P, 3), round(f[n] / M, 3)) for n in p})
    assert p["table2_enc_dec"] / P == pytest.approx(2.0, abs=0.05)           # 2P
    assert p["table2_prefix_lm"] == P                                        # P
    # Shared and 6-layer enc-dec keep their (unshared) cross-attention: P plus ~1/4 resp. 1/8.
    assert 1.0 < p["table2_enc_dec_shared"] / P < 1.3
    assert 1.0 < p["table2_enc_dec_6layer"] / P < 1.2
    assert f["table2_enc_dec_shared"] == M                                   # M
    assert f["table2_lm"] / M == pytest.approx(1.0, abs=0.05)                # M
    assert f["table2_prefix_lm"] == f["table2_lm"]                           # M
    assert f["table2_enc_dec_6layer"] / M == pytest.approx(0.5, abs=0.06)    # M/2


def test_flops_per_token_formula_by_hand():
    cfg = get_model_config("tiny", vocab_size=100, d_model=8, num_heads=2, head_dim=4, d_ff=16,
                           num_encoder_layers=1, num_decoder_layers=1)
    inputs, targets = 6, 3
    attn, mlp = 4 * 8 * 8, 2 * 8 * 16
    enc = 2 * inputs * (attn + mlp) + 4 * inputs * inputs * 8
    dec = (2 * targets * (attn + mlp) + 4 * targets * targets * 8
           + 2 * targets * 2 * 64 + 2 * inputs * 2 * 64 + 4 * targets * inputs * 8)
    logits = 2 * targets * 8 * 100
    assert flops_per_token(cfg, inputs, targets) == 3 * (enc + dec + logits) / targets


def test_config_errors_name_the_field():
    with pytest.raises(KeyError, match="no field 'd_modle'"):
        get_model_config("tiny", d_modle=3)
    with pytest.raises(ValueError, match="position='learned'"):
        get_model_config("tiny", position="learned")
    with pytest.raises(ValueError, match="num_kv_heads=3"):
        get_model_config("tiny", num_kv_heads=3)
    with pytest.raises(KeyError, match="unknown model variant 't5_huge'"):
        get_model_config("t5_huge")
