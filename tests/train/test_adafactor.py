"""t2t's fused Adafactor equals optax.adafactor (T5's settings, no momentum) on 1- and 2-axis
parameters, and on 3-axis ones equals optax on T5's 2-D view of them ([d_model, heads * head_dim],
the largest axis against the others): same updates, over several steps, for factored,
unfactored, 3-axis and wide leaves; same state tree and values where the layouts agree."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from t2t.train import adafactor, optim

SHAPES = {
    "embedding": (300, 128),     # factored, largest axis first
    "logits": (128, 20000),      # factored, wide: column statistics as a product with ones
    "q": (128, 4, 32),           # attention kernel [d_model, heads, head_dim]: view [128, 128]
    "o": (4, 32, 256),           # attention output [heads, head_dim, d_model]: view [256, 128]
    "mid": (3, 256, 130),        # largest axis in the middle: view [256, 390]
    "small_q": (64, 2, 16),      # view [64, 32]: too small to factor
    "small": (64, 100),          # second-largest axis < 128: unfactored
    "scale": (128,),             # 1 axis: unfactored
    "relpos": (4, 32),
    "zero": (8, 130),            # all-zero parameter: the parameter-RMS floor (1e-3)
}


def _tree(seed=0):
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in SHAPES.items()}
    params["zero"] = jnp.zeros(SHAPES["zero"], jnp.float32)
    grads = [{k: jnp.asarray(rng.normal(size=s) * 10.0 ** rng.uniform(-4, 0), jnp.float32)
              for k, s in SHAPES.items()} for _ in range(4)]
    return params, grads


def _view(x):
    """T5's 2-D view of a 3+-axis tensor: its largest axis first, the others flattened."""
    if x.ndim <= 2:
        return x
    largest = int(np.argsort(x.shape)[-1])
    return jnp.moveaxis(x, largest, 0).reshape(x.shape[largest], -1)


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
    # The reference runs on the 2-D views; ours on the tensors as stored.
    ref_params, ref_hist = _run(ref, jax.tree.map(_view, params), [jax.tree.map(_view, g) for g in grads])
    our_params, our_hist = _run(ours, params, grads)
    for (ref_u, ref_s), (our_u, our_s) in zip(ref_hist, our_hist):
        assert jax.tree.structure(ref_s) == jax.tree.structure(our_s)
        for k in ref_u:
            np.testing.assert_allclose(_view(our_u[k]), ref_u[k], rtol=2e-5, atol=1e-8, err_msg=k)
        for a, b in zip(jax.tree.leaves(ref_s[1:]), jax.tree.leaves(our_s[1:])):
            np.testing.assert_array_equal(a, b)  # counts
        for field in ("v_row", "v_col", "v"):
            for k in SHAPES:
                a, b = getattr(ref_s[0], field)[k], getattr(our_s[0], field)[k]
                if len(SHAPES[k]) <= 2:  # optax's layout exactly
                    assert a.shape == b.shape and a.dtype == b.dtype
                    np.testing.assert_allclose(b, a, rtol=2e-6, atol=0, err_msg=f"{field} {k}")
    for k in ref_params:
        np.testing.assert_allclose(_view(our_params[k]), ref_params[k], rtol=1e-5, atol=1e-7,
                                   err_msg=k)
    # The updates moved the params (the comparison is not of two no-ops).
    assert float(jnp.max(jnp.abs(our_params["logits"] - params["logits"]))) > 1e-4
    assert float(jnp.max(jnp.abs(our_params["q"] - params["q"]))) > 1e-4


def test_attention_kernels_state_is_factored_as_t5():
    """3-axis kernels keep v_row over the largest axis and v_col over the others, no full v."""
    params, grads = _tree()
    tx = adafactor.adafactor(1e-2)
    state = tx.init(params)
    _, state = jax.jit(tx.update)(grads[0], state, params)
    stats = state[0]
    shapes = {k: (stats.v_row[k].shape, stats.v_col[k].shape, stats.v[k].shape) for k in SHAPES}
    assert shapes["q"] == ((128,), (4, 32), (1,))
    assert shapes["o"] == ((256,), (4, 32), (1,))
    assert shapes["mid"] == ((256,), (3, 130), (1,))
    assert shapes["small_q"] == ((1,), (1,), (64, 2, 16))
    assert shapes["embedding"] == ((128,), (300,), (1,))  # optax's: v_row drops the largest axis
    assert shapes["scale"] == ((1,), (1,), (128,))


def test_factored_dims_rule():
    assert adafactor.factored_dims((300, 128)) == ((1,), (0,))
    assert adafactor.factored_dims((128, 128)) == ((0,), (1,))  # ties: a stable sort, as optax's
    assert adafactor.factored_dims((64, 100)) is None
    assert adafactor.factored_dims((512,)) is None
    assert adafactor.factored_dims((512, 6, 64)) == ((0,), (1, 2))   # T5 v1.1 small's q/k/v
    assert adafactor.factored_dims((6, 64, 512)) == ((2,), (0, 1))   # and attention output
    assert adafactor.factored_dims((3, 256, 130)) == ((1,), (0, 2))
    assert adafactor.factored_dims((64, 2, 16)) is None              # [64, 32]: < 128


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
    views, grad_views = jax.tree.map(_view, params), jax.tree.map(_view, grads[0])
    theirs, _ = ref.update(grad_views, ref.init(views), views)
    for k in ours:
        np.testing.assert_allclose(_view(ours[k]), theirs[k], rtol=2e-5, atol=1e-9, err_msg=k)
