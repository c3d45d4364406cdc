"""One train step is the same on any mesh; microbatching equals one big batch; params are
sharded as the rules table says."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from t2t.models import variants
from t2t.models.model import build_model
from t2t import sharding
from t2t.train import optim
from t2t.train import step as step_lib

B, LI, LT = 8, 16, 8


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    targets = rng.integers(3, 128, (B, LT)).astype(np.int32)
    targets[:, -2:] = 0
    return {"encoder_input_tokens": rng.integers(3, 128, (B, LI)).astype(np.int32),
            "decoder_input_tokens": np.concatenate([np.zeros((B, 1), np.int32), targets[:, :-1]], 1),
            "decoder_target_tokens": targets,
            "decoder_loss_weights": (targets > 0).astype(np.int32)}


@functools.lru_cache(maxsize=None)
def _setup(optimizer: str, dtype: str = "float32"):
    cfg = variants.get_model_config("tiny", d_model=32, d_ff=128, num_heads=4, head_dim=8,
                                    dtype=dtype)
    model = build_model(cfg)
    if optimizer == "sgd":  # params move by exactly the gradient: compares gradients
        return model, optax.sgd(1.0), optax.constant_schedule(1.0)
    opt_cfg = ml_collections.ConfigDict(dict(
        name=optimizer, schedule="constant", learning_rate=1e-2, warmup_steps=0))
    return model, optim.make_optimizer(opt_cfg), optim.schedule(opt_cfg)


def _one_step(mesh_shape, num_microbatches=1, optimizer="adafactor", dtype="float32"):
    model, tx, lr = _setup(optimizer, dtype)
    mesh = sharding.make_mesh(mesh_shape)
    example = {k: jnp.asarray(v) for k, v in _batch().items()}
    boxed = jax.eval_shape(model.init, jax.random.key(0), example)
    params_sh = sharding.param_shardings(boxed, mesh)
    abstract = nn.unbox(boxed)
    abstract_state = jax.eval_shape(lambda p: step_lib.init_state(p, tx), abstract)
    state_sh = step_lib.TrainState(
        step=sharding.replicated(mesh), params=params_sh,
        opt_state=sharding.state_shardings(abstract_state.opt_state, abstract, params_sh, mesh))
    with mesh, sharding.rules_context(mesh):
        state = jax.jit(lambda k: step_lib.init_state(nn.unbox(model.init(k, example)), tx),
                        out_shardings=state_sh)(jax.random.key(0))
        step = jax.jit(functools.partial(step_lib.train_step, model=model, tx=tx, lr_schedule=lr,
                                         num_microbatches=num_microbatches),
                       in_shardings=(state_sh, sharding.batch_sharding(mesh), None),
                       out_shardings=(state_sh, None))
        batch = jax.device_put(example, sharding.batch_sharding(mesh))
        new_state, metrics = step(state, batch, jax.random.key(1))
    return new_state, jax.device_get(metrics)


@pytest.fixture(scope="module")
def reference():
    return _one_step({"data": 1, "fsdp": 1, "tensor": 1})


@pytest.mark.parametrize("shape", [{"data": 8, "fsdp": 1, "tensor": 1},
                                   {"data": 2, "fsdp": 2, "tensor": 2}])
def test_same_step_on_any_mesh(reference, shape):
    ref_state, ref_metrics = reference
    state, metrics = _one_step(shape)
    assert abs(metrics["loss"] - ref_metrics["loss"]) < 1e-5
    diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b)))),
                         jax.device_get(state.params), jax.device_get(ref_state.params))
    assert max(jax.tree.leaves(diffs)) < 1e-5


def test_same_bf16_step_on_a_mesh():
    """bfloat16 compute (on CPU: the barriered, batch-flattened products of layers._batched_dot)
    partitions like float32: the same loss and parameters as on one device."""
    ref_state, ref_metrics = _one_step({"data": 1, "fsdp": 1, "tensor": 1}, dtype="bfloat16")
    state, metrics = _one_step({"data": 2, "fsdp": 2, "tensor": 2}, dtype="bfloat16")
    assert abs(metrics["loss"] - ref_metrics["loss"]) < 1e-4
    diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b)))),
                         jax.device_get(state.params), jax.device_get(ref_state.params))
    assert max(jax.tree.leaves(diffs)) < 1e-6


def test_params_sharded_as_rules_say():
    state, _ = _one_step({"data": 2, "fsdp": 2, "tensor": 2})
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(state.params)[0]}
    embeddings = [v for k, v in flat.items() if v.shape == (128, 32)]  # the (vocab, embed) table
    assert embeddings, sorted(flat)
    # ('vocab', 'embed') -> ('tensor', 'fsdp'): each device holds a quarter of the table.
    emb = embeddings[0]
    assert emb.sharding.spec == P("tensor", "fsdp")
    assert emb.addressable_shards[0].data.shape == (emb.shape[0] // 2, emb.shape[1] // 2)
    mlp = [v for k, v in flat.items() if "wi" in k and v.ndim == 2]
    assert mlp and mlp[0].sharding.spec == P("fsdp", "tensor")


def test_gradient_accumulation_equals_big_batch():
    # SGD with lr 1 moves params by the gradient, so this compares the accumulated gradient
    # with the big-batch gradient element by element (Adam/Adafactor normalise the first
    # update to ~lr*sign(g), which would amplify float rounding in near-zero gradients).
    mesh = {"data": 2, "fsdp": 2, "tensor": 2}
    ref_state, ref_metrics = _one_step(mesh, 1, "sgd")
    state, metrics = _one_step(mesh, 4, "sgd")
    assert abs(metrics["loss"] - ref_metrics["loss"]) < 1e-5
    assert abs(metrics["grad_norm"] - ref_metrics["grad_norm"]) < 1e-5
    diffs = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))),
                         jax.device_get(state.params), jax.device_get(ref_state.params))
    assert max(jax.tree.leaves(diffs)) < 1e-5


def test_mesh_errors_and_rest_axis():
    assert sharding.make_mesh({"data": -1, "fsdp": 2, "tensor": 1}).shape == {
        "data": 4, "fsdp": 2, "tensor": 1}
    with pytest.raises(ValueError, match="at most one axis"):
        sharding.make_mesh({"data": -1, "fsdp": -1})
    with pytest.raises(ValueError, match="needs 16 devices"):
        sharding.make_mesh({"data": 16})


def test_factored_adafactor_state_follows_param_sharding():
    mesh = sharding.make_mesh({"data": 1, "fsdp": 2, "tensor": 4})
    params = {"w": jax.ShapeDtypeStruct((256, 512), jnp.float32)}
    shardings = {"w": NamedSharding(mesh, P("fsdp", "tensor"))}
    tx = optax.adafactor(1e-3, min_dim_size_to_factor=128)
    out = sharding.state_shardings(jax.eval_shape(tx.init, params), params, shardings, mesh)
    specs = {tuple(s.spec) for s in jax.tree.leaves(out)}
    assert ("fsdp",) in specs and ("tensor",) in specs  # row and column statistics


def test_schedules():
    cfg = ml_collections.ConfigDict(dict(name="adafactor", schedule="rsqrt", learning_rate=1.0,
                                         warmup_steps=10_000))
    s = optim.schedule(cfg)
    assert float(s(0)) == pytest.approx(0.01) and float(s(40_000)) == pytest.approx(0.005)
    cfg = ml_collections.ConfigDict(dict(name="adamw", schedule="linear", learning_rate=1.0,
                                         warmup_steps=10, decay_steps=10, end_value=0.0))
    s = optim.schedule(cfg)
    assert [round(float(s(i)), 4) for i in (0, 5, 10, 15, 20, 30)] == [0, 0.5, 1.0, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="expected constant, linear, cosine or rsqrt"):
        optim.schedule(ml_collections.ConfigDict(dict(schedule="step", learning_rate=1.0)))
