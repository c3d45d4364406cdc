"""Helpers for the model tests: tiny batches in the batch-key contract (t2t/batch_spec.py), fast jit."""
import numpy as np


def shift_right(targets, segment_ids=None):
    """decoder_input_tokens: targets shifted right with 0 as start token (per segment)."""
    out = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
    if segment_ids is not None:
        starts = np.pad(segment_ids[:, 1:] != segment_ids[:, :-1], ((0, 0), (1, 0)))
        out = np.where(starts, 0, out)
    return out.astype(np.int32)


def enc_dec_batch(vocab=128, b=2, n_in=9, n_out=6, seed=0, pad=True):
    rs = np.random.RandomState(seed)
    enc = rs.randint(2, vocab, (b, n_in)).astype(np.int32)
    tgt = rs.randint(2, vocab, (b, n_out)).astype(np.int32)
    if pad:
        enc[1, n_in - 3:] = 0
        tgt[1, n_out - 2:] = 0
    return {"encoder_input_tokens": enc, "decoder_input_tokens": shift_right(tgt),
            "decoder_target_tokens": tgt, "decoder_loss_weights": (tgt > 0).astype(np.int32)}


def prefix_lm_batch(vocab=128, prefix_lens=(4, 6), length=10, seed=0):
    """Decoder-only batch: inputs then targets; decoder_causal_attention marks the input tokens
    plus one (T5X's convention: the shifted start token), loss on the targets only."""
    rs = np.random.RandomState(seed)
    b = len(prefix_lens)
    seq = rs.randint(2, vocab, (b, length)).astype(np.int32)
    pos = np.arange(length)[None]
    plen = np.asarray(prefix_lens)[:, None]
    return {"decoder_input_tokens": shift_right(seq), "decoder_target_tokens": seq,
            "decoder_loss_weights": (pos >= plen).astype(np.int32),
            "decoder_causal_attention": (pos <= plen).astype(np.int32)}


# XLA's CPU optimisation passes dominate these tiny tests' run time; level 0 compiles ~3x
# faster and computes the same float32 arithmetic.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def fast_jit(fn, **kwargs):
    import jax
    return jax.jit(fn, compiler_options=FAST_COMPILE, **kwargs)
