"""Thin model wrapper (t5x style): maps batch keys to the network's arguments and owns the
loss, the per-example score and decoding. The linen modules in transformer.py never see them.

Batches follow the contract in t2t/batch_spec.py. Each architecture declares the feature
converters whose batches it consumes (`FEATURE_CONVERTERS`, as t5x's FEATURE_CONVERTER_CLS):
encoder_decoder <- enc_dec; decoder_only <- lm, prefix_lm; encoder_only <- enc_only.

Params returned by `init` are flax `nn.LogicallyPartitioned` boxes (see layers.LOGICAL_AXES):
derive shardings with `nn.get_partition_spec(params)` and one rules table; `nn.unbox(params)`
gives plain arrays. Every method accepts boxed or unboxed params.
"""
from __future__ import annotations

import functools
import json
from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from t2t import batch_spec
from t2t.models import decoding, layers
from t2t.models.transformer import make_module
from t2t.models.variants import validate

FEATURE_CONVERTERS = {"encoder_decoder": ("enc_dec",), "decoder_only": ("lm", "prefix_lm"),
                      "encoder_only": ("enc_only",)}
# Keys a model may go without: absent decoder_causal_attention means a causal LM (all 0).
MAY_OMIT = ("decoder_causal_attention",)
# Keys `predict` needs (targets are what it produces).
PREDICT_REQUIRED = {"encoder_decoder": ("encoder_input_tokens",),
                    "decoder_only": ("decoder_input_tokens",)}


def spec(architecture: str) -> batch_spec.ConverterSpec:
    """The batch spec of the architecture's (first) feature converter."""
    if architecture not in FEATURE_CONVERTERS:
        raise ValueError(f"unknown architecture {architecture!r}; known: "
                         f"{sorted(FEATURE_CONVERTERS)}")
    return batch_spec.get(FEATURE_CONVERTERS[architecture][0])


def check_converter(architecture: str, converter: str) -> None:
    """Fails naming both when `architecture` does not consume `converter`'s batches."""
    if converter in FEATURE_CONVERTERS.get(architecture, ()):
        return
    wanted = spec(architecture).all_keys()
    given = batch_spec.get(converter).all_keys()
    raise ValueError(
        f"a {architecture} model consumes batches of the {FEATURE_CONVERTERS[architecture]} "
        f"converter(s), not {converter!r}: the {converter} batch lacks "
        f"{[k for k in wanted if k not in given]} and has keys the model does not take "
        f"{[k for k in given if k not in wanted]}")


def check_batch(batch: Mapping, architecture: str, required=None) -> None:
    """Raises ValueError naming the missing/unknown key and the keys expected."""
    s = spec(architecture)
    if required is None:
        required = [k for k in s.key_names() if k not in MAY_OMIT]
    allowed = set(s.all_keys())
    optional = [k for k in s.all_keys() if k not in required]
    for key in required:
        if key not in batch:
            raise ValueError(f"{architecture} batch is missing key {key!r}; expected "
                             f"{sorted(required)} (+ optional {optional}), got {sorted(batch)}")
    for key in batch:
        if key not in allowed:
            raise ValueError(f"{architecture} batch has unknown key {key!r}; allowed keys: "
                             f"{sorted(allowed)}")
    if architecture == "encoder_decoder" and (
            ("encoder_segment_ids" in batch) != ("decoder_segment_ids" in batch)):
        raise ValueError("packed encoder_decoder batch needs both encoder_segment_ids and "
                         f"decoder_segment_ids; got {sorted(batch)}")


def cross_entropy(logits, targets, weights, *, z_loss: float = 0.0,
                  label_smoothing: float = 0.0, kernels: str = "auto"):
    """Summed token cross-entropy (T5X definition) -> (sum_loss, aux).

    sum_loss = sum_t w_t * (CE(smoothed target_t, softmax(logits_t)) - const + z_loss * logZ_t^2),
    where label smoothing puts 1-s on the target and s/(V-1) elsewhere and `const` (the soft
    target's entropy) makes a perfect prediction cost 0. aux (all weighted sums): 'num_tokens'
    (sum of weights), 'z_loss', 'cross_entropy' (unsmoothed -log p(target)), 'accuracy'
    (count of argmax == target; argmax from `layers.ops(kernels)`, the same index with every
    kernel set). Divide by aux['num_tokens'] for a per-token mean.
    """
    logits = logits.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    vocab = logits.shape[-1]
    log_z = jax.nn.logsumexp(logits, axis=-1)
    # The target's logit through a one-hot product: a fused reduction whose gradient is an
    # elementwise product (take_along_axis would scatter into a zeroed [.., vocab] array).
    one_hot = jax.nn.one_hot(targets, vocab, dtype=jnp.float32)
    target_log_p = jnp.sum(one_hot * logits, axis=-1) - log_z
    if label_smoothing:
        on, off = 1.0 - label_smoothing, label_smoothing / (vocab - 1)
        const = -(on * jnp.log(on) + (vocab - 1) * off * jnp.log(off + 1e-20))
        sum_log_p = jnp.sum(logits, axis=-1) - vocab * log_z
        smoothed = -(on - off) * target_log_p - off * sum_log_p - const
    else:
        smoothed = -target_log_p
    z_term = z_loss * jnp.square(log_z)
    aux = {
        "num_tokens": jnp.sum(weights),
        "z_loss": jnp.sum(weights * z_term),
        "cross_entropy": jnp.sum(weights * -target_log_p),
        "accuracy": jnp.sum(weights * (layers.ops(kernels).argmax(logits) == targets)),
    }
    return jnp.sum(weights * (smoothed + z_term)), aux


class Model:
    """init / loss / score / predict for one model config (see module docstring for batches)."""

    def __init__(self, cfg):
        validate(cfg)
        self.cfg = cfg
        self.architecture = cfg.architecture
        self.spec = spec(cfg.architecture)
        self.feature_converters = FEATURE_CONVERTERS[cfg.architecture]
        self.module = make_module(cfg)
        self._predict_jit = jax.jit(self._predict, static_argnames=(
            "max_decode_length", "method", "temperature", "top_k", "top_p", "num_beams",
            "length_penalty", "eos_id"))

    # ------------------------------------------------------------------ forward
    def _inputs(self, batch):
        check_batch(batch, self.architecture)
        skip = {self.spec.loss_weights}
        if self.architecture == "encoder_only":  # MLM targets are what the network predicts
            skip.add(self.spec.targets)
        return {k: jnp.asarray(v) for k, v in batch.items() if k not in skip}

    def init(self, rng, batch):
        """Params (logically partitioned boxes) for batches shaped like `batch`."""
        variables = self.module.init({"params": rng, "dropout": rng}, **self._inputs(batch),
                                     deterministic=True)
        return variables["params"]

    def logits(self, params, batch, *, train: bool = False, dropout_rng=None,
               perturbations=None):
        """float32 logits [batch, length, vocab] (dropout only when train=True).

        perturbations: optional {'encoder_embedded'|'decoder_embedded': [b, l, d_model]} added
        to the embedded tokens; differentiate w.r.t. them for gradients per input position.
        """
        rngs = {}
        if train and self.cfg.dropout_rate > 0:
            if dropout_rng is None:
                raise ValueError(f"train=True with dropout_rate={self.cfg.dropout_rate} needs "
                                 "a dropout_rng")
            rngs = {"dropout": dropout_rng}
        variables = {"params": params}
        if perturbations is not None:
            variables["perturbations"] = perturbations
        return self.module.apply(variables, **self._inputs(batch), deterministic=not train,
                                 rngs=rngs)

    def loss(self, params, batch, *, dropout_rng=None, train: bool = False, z_loss: float = 0.0,
             label_smoothing: float = 0.0):
        """(sum_loss, aux): summed over target tokens, NOT averaged; see `cross_entropy`."""
        logits = self.logits(params, batch, train=train, dropout_rng=dropout_rng)
        return cross_entropy(logits, jnp.asarray(batch[self.spec.targets]),
                             jnp.asarray(batch[self.spec.loss_weights]), z_loss=z_loss,
                             label_smoothing=label_smoothing, kernels=self.cfg.kernels)

    def score(self, params, batch):
        """float32 [batch]: sum_t w_t * log p(target_t) (rank classification)."""
        logits = self.logits(params, batch)
        log_p = jax.nn.log_softmax(logits, axis=-1)
        targets = jnp.asarray(batch[self.spec.targets])
        token_lp = jnp.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
        weights = jnp.asarray(batch[self.spec.loss_weights], jnp.float32)
        return jnp.sum(token_lp * weights, axis=-1)

    # ------------------------------------------------------------------ decoding
    def predict(self, params, batch, *, max_decode_length: int, method: str = "greedy", rng=None,
                temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, num_beams: int = 4,
                length_penalty: float = 0.6, eos_id: int = 1, return_scores: bool = False,
                jit: bool = True):
        """Decoded token ids int32 [batch, max_decode_length] (0 after EOS).

        method: 'greedy'; 'sample' (temperature, top_k, top_p, rng); 'beam' (num_beams,
        length_penalty alpha; returns the best beam; with return_scores also all beams
        [batch, beams, length] and their scores). Encoder-decoder decodes from
        encoder_input_tokens; decoder-only continues the prompt = decoder_input_tokens where
        decoder_causal_attention is 1 (the input prefix plus the start token; just the start
        token when the key is absent). Packed batches cannot be decoded. jit=False runs
        untransformed, for use inside the caller's own jax.jit (e.g. with shardings).
        """
        if self.architecture not in PREDICT_REQUIRED:
            raise ValueError(f"predict is not defined for architecture {self.architecture!r}")
        if method not in ("greedy", "sample", "beam"):
            raise ValueError(f"predict method={method!r}: expected 'greedy', 'sample' or 'beam'")
        keep = ("encoder_input_tokens",) if self.architecture == "encoder_decoder" else (
            "decoder_input_tokens", "decoder_causal_attention")
        for key in batch:
            if "segment_ids" in key:
                raise ValueError(f"predict got packed key {key!r}: decode unpacked batches")
        check_batch({k: v for k, v in batch.items() if k in keep}, self.architecture,
                    PREDICT_REQUIRED[self.architecture])
        arrays = {k: jnp.asarray(v) for k, v in batch.items() if k in keep}
        if method == "sample" and rng is None:
            raise ValueError("predict(method='sample') needs rng")
        out = (self._predict_jit if jit else self._predict)(
            params, arrays, rng, max_decode_length=max_decode_length, method=method,
            temperature=float(temperature) if method == "sample" else 0.0, top_k=int(top_k),
            top_p=float(top_p), num_beams=int(num_beams) if method == "beam" else 1,
            length_penalty=length_penalty, eos_id=int(eos_id))
        return out if (return_scores and method == "beam") else out[0]

    def init_decoding(self, params, batch, max_decode_length: int, repeats: int = 1):
        """(tokens_to_logits, cache, first_tokens, first_index) for decoding.py's loops.

        Encoder-decoder: encodes once, empty cache of max_decode_length, start token 0 at 0.
        Decoder-only: prefills the cache with the prompt (see `predict`); the loop starts by
        re-feeding the prompt's last token at its own position. Each example is repeated
        `repeats` times (beams), copies adjacent.
        """
        if self.architecture == "encoder_decoder":
            return self._setup_encoder_decoder(params, batch, repeats, max_decode_length)
        return self._setup_decoder_only(params, batch, repeats, max_decode_length)

    def _predict(self, params, batch, rng, *, max_decode_length, method, temperature, top_k,
                 top_p, num_beams, length_penalty, eos_id):
        fn, cache, tokens, index = self.init_decoding(params, batch, max_decode_length, num_beams)
        if method != "beam":
            return (decoding.sample_decode(
                fn, cache, tokens, index, max_decode_length=max_decode_length, rng=rng,
                temperature=temperature, top_k=top_k, top_p=top_p, eos_id=eos_id),)
        n = tokens.shape[0] // num_beams
        seqs, scores = decoding.beam_search(
            fn, cache, tokens, index, batch_size=n, beam_size=num_beams,
            max_decode_length=max_decode_length, length_penalty=length_penalty, eos_id=eos_id)
        return seqs[:, 0], seqs, scores

    def _step_fn(self, params, decode_length, *args):
        """tokens_to_logits for decoding.py; extra args precede the new tokens (enc-dec)."""
        method = "decode" if self.architecture == "encoder_decoder" else None

        def apply(tokens, index, cache, **kwargs):
            variables = {"params": params} if cache is None else {"params": params,
                                                                  "cache": cache}
            tokens = tokens[:, None] if tokens.ndim == 1 else tokens
            logits, mutated = self.module.apply(
                variables, *args, tokens, decode=True, decode_index=index,
                decode_length=decode_length, mutable=["cache"], method=method, **kwargs)
            return logits[:, -1], mutated["cache"]
        return apply

    def _setup_encoder_decoder(self, params, batch, repeats, max_decode_length):
        enc_tokens = batch["encoder_input_tokens"]
        encoded = self.module.apply({"params": params}, enc_tokens, method="encode")
        encoded, enc_tokens = decoding.repeat_batch((encoded, enc_tokens), repeats)
        n = enc_tokens.shape[0]
        fn = self._step_fn(params, max_decode_length, encoded, enc_tokens)
        zeros = jnp.zeros((n,), jnp.int32)
        shapes = jax.eval_shape(lambda: fn(zeros, zeros, None)[1])
        cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return fn, cache, zeros, zeros

    def _setup_decoder_only(self, params, batch, repeats, max_decode_length):
        prompt = batch["decoder_input_tokens"]
        b, p = prompt.shape
        ca = batch.get("decoder_causal_attention")
        prompt_len = jnp.ones((b,), jnp.int32) if ca is None else \
            jnp.maximum(jnp.sum(ca, axis=-1).astype(jnp.int32), 1)
        in_prompt = (jnp.arange(p)[None] < prompt_len[:, None]).astype(jnp.int32)
        prompt = prompt * in_prompt
        fn = self._step_fn(params, p + max_decode_length)
        # Prefill: one pass over the prompt block writes its keys/values into a fresh cache.
        _, cache = fn(prompt, jnp.zeros((b,), jnp.int32), None, decoder_causal_attention=in_prompt)
        last = jnp.take_along_axis(prompt, (prompt_len - 1)[:, None], axis=1)[:, 0]
        cache, last, index = decoding.repeat_batch((cache, last, prompt_len - 1), repeats)
        return fn, cache, last, index


def example_batch(architecture: str, batch_size: int = 1, length: int = 4) -> dict:
    """A minimal valid batch (ones; decoder inputs zero) for `init` and `jax.eval_shape`."""
    lengths = {"inputs": length, "targets": length}
    batch = {k: np.ones(s.shape, s.dtype) for k, s in spec(architecture).shapes(
        lengths, batch_size).items() if k not in MAY_OMIT}
    if "decoder_input_tokens" in batch:
        batch["decoder_input_tokens"] = np.zeros_like(batch["decoder_input_tokens"])
    return batch


@functools.lru_cache(maxsize=32)
def _cached_build(cfg_json: str) -> Model:
    return Model(ml_collections.ConfigDict(json.loads(cfg_json)))


def build_model(cfg) -> Model:
    """The Model for `cfg` (a ConfigDict from variants.get_model_config). Equal configs share
    one Model, so its jitted predict is compiled once per shape."""
    return _cached_build(cfg.to_json())
