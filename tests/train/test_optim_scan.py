"""A scanned model trains exactly as the looped one: Adafactor's statistics are per layer
(optim.per_layer), also under jit on a sharded mesh; looped runs keep their optimizer state."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from t2t.models import variants
from t2t.models.model import build_model
from t2t.models.scan import stack_layers
from t2t import sharding
from t2t.train import optim
from t2t.train import step as step_lib

B, LI, LT, STEPS = 4, 16, 8, 3
# d_model and d_ff >= 128 so the MLP kernels have factored second moments; unequal stacks so
# the two scanned stacks have different numbers of layers.
SHAPE = dict(d_model=128, d_ff=256, num_heads=4, head_dim=16, num_encoder_layers=1,
             num_decoder_layers=2)


def _batches():
    rng = np.random.default_rng(0)
    out = []
    for _ in range(STEPS):
        targets = rng.integers(3, 128, (B, LT)).astype(np.int32)
        targets[:, -2:] = 0
        out.append({"encoder_input_tokens": rng.integers(3, 128, (B, LI)).astype(np.int32),
                    "decoder_input_tokens": np.concatenate(
                        [np.zeros((B, 1), np.int32), targets[:, :-1]], 1),
                    "decoder_target_tokens": targets,
                    "decoder_loss_weights": (targets > 0).astype(np.int32)})
    return out


def _opt_cfg(name):
    return ml_collections.ConfigDict(dict(name=name, schedule="constant", learning_rate=1e-2,
                                          warmup_steps=0))


def _model_cfg(scan):
    return variants.get_model_config("tiny", scan_layers=scan, **SHAPE)


@functools.lru_cache(maxsize=None)
def _looped_params():
    cfg = _model_cfg(False)
    example = {k: jnp.asarray(v) for k, v in _batches()[0].items()}
    return nn.unbox(jax.jit(build_model(cfg).init)(jax.random.key(0), example))


def _train(scan, optimizer, stacked, mesh_shape=None):
    """Params after STEPS train steps from the same initial params (stacked when `scan`)."""
    cfg = _model_cfg(scan)
    model = build_model(cfg)
    tx = optim.make_optimizer(_opt_cfg(optimizer), stacked=stacked)
    params = stack_layers(_looped_params(), cfg) if scan else _looped_params()
    step = functools.partial(step_lib.train_step, model=model, tx=tx,
                             lr_schedule=optim.schedule(_opt_cfg(optimizer)))
    if mesh_shape is None:
        state, step = step_lib.init_state(params, tx), jax.jit(step)
        for batch in _batches():
            state, _ = step(state, batch, jax.random.key(1))
        return state
    mesh = sharding.make_mesh(mesh_shape)
    example = {k: jnp.asarray(v) for k, v in _batches()[0].items()}
    boxed = jax.eval_shape(model.init, jax.random.key(0), example)
    params_sh = sharding.param_shardings(boxed, mesh)
    abstract = jax.eval_shape(lambda p: step_lib.init_state(p, tx), nn.unbox(boxed))
    state_sh = step_lib.TrainState(
        step=sharding.replicated(mesh), params=params_sh,
        opt_state=sharding.state_shardings(abstract.opt_state, abstract.params, params_sh,
                                               mesh))
    with mesh, sharding.rules_context(mesh):
        state = jax.jit(lambda p: step_lib.init_state(p, tx), out_shardings=state_sh)(params)
        step = jax.jit(step, in_shardings=(state_sh, sharding.batch_sharding(mesh), None),
                       out_shardings=(state_sh, None))
        for batch in _batches():
            state, _ = step(state, jax.device_put(batch, sharding.batch_sharding(mesh)),
                            jax.random.key(1))
    return state


@functools.lru_cache(maxsize=None)
def _looped_result(optimizer):
    return jax.device_get(stack_layers(_train(False, optimizer, None).params, _model_cfg(True)))


def _assert_close(a, b, tol):
    """Equal to float rounding: |a - b| <= tol * (1 + |b|) elementwise (params are O(1))."""
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=tol, atol=tol),
                 jax.device_get(a), jax.device_get(b))


@pytest.mark.parametrize("optimizer", ["adafactor", "adamw"])
def test_scanned_trains_as_looped(optimizer):
    _assert_close(_train(True, optimizer, optim.scanned_layers).params,
                  _looped_result(optimizer), 1e-6)


def test_scanned_adafactor_on_sharded_mesh():
    # 1e-5: a sharded step sums in another order (as in test_sharding_and_step.py).
    state = _train(True, "adafactor", optim.scanned_layers, {"data": 2, "fsdp": 2, "tensor": 2})
    _assert_close(state.params, _looped_result("adafactor"), 1e-5)
    # The per-layer factored moments of the (layers, embed, mlp) kernels keep the kernel's
    # sharding minus the reduced axis: v_row (layers, embed), v_col (layers, mlp).
    specs = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state.opt_state)[0]:
        keys = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        field = {"v_row", "v_col"} & set(keys)
        if field and keys[-3:] == ["mlp", "wi", "kernel"]:
            specs.setdefault(field.pop(), set()).add((leaf.shape, leaf.sharding.spec))
    assert specs["v_row"] == {((1, 128), P(None, "fsdp")), ((2, 128), P(None, "fsdp"))}
    assert specs["v_col"] == {((1, 256), P(None, "tensor")), ((2, 256), P(None, "tensor"))}


def test_per_layer_equals_separate_layers():
    # Stacks of 3 and 2 layers (one factored, one not) next to an unstacked leaf: each layer
    # of a marked leaf moves as it would alone; without the marker the RMS statistics (and
    # the factored moments) span the whole stack and the updates differ.
    rng = np.random.default_rng(0)
    shapes = {"a": (3, 128, 256), "b": (2, 8), "c": (128, 256)}

    def normal(shape):  # the RMS grows with the leading index: layers differ in scale
        scale = np.arange(1, shape[0] + 1).reshape((-1,) + (1,) * (len(shape) - 1))
        return jnp.asarray(rng.normal(size=shape) * scale, jnp.float32)
    params = {k: normal(s) for k, s in shapes.items()}
    grads = [{k: normal(s) for k, s in shapes.items()} for _ in range(STEPS)]
    stacked = {"a": True, "b": True, "c": False}

    @functools.partial(jax.jit, static_argnums=0)
    def run(tx, params, grads):
        state = tx.init(params)
        for g in grads:
            updates, state = tx.update(g, state, params)
            params = optax.apply_updates(params, updates)
        return params

    t5 = optim.make_optimizer(_opt_cfg("adafactor"))
    per_layer = run(optim.make_optimizer(_opt_cfg("adafactor"), stacked=stacked), params, grads)
    for name in ("a", "b"):
        for i in range(params[name].shape[0]):
            alone = run(t5, params[name][i], [g[name][i] for g in grads])
            np.testing.assert_allclose(per_layer[name][i], alone, rtol=1e-6, atol=1e-6)
    alone = run(t5, params["c"], [g["c"] for g in grads])
    np.testing.assert_allclose(per_layer["c"], alone, rtol=1e-6, atol=1e-6)
    whole = run(t5, params, grads)
    assert all(float(jnp.max(jnp.abs(whole[k] - per_layer[k]))) > 1e-4 for k in ("a", "b"))


def test_looped_state_structure_unchanged():
    # Looped runs build plain optax.adafactor, so existing checkpoints keep restoring.
    params = jax.eval_shape(_looped_params)
    t5 = optax.adafactor(learning_rate=optim.schedule(_opt_cfg("adafactor")), decay_rate=0.8,
                         clipping_threshold=1.0, momentum=None, multiply_by_parameter_scale=True, factored=True,
                         min_dim_size_to_factor=128, eps=1e-30)
    tx = optim.make_optimizer(_opt_cfg("adafactor"))
    assert (jax.tree.structure(jax.eval_shape(tx.init, params))
            == jax.tree.structure(jax.eval_shape(t5.init, params)))
    assert not any(jax.tree.leaves(optim.scanned_layers(params)))


def test_stacked_scalar_is_an_error():
    tx = optim.make_optimizer(_opt_cfg("adafactor"), stacked={"w": True, "b": False})
    with pytest.raises(ValueError, match="need a leading layer axis"):
        tx.init({"w": jnp.zeros(()), "b": jnp.zeros((3,))})
