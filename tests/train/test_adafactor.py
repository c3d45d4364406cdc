"""t2t's fused Adafactor equals optax.adafactor (T5's settings, no momentum): same updates, same
state tree and values, over several steps, for factored, unfactored, 3-axis and wide leaves."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from t2t.train import adafactor, optim


def _tree(seed=0):
    rng = np.random.default_rng(seed)
    shapes = {
        "embedding": (300, 128),     # factored, largest axis first
        "logits": (128, 20000),      # factored, wide: column statistics as a product with ones
        "q": (128, 4, 32),           # 3 axes, second-largest < 128: unfactored
        "stacked": (3, 256, 130),    # 3 axes: factored over axes 1 and 2
        "small": (64, 100),          # second-largest axis < 128: unfactored
        "scale": (128,),             # 1 axis: unfactored
        "relpos": (4, 32),
        "zero": (8, 130),            # all-zero parameter: the parameter-RMS floor (1e-3)
    }
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
    params["zero"] = jnp.zeros(shapes["zero"], jnp.float32)
    grads = [{k: jnp.asarray(rng.normal(size=s) * 10.0 ** rng.uniform(-4, 0), jnp.float32)
              for k, s in shapes.items()} for _ in range(4)]
    return params, grads


def _run(tx, params, grads):
    state = tx.init(params)
    update = jax.jit(tx.update)
    history = []
    for g in grads:
        updates, state = update(g, state, params)
        params = optax.apply_updates(params, updates)
        history.append((updates, state))
    return params, history


@pytest.mark.parametrize("learning_rate,weight_decay", [
    (optax.linear_schedule(0.0, 1e-2, 3), None),
    (0.05, None),
    (1e-2, 1e-3),
])
def test_matches_optax_adafactor(learning_rate, weight_decay):
    kw = dict(decay_rate=0.8, clipping_threshold=1.0, multiply_by_parameter_scale=True,
              min_dim_size_to_factor=128, eps=1e-30, weight_decay_rate=weight_decay)
    params, grads = _tree()
    ref = optax.adafactor(learning_rate=learning_rate, momentum=None, factored=True, **kw)
    ours = adafactor.adafactor(learning_rate, **kw)
    ref_params, ref_hist = _run(ref, params, grads)
    our_params, our_hist = _run(ours, params, grads)
    for (ref_u, ref_s), (our_u, our_s) in zip(ref_hist, our_hist):
        assert jax.tree.structure(ref_s) == jax.tree.structure(our_s)
        for a, b in zip(jax.tree.leaves(ref_s), jax.tree.leaves(our_s)):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_allclose(b, a, rtol=2e-6, atol=0)
        for k in ref_u:
            np.testing.assert_allclose(our_u[k], ref_u[k], rtol=2e-5, atol=1e-8, err_msg=k)
    for k in ref_params:
        np.testing.assert_allclose(our_params[k], ref_params[k], rtol=1e-5, atol=1e-7, err_msg=k)
    # The updates moved the params (the comparison is not of two no-ops).
    assert float(jnp.max(jnp.abs(our_params["logits"] - params["logits"]))) > 1e-4


def test_factored_dims_rule():
    assert adafactor.factored_dims((300, 128)) == (1, 0)
    assert adafactor.factored_dims((128, 4, 32)) is None
    assert adafactor.factored_dims((3, 256, 130)) == (2, 1)
    assert adafactor.factored_dims((130, 3, 256)) == (0, 2)
    assert adafactor.factored_dims((64, 100)) is None
    assert adafactor.factored_dims((512,)) is None
    assert adafactor.factored_dims((128, 128)) == (0, 1)  # ties: a stable sort, as optax's


def test_make_optimizer_uses_it_and_needs_params():
    cfg = optim.ml_collections.ConfigDict(dict(name="adafactor", learning_rate=1e-2,
                                               schedule="constant", warmup_steps=0))
    tx = optim.make_optimizer(cfg)
    params, grads = _tree()
    state = tx.init(params)
    with pytest.raises(ValueError, match="needs the params"):
        tx.update(grads[0], state)
    ref = optax.adafactor(learning_rate=optim.schedule(cfg), momentum=None, decay_rate=0.8,
                          clipping_threshold=1.0, min_dim_size_to_factor=128, eps=1e-30)
    ours, _ = tx.update(grads[0], state, params)
    theirs, _ = ref.update(grads[0], ref.init(params), params)
    for k in ours:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=2e-5, atol=1e-9, err_msg=k)
