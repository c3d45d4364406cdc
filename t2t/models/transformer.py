"""The T5 study's architectures as pure Flax linen modules on the layers of layers.py.

`EncoderDecoder` (separate or shared stacks), `DecoderOnly` (causal or prefix-LM mask) and
`EncoderOnly` (MLM). Each returns float32 logits [batch, length, vocab]; none sees the loss,
optimizer or data. Args are the batch-contract arrays (see model.py for the key mapping).

Decoding (`decode=True`): keys/values live in the 'cache' collection; callers pass per-example
`decode_index` [batch] (position of the first token fed) and the static `decode_length`.

cfg.scan_layers runs a stack's layers with `nn.scan` (one traced layer, so compile time stops
growing with depth); params are then `<stack>/layers/...` with a leading 'layers' axis and cache
leaves [batch, layers, ...] (batch stays leading, as decoding.py expects). cfg.remat_policy
rematerialises each layer in the backward pass. Neither changes the numbers. cfg.kernels picks
plain or CPU-tuned matmul kernels (layers.ops; cpu_kernels.py): the same values either way.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from t2t.models import layers as L
from t2t.models import variants
from t2t.models.variants import kv_heads


def _arange(batch_like, length):
    return jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32)[None], (batch_like, length))


class Layer(nn.Module):
    """Pre-norm residual block: self-attention, [cross-attention], MLP."""
    cfg: object

    def _attention(self, name, rope):
        c = self.cfg
        return L.MultiHeadAttention(
            num_heads=c.num_heads, num_kv_heads=kv_heads(c), head_dim=c.head_dim,
            dropout_rate=c.dropout_rate, rope=rope, rope_max_wavelength=c.rope_max_wavelength,
            dtype=c.dtype, param_dtype=c.param_dtype, kernels=L.resolve_kernels(c.kernels),
            name=name)

    @nn.compact
    def __call__(self, x, self_bias, positions, *, encoded=None, cross_bias=None, decode=False,
                 decode_index=None, decode_length=0, deterministic=True, causal=False):
        c = self.cfg
        drop = lambda y: nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(  # noqa: E731
            y, deterministic=deterministic)
        h = L.make_norm(c, "pre_self_attention_norm")(x)
        h = self._attention("self_attention", c.position == "rope")(
            h, h, self_bias, q_positions=positions, k_positions=positions, decode=decode,
            decode_index=decode_index, decode_length=decode_length, deterministic=deterministic,
            causal=causal)
        x = x + drop(h)
        if encoded is not None:
            h = L.make_norm(c, "pre_cross_attention_norm")(x)
            h = self._attention("encoder_decoder_attention", False)(
                h, encoded, cross_bias, deterministic=deterministic)
            x = x + drop(h)
        h = L.make_norm(c, "pre_mlp_norm")(x)
        h = L.Mlp(c.d_ff, c.activation, c.dropout_rate, dtype=c.dtype, param_dtype=c.param_dtype,
                  kernels=L.resolve_kernels(c.kernels), name="mlp")(h, deterministic=deterministic)
        return L.constrain(x + drop(h), ("batch", "length", "embed"))


def _layer_fn(cfg, **static):
    """fn(layer, x, bias, positions, encoded, cross_bias, decode_index) -> x: one Layer call with
    the Python-valued arguments bound (lifted transforms trace the rest), rematerialised as
    cfg.remat_policy says (variants.validate checked the name). Inside a scan CSE cannot merge
    the recomputation, so prevent_cse=False spares the barriers there."""
    def call(layer, x, bias, positions, encoded, cross_bias, decode_index):
        return layer(x, bias, positions, encoded=encoded, cross_bias=cross_bias,
                     decode_index=decode_index, **static)
    if cfg.remat_policy == "none":
        return call
    return nn.remat(call, policy=variants.REMAT_SAVE[cfg.remat_policy],
                    prevent_cse=not cfg.scan_layers)


def _scanned(fn, num_layers: int):
    """`fn` applied num_layers times by nn.scan: params stacked on a leading axis tagged 'layers'
    (sharding.RULES replicates it), cache on axis 1, a fresh params/dropout rng per layer;
    the non-carry arguments are the same for every layer."""
    def body(layer, x, *args):
        return fn(layer, x, *args), None
    return nn.scan(body, variable_axes={"params": 0, "cache": 1},
                   split_rngs={"params": True, "dropout": True}, in_axes=nn.broadcast,
                   length=num_layers, metadata_params={nn.PARTITION_NAME: "layers"})


class Stack(nn.Module):
    """Position scheme + `num_layers` Layers (looped, or scanned with cfg.scan_layers) + final
    norm. One relative-bias table per stack, outside the scan."""
    cfg: object
    num_layers: int

    @nn.compact
    def __call__(self, x, self_mask, *, positions, q_pos, k_pos, causal, encoded=None,
                 cross_mask=None, decode=False, decode_index=None, decode_length=0,
                 deterministic=True, within_causal=False):
        """x: embedded tokens [b, l, d]; positions [b, l] per-token (packed) positions for
        absolute/sinusoidal/rope; q_pos/k_pos [b|1, q|k] sequence indices for relative/alibi.
        `causal`: unidirectional relative positions; `within_causal`: self_mask allows no key
        after its query (not a prefix LM's), so attention may skip those keys."""
        c = self.cfg
        if c.position == "absolute":
            init = nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed"))
            table = self.param("pos_embedding", init, (c.max_length, c.d_model),
                               L._dtype(c.param_dtype))
            x = x + jnp.take(jnp.asarray(table, x.dtype), positions, axis=0)
        elif c.position == "sinusoidal":
            x = x + L.sinusoidal(positions, c.d_model).astype(x.dtype)
        x = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
        bias = L.mask_to_bias(self_mask)
        if c.position == "relative":
            rel = L.RelativePositionBias(
                c.num_heads, c.relative_num_buckets, c.relative_max_distance,
                param_dtype=c.param_dtype, name="relpos_bias")(q_pos, k_pos, not causal)
            if rel.shape[0] == 1 < bias.shape[0]:  # one bias for the batch
                rel = L.ops(c.kernels).expand_batch(rel, bias.shape[0])
            bias = bias + rel
        elif c.position == "alibi":
            bias = bias + L.alibi_bias(c.num_heads, q_pos, k_pos)
        cross_bias = None if cross_mask is None else L.mask_to_bias(cross_mask)
        fn = _layer_fn(c, decode=decode, decode_length=decode_length, deterministic=deterministic,
                       causal=within_causal)
        args = (bias, positions, encoded, cross_bias, decode_index)
        if c.scan_layers:
            x, _ = _scanned(fn, self.num_layers)(Layer(c, name="layers"), x, *args)
        else:
            for i in range(self.num_layers):
                x = fn(Layer(c, name=f"layers_{i}"), x, *args)
        x = L.make_norm(c, "final_norm")(x)
        return nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)


class _Base(nn.Module):
    """Token embedding and output logits shared by the three architectures."""
    cfg: object

    def _setup_io(self):
        """Token embedder and, when untied, the output projection (call from setup)."""
        c = self.cfg
        self.token_embedder = L.Embed(c.vocab_size, c.d_model, dtype=c.dtype,
                                      param_dtype=c.param_dtype, name="token_embedder")
        if not c.tie_embeddings:
            self.logits_dense = L.DenseGeneral((c.vocab_size,), ("embed", "vocab"), dtype=c.dtype,
                                               param_dtype=c.param_dtype,
                                               kernels=L.resolve_kernels(c.kernels),
                                               name="logits_dense")

    def _run_encoder(self, stack, tokens, segment_ids, positions, deterministic):
        """Bidirectional stack over tokens, masking padding (id 0) and other packed segments."""
        b, n = tokens.shape
        x = self.perturb("encoder_embedded", self.token_embedder(tokens))
        valid = tokens > 0
        mask = L.attention_mask(valid, valid)
        if segment_ids is not None:
            mask = jnp.logical_and(mask, L.segment_mask(segment_ids, segment_ids))
        idx = _arange(1, n)
        positions = _arange(b, n) if positions is None else positions
        return stack(x, mask, positions=positions, q_pos=idx, k_pos=idx, causal=False,
                     deterministic=deterministic)

    def _logits(self, y):
        c = self.cfg
        if c.tie_embeddings:  # T5 v1.0: rescale by d_model^-0.5 before the shared table
            logits = self.token_embedder.attend(y) / jnp.sqrt(jnp.asarray(c.d_model, y.dtype))
        else:
            logits = self.logits_dense(y)
        return L.constrain(logits.astype(jnp.float32), ("batch", "length", "vocab"))


def decoder_self_mask(target_tokens, segment_ids, causal_attention, prefix_lm: bool):
    """Training-time decoder mask: causal, padding (targets > 0), packing, prefix-LM."""
    b, n = target_tokens.shape
    idx = _arange(b, n)
    mask = L.causal_mask(idx, idx)
    if prefix_lm and causal_attention is not None:
        mask = jnp.logical_or(mask, L.prefix_mask(causal_attention, causal_attention))
    valid = target_tokens > 0
    mask = jnp.logical_and(mask, L.attention_mask(valid, valid))
    if segment_ids is not None:
        mask = jnp.logical_and(mask, L.segment_mask(segment_ids, segment_ids))
    return mask


def decode_self_mask(decode_index, n, decode_length, causal_attention, prefix_lm: bool):
    """Decode-time mask for n new queries at decode_index[b] + arange(n) over the whole cache."""
    b = decode_index.shape[0]
    q_pos = decode_index[:, None] + jnp.arange(n, dtype=jnp.int32)[None]
    k_pos = _arange(b, decode_length)
    mask = L.causal_mask(q_pos, k_pos)
    if prefix_lm and causal_attention is not None:  # prefill block marks its prefix positions
        k_prefix = jnp.zeros((b, decode_length), causal_attention.dtype).at[:, :n].set(
            causal_attention)
        mask = jnp.logical_or(mask, L.prefix_mask(causal_attention, k_prefix))
    return mask, q_pos, k_pos


class EncoderDecoder(_Base):
    """T5: encoder and decoder stacks (separate, or one shared stack), tied or untied logits."""

    def setup(self):
        c = self.cfg
        self._setup_io()
        self.encoder = Stack(c, c.num_encoder_layers, name="encoder")
        self.decoder = self.encoder if c.shared_encoder_decoder else \
            Stack(c, c.num_decoder_layers, name="decoder")

    def encode(self, encoder_input_tokens, encoder_segment_ids=None, encoder_positions=None,
               deterministic=True):
        return self._run_encoder(self.encoder, encoder_input_tokens, encoder_segment_ids,
                                 encoder_positions, deterministic)

    def decode(self, encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens=None,
               encoder_segment_ids=None, decoder_segment_ids=None, decoder_positions=None, *,
               decode=False, decode_index=None, decode_length=0, deterministic=True):
        b, n = decoder_input_tokens.shape
        y = self.perturb("decoder_embedded", self.token_embedder(decoder_input_tokens))
        enc_valid = encoder_input_tokens > 0
        if decode:
            mask, q_pos, k_pos = decode_self_mask(decode_index, n, decode_length, None, False)
            positions = q_pos
            cross = L.attention_mask(jnp.ones((b, n), bool), enc_valid)
        else:
            mask = decoder_self_mask(decoder_target_tokens, decoder_segment_ids, None, False)
            q_pos = k_pos = _arange(1, n)
            positions = _arange(b, n) if decoder_positions is None else decoder_positions
            cross = L.attention_mask(decoder_target_tokens > 0, enc_valid)
            if decoder_segment_ids is not None:
                cross = jnp.logical_and(cross, L.segment_mask(decoder_segment_ids,
                                                              encoder_segment_ids))
        y = self.decoder(y, mask, positions=positions, q_pos=q_pos, k_pos=k_pos, causal=True,
                         encoded=encoded, cross_mask=cross, decode=decode,
                         decode_index=decode_index, decode_length=decode_length,
                         deterministic=deterministic, within_causal=True)
        return self._logits(y)

    def __call__(self, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
                 encoder_segment_ids=None, decoder_segment_ids=None, encoder_positions=None,
                 decoder_positions=None, deterministic=True):
        encoded = self.encode(encoder_input_tokens, encoder_segment_ids, encoder_positions,
                              deterministic)
        return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                           decoder_target_tokens, encoder_segment_ids, decoder_segment_ids,
                           decoder_positions, deterministic=deterministic)


class DecoderOnly(_Base):
    """Language model; with cfg.prefix_lm the decoder_causal_attention prefix is fully visible."""

    def setup(self):
        self._setup_io()
        self.decoder = Stack(self.cfg, self.cfg.num_decoder_layers, name="decoder")

    def __call__(self, decoder_input_tokens, decoder_target_tokens=None, decoder_segment_ids=None,
                 decoder_positions=None, decoder_causal_attention=None, *, decode=False,
                 decode_index=None, decode_length=0, deterministic=True):
        b, n = decoder_input_tokens.shape
        y = self.perturb("decoder_embedded", self.token_embedder(decoder_input_tokens))
        prefix = self.cfg.prefix_lm
        if decode:
            mask, q_pos, k_pos = decode_self_mask(decode_index, n, decode_length,
                                                  decoder_causal_attention, prefix)
            positions = q_pos
        else:
            mask = decoder_self_mask(decoder_target_tokens, decoder_segment_ids,
                                     decoder_causal_attention, prefix)
            q_pos = k_pos = _arange(1, n)
            positions = _arange(b, n) if decoder_positions is None else decoder_positions
        y = self.decoder(y, mask, positions=positions, q_pos=q_pos, k_pos=k_pos, causal=True,
                         decode=decode, decode_index=decode_index, decode_length=decode_length,
                         deterministic=deterministic,
                         within_causal=not (prefix and decoder_causal_attention is not None))
        return self._logits(y)


class EncoderOnly(_Base):
    """BERT-style bidirectional stack with per-position vocabulary logits (for MLM)."""

    def setup(self):
        self._setup_io()
        self.encoder = Stack(self.cfg, self.cfg.num_encoder_layers, name="encoder")

    def __call__(self, encoder_input_tokens, encoder_segment_ids=None, encoder_positions=None,
                 deterministic=True):
        x = self._run_encoder(self.encoder, encoder_input_tokens, encoder_segment_ids,
                              encoder_positions, deterministic)
        return self._logits(x)


ARCHITECTURE_MODULES = {"encoder_decoder": EncoderDecoder, "decoder_only": DecoderOnly,
                        "encoder_only": EncoderOnly}


def make_module(cfg) -> nn.Module:
    """The linen module named by cfg.architecture."""
    if cfg.architecture not in ARCHITECTURE_MODULES:
        raise ValueError(f"model config architecture={cfg.architecture!r}: expected one of "
                         f"{sorted(ARCHITECTURE_MODULES)}")
    return ARCHITECTURE_MODULES[cfg.architecture](ml_collections.FrozenConfigDict(cfg))
