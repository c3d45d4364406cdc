"""Autoregressive decoding with a key-value cache: greedy, temperature/top-k/top-p sampling,
and beam search with T5's length penalty. All loops are `lax.while_loop`s (jit-friendly).

The model is seen only through `tokens_to_logits(tokens [n], index [n], cache) ->
(logits [n, vocab] float32, new_cache)`: feed token `tokens[b]` at position `index[b]` and get
the distribution of the token at `index[b] + 1`. Every cache leaf has the flattened batch as its
leading axis. Decoded positions after EOS are 0 (padding).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

NEG = -1.0e7


def filter_logits(logits, top_k: int = 0, top_p: float = 1.0):
    """Keeps the top_k largest logits (0 = all) and the smallest set whose probability reaches
    top_p (1.0 = all); the rest become NEG. The most likely token always survives."""
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, NEG, logits)
    if top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        keep = mass_before < top_p                   # [.., V] in sorted order
        n_keep = jnp.maximum(jnp.sum(keep, axis=-1, keepdims=True), 1)
        threshold = jnp.take_along_axis(sorted_logits, n_keep - 1, axis=-1)
        logits = jnp.where(logits < threshold, NEG, logits)
    return logits


def sample_decode(tokens_to_logits, cache, init_tokens, init_index, *, max_decode_length: int,
                  rng=None, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                  eos_id: int = 1):
    """Greedy (temperature 0) or sampled decoding -> int32 [n, max_decode_length]."""
    n = init_tokens.shape[0]
    if temperature > 0 and rng is None:
        raise ValueError("sampling with temperature > 0 needs an rng")
    rng = jax.random.PRNGKey(0) if rng is None else rng

    def cond(state):
        i, _, _, _, _, done, _ = state
        return jnp.logical_and(i < max_decode_length, ~jnp.all(done))

    def body(state):
        i, tokens, index, cache, out, done, rng = state
        logits, cache = tokens_to_logits(tokens, index, cache)
        if temperature > 0:
            rng, key = jax.random.split(rng)
            logits = filter_logits(logits / temperature, top_k, top_p)
            nxt = jax.random.categorical(key, logits, axis=-1)
        else:
            nxt = jnp.argmax(logits, axis=-1)
        nxt = jnp.where(done, 0, nxt).astype(jnp.int32)
        out = out.at[:, i].set(nxt)
        done = jnp.logical_or(done, nxt == eos_id)
        return i + 1, nxt, index + 1, cache, out, done, rng

    state = (jnp.int32(0), init_tokens.astype(jnp.int32), init_index.astype(jnp.int32), cache,
             jnp.zeros((n, max_decode_length), jnp.int32), jnp.zeros((n,), bool), rng)
    return jax.lax.while_loop(cond, body, state)[4]


def brevity_penalty(length, alpha: float):
    """T5/GNMT length penalty ((5 + length) / 6) ** alpha; scores are log_prob / penalty."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _gather_beams(x, idx):
    """x [b, k, ...], idx [b, m] -> [b, m, ...]."""
    return jax.vmap(lambda xb, ib: xb[ib])(x, idx)


def _beam_step(state, logits, *, batch_size, beam_size, max_decode_length, alpha, eos_id):
    """One beam-search step on logits [b*k, V] -> new state (cache still ungathered) + src."""
    i, alive_seqs, alive_lp, fin_seqs, fin_scores = state
    b, k = batch_size, beam_size
    vocab = logits.shape[-1]
    cand = alive_lp[:, :, None] + jax.nn.log_softmax(logits).reshape(b, k, vocab)
    top_lp, top_idx = jax.lax.top_k(cand.reshape(b, k * vocab), 2 * k)
    beam, tok = top_idx // vocab, (top_idx % vocab).astype(jnp.int32)
    seqs = _gather_beams(alive_seqs, beam).at[:, :, i].set(tok)
    is_eos = tok == eos_id
    # Finished: keep the best k of old finished + newly ended (scored with the length penalty).
    new_fin = jnp.where(is_eos, top_lp / brevity_penalty(i + 1, alpha), NEG)
    all_scores = jnp.concatenate([fin_scores, new_fin], axis=1)
    fin_scores, f_idx = jax.lax.top_k(all_scores, k)
    fin_seqs = _gather_beams(jnp.concatenate([fin_seqs, seqs], axis=1), f_idx)
    # Alive: best k that did not just end.
    alive_lp, a_idx = jax.lax.top_k(jnp.where(is_eos, NEG, top_lp), k)
    alive_seqs = _gather_beams(seqs, a_idx)
    src = jnp.take_along_axis(beam, a_idx, axis=1)
    next_tok = jnp.take_along_axis(tok, a_idx, axis=1)
    return (i + 1, alive_seqs, alive_lp, fin_seqs, fin_scores), src, next_tok


def beam_search(tokens_to_logits, cache, init_tokens, init_index, *, batch_size: int,
                beam_size: int, max_decode_length: int, length_penalty: float = 0.6,
                eos_id: int = 1):
    """Beam search. cache/init_* are already repeated per beam (leading axis batch*beam, beams
    of one example adjacent). Returns (tokens int32 [b, beam, max_decode_length], scores
    float32 [b, beam]) best first; scores are log_prob / brevity_penalty(length)."""
    b, k, t = batch_size, beam_size, max_decode_length
    alive_lp = jnp.tile(jnp.asarray([0.0] + [NEG] * (k - 1), jnp.float32)[None], (b, 1))
    zeros = jnp.zeros((b, k, t), jnp.int32)
    beams0 = (jnp.int32(0), zeros, alive_lp, zeros, jnp.full((b, k), NEG, jnp.float32))
    step = dict(batch_size=b, beam_size=k, max_decode_length=t, alpha=length_penalty,
                eos_id=eos_id)

    def cond(state):
        beams, _, _, _ = state
        i, _, alive_lp, _, fin_scores = beams
        best_possible = alive_lp[:, 0] / brevity_penalty(t, length_penalty)
        finished = jnp.all(jnp.min(fin_scores, axis=1) >= best_possible)
        return jnp.logical_and(i < t, ~finished)

    def body(state):
        beams, tokens, index, cache = state
        logits, cache = tokens_to_logits(tokens, index, cache)
        beams, src, next_tok = _beam_step(beams, logits, **step)
        flat_src = (jnp.arange(b)[:, None] * k + src).reshape(-1)
        cache = jax.tree.map(lambda x: x[flat_src], cache)
        return beams, next_tok.reshape(-1), index + 1, cache

    state = (beams0, init_tokens.astype(jnp.int32), init_index.astype(jnp.int32), cache)
    (i, alive_seqs, alive_lp, fin_seqs, fin_scores), _, _, _ = jax.lax.while_loop(
        cond, body, state)
    # Unfinished beams compete too, scored at their current length.
    scores = jnp.concatenate([fin_scores, alive_lp / brevity_penalty(i, length_penalty)], axis=1)
    scores, idx = jax.lax.top_k(scores, k)
    return _gather_beams(jnp.concatenate([fin_seqs, alive_seqs], axis=1), idx), scores


def repeat_batch(tree, times: int):
    """Repeats every leaf's leading axis `times` times (each example's copies adjacent)."""
    return jax.tree.map(lambda x: jnp.repeat(x, times, axis=0), tree)

