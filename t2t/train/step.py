"""Top-level pure train and eval steps.

`train_step(state, batch, dropout_key, *, model, tx, ...) -> (state, metrics)`:
the loss is summed over target tokens and divided by the number of target
tokens in the whole batch (known from the batch's loss weights before the
backward pass, so the gradients come out already divided: no extra pass over
them), so gradient accumulation over microbatches equals one step on the whole
batch. The loop jits these with shardings and donation.
"""
from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


def init_state(params, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def _microbatches(batch, n: int):
    """Splits rows so microbatch i takes rows i, i+n, ... (each device keeps its share)."""
    return jax.tree.map(lambda x: x.reshape((-1, n) + x.shape[1:]).swapaxes(0, 1), batch)


def _sum_loss_and_grads(params, batch, dropout_key, model, loss_kwargs, num_microbatches, scale):
    """(summed loss, summed aux, gradients of scale * summed loss)."""
    def loss_fn(p, mb, key):
        loss, aux = model.loss(p, mb, dropout_rng=key, train=True, **loss_kwargs)
        return loss * scale, (loss, aux)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if num_microbatches <= 1:
        (_, (loss, aux)), grads = grad_fn(params, batch, dropout_key)
        return loss, aux, grads
    mbs = _microbatches(batch, num_microbatches)

    def body(carry, i):
        mb = jax.tree.map(lambda x: x[i], mbs)
        (_, (loss, aux)), grads = grad_fn(params, mb, jax.random.fold_in(dropout_key, i))
        return jax.tree.map(jnp.add, carry, (loss, aux, grads)), None

    first = jax.tree.map(lambda x: x[0], mbs)
    zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(lambda: grad_fn(params, first, dropout_key)))
    (_, (loss, aux)), grads = zeros
    (loss, aux, grads), _ = jax.lax.scan(body, (loss, aux, grads), jnp.arange(num_microbatches))
    return loss, aux, grads


def train_step(state: TrainState, batch, dropout_key, *, model, tx: optax.GradientTransformation,
               lr_schedule: Callable, num_microbatches: int = 1, z_loss: float = 0.0,
               label_smoothing: float = 0.0) -> tuple[TrainState, dict]:
    key = jax.random.fold_in(dropout_key, state.step)
    loss_kwargs = dict(z_loss=z_loss, label_smoothing=label_smoothing)
    n = jnp.maximum(jnp.sum(jnp.asarray(batch[model.spec.loss_weights], jnp.float32)), 1.0)
    loss, aux, grads = _sum_loss_and_grads(state.params, batch, key, model, loss_kwargs,
                                           num_microbatches, 1.0 / n)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss / n, "accuracy": aux["accuracy"] / n, "z_loss": aux["z_loss"] / n,
               "grad_norm": optax.global_norm(grads), "learning_rate": lr_schedule(state.step),
               "num_tokens": aux["num_tokens"]}
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics


def eval_step(params, batch, *, model) -> dict:
    """Summed loss, correct predictions and target tokens (the caller divides)."""
    loss, aux = model.loss(params, batch, dropout_rng=None, train=False)
    return {"loss_sum": loss, "correct": aux["accuracy"], "num_tokens": aux["num_tokens"]}
