"""The model wrapper: loss/score numbers, batch-key checks, eval_shape, dtypes, mesh sharding."""
import json
import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import log_softmax, logsumexp

from t2t.models.model import build_model, cross_entropy, example_batch
from t2t.models.variants import get_model_config

from model_testing import enc_dec_batch, fast_jit, prefix_lm_batch

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny():
    model = build_model(get_model_config("tiny"))
    batch = enc_dec_batch()
    return model, fast_jit(model.init)(jax.random.PRNGKey(0), batch), batch


def test_cross_entropy_against_optax_and_soft_targets():
    rs = np.random.RandomState(0)
    logits = rs.randn(3, 5, 11).astype(np.float32) * 3
    targets = rs.randint(0, 11, (3, 5))
    weights = (rs.rand(3, 5) > 0.3).astype(np.float32)
    loss, aux = cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights))
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    np.testing.assert_allclose(loss, np.sum(ce * weights), rtol=1e-5)
    np.testing.assert_allclose(aux["cross_entropy"], loss, rtol=1e-6)
    assert aux["num_tokens"] == weights.sum()
    assert aux["accuracy"] == np.sum((logits.argmax(-1) == targets) * weights)
    # T5X label smoothing (1-s on target, s/(V-1) elsewhere, minus the soft targets' entropy)
    # and z-loss, computed here with an explicit soft-target matrix.
    s, z = 0.1, 1e-3
    soft = np.where(np.eye(11)[targets] > 0, 1 - s, s / 10)
    entropy = -(soft * np.log(soft)).sum(-1)
    expected = -(soft * log_softmax(logits, -1)).sum(-1) - entropy + z * logsumexp(logits, -1) ** 2
    loss_s, aux_s = cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights),
                                  z_loss=z, label_smoothing=s)
    np.testing.assert_allclose(loss_s, np.sum(expected * weights), rtol=1e-5)
    np.testing.assert_allclose(aux_s["z_loss"], np.sum(z * logsumexp(logits, -1) ** 2 * weights),
                               rtol=1e-5)
    np.testing.assert_allclose(aux_s["cross_entropy"], aux["cross_entropy"], rtol=1e-6)


def test_loss_and_score_agree_with_logits(tiny):
    model, params, batch = tiny
    logits = np.asarray(fast_jit(model.logits)(params, batch), np.float64)
    lp = np.take_along_axis(log_softmax(logits, -1), batch["decoder_target_tokens"][..., None],
                            -1)[..., 0] * batch["decoder_loss_weights"]
    loss, aux = fast_jit(model.loss)(params, batch)
    np.testing.assert_allclose(loss, -lp.sum(), rtol=1e-5)
    assert aux["num_tokens"] == batch["decoder_loss_weights"].sum() == 10
    np.testing.assert_allclose(fast_jit(model.score)(params, batch), lp.sum(-1), rtol=1e-5)


def test_padding_does_not_change_scores(tiny):
    model, params, batch = tiny
    wide = {k: np.pad(v, ((0, 0), (0, 3))) for k, v in batch.items()}
    score = fast_jit(model.score)
    np.testing.assert_allclose(score(params, wide), score(params, batch), rtol=1e-5)


def test_dropout_needs_rng_and_changes_loss(tiny):
    _, params, batch = tiny
    model = build_model(get_model_config("tiny", dropout_rate=0.5))
    with pytest.raises(ValueError, match="dropout_rng"):
        jax.eval_shape(lambda p: model.loss(p, batch, train=True), params)
    loss = fast_jit(lambda p, rng, train: model.loss(p, batch, train=train, dropout_rng=rng)[0],
                   static_argnums=2)
    eval_loss = loss(params, None, False)
    train_loss = loss(params, jax.random.PRNGKey(1), True)
    assert abs(float(train_loss) - float(eval_loss)) > 1e-3


def test_batch_key_errors_name_the_key(tiny):
    model, params, batch = tiny
    with pytest.raises(ValueError, match="unknown key 'targets'"):
        model.loss(params, {**batch, "targets": batch["decoder_target_tokens"]})
    missing = {k: v for k, v in batch.items() if k != "encoder_input_tokens"}
    with pytest.raises(ValueError, match="missing key 'encoder_input_tokens'"):
        model.loss(params, missing)
    with pytest.raises(ValueError, match="encoder_segment_ids"):
        model.loss(params, {**batch, "decoder_segment_ids": np.ones((2, 6), np.int32)})


@pytest.mark.parametrize("name,batch_fn", [
    ("tiny", enc_dec_batch),
    ("table2_prefix_lm", prefix_lm_batch),
    ("tiny_encoder_only", lambda: example_batch("encoder_only", 2, 8)),
])
def test_init_and_loss_under_eval_shape(name, batch_fn):
    cfg = get_model_config(name)
    model = build_model(cfg)
    batch = batch_fn()
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)
    specs = nn.get_partition_spec(params)
    layer = specs["encoder" if name == "tiny_encoder_only" else "decoder"]["layers_0"]
    assert tuple(specs["token_embedder"]["embedding"]) == ("vocab", "embed")
    assert tuple(layer["mlp"]["wo"]["kernel"]) == ("mlp", "embed")
    assert tuple(layer["self_attention"]["query"]["kernel"]) == ("embed", "heads", "kv")
    loss, aux = jax.eval_shape(lambda p: model.loss(p, batch, train=True,
                                                    dropout_rng=jax.random.PRNGKey(0)), params)
    assert loss.shape == () and loss.dtype == jnp.float32
    assert set(aux) == {"num_tokens", "z_loss", "cross_entropy", "accuracy"}
    logits = jax.eval_shape(model.logits, params, batch)
    assert logits.shape == batch[model.spec.targets].shape + (cfg.vocab_size,)


def test_bfloat16_activations_keep_float32_params(tiny):
    ref, params, batch = tiny
    model = build_model(get_model_config("tiny", dtype="bfloat16"))
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)
    assert {x.dtype for x in jax.tree.leaves(nn.unbox(shapes))} == {jnp.dtype("float32")}
    logits = jax.eval_shape(model.logits, params, batch)
    assert logits.dtype == jnp.float32  # logits leave the bf16 network as float32
    loss16, loss32 = fast_jit(model.loss)(params, batch)[0], fast_jit(ref.loss)(params, batch)[0]
    assert np.isfinite(loss16) and abs(float(loss16) / float(loss32) - 1) < 0.02


MESH_SCRIPT = r"""
import json, os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import jax, numpy as np, flax.linen as nn
from jax.sharding import Mesh, PartitionSpec as P
from t2t.models.model import build_model
from t2t.models.variants import get_model_config
from tests.models.model_testing import enc_dec_batch, fast_jit, prefix_lm_batch
mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))
rules = [("batch", "data"), ("vocab", "model"), ("mlp", "model"), ("heads", "model"),
         ("embed", None), ("kv", None), ("length", None), ("relpos_buckets", None)]
out = {}
for name, batch in [("tiny", enc_dec_batch()), ("tiny_prefix_lm", prefix_lm_batch())]:
    model = build_model(get_model_config(name))
    rng = jax.random.PRNGKey(0)
    specs = nn.get_partition_spec(jax.eval_shape(model.init, rng, batch))
    shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
    with mesh, nn.logical_axis_rules(rules):
        params = fast_jit(model.init, out_shardings=shardings)(rng, batch)
        loss = fast_jit(lambda p, b: model.loss(p, b)[0])(params, batch)
    ref = fast_jit(lambda p, b: model.loss(p, b)[0])(jax.device_get(params), batch)
    emb = nn.unbox(params)["token_embedder"]["embedding"]
    wi = nn.unbox(params)["decoder"]["layers_0"]["mlp"]["wi"]["kernel"]
    out[name] = dict(loss=float(loss), ref=float(ref), emb=str(emb.sharding.spec),
                     wi=str(wi.sharding.spec), devices=len(emb.sharding.device_set))
print(json.dumps(out))
"""


def test_init_and_loss_under_a_mesh_with_logical_rules():
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", MESH_SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, r in out.items():
        assert r["devices"] == 4, name
        assert r["emb"].endswith("('model', None)"), name   # vocab -> model
        assert r["wi"].endswith("(None, 'model')"), name    # mlp -> model
        assert r["loss"] == pytest.approx(r["ref"], rel=1e-5), name
