"""Transformer building blocks: params tagged with logical axes, masks, position schemes.

Logical axis names used on params (map them to mesh axes with ONE rules table, e.g. in
t2t/sharding.py, via `nn.get_partition_spec` + `nn.logical_to_mesh_sharding`):

  'vocab'           token embedding rows / output-logit columns
  'embed'           the model width d_model
  'mlp'             the feed-forward hidden width d_ff
  'heads'           attention heads (also the key/value heads of grouped-query attention)
  'kv'              per-head width head_dim
  'joined_kv'       heads*head_dim flattened (reserved for rules tables shared with t5x; unused here)
  'relpos_buckets'  T5 relative-position buckets
  'layers'          stacked layer index of scanned stacks (cfg.scan_layers; transformer.py)
  None              replicated (norm scales, absolute position tables' length axis)

Activations are constrained (`nn.with_logical_constraint`, a no-op without rules in scope) with
'batch', 'length', 'embed', 'mlp', 'heads', 'kv'.

The matmuls, the relative-bias batch broadcast and argmax come from `ops(kernels)`: the plain JAX
versions here (kernels='xla'), or cpu_kernels.py's CPU-tuned ones ('cpu_tuned'); the modules'
`kernels` attribute names the set (the model config field `kernels`; 'auto' picks by backend).
"""
from __future__ import annotations

import math
import sys
import types
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from t2t.models import cpu_kernels

LOGICAL_AXES = ("vocab", "embed", "mlp", "heads", "kv", "joined_kv", "relpos_buckets", "layers",
                "length", "batch")
NEG_INF = -1e10
Dtype = Any

ACTIVATIONS = ("relu", "gelu", "gated-gelu", "swiglu")


def _dtype(name) -> Dtype:
    return jnp.dtype(name) if isinstance(name, str) else name


def constrain(x, axes):
    """Shards an activation by logical axes when a rules table is in scope."""
    return nn.with_logical_constraint(x, axes)


# ----------------------------------------------------------------------------- kernels
def _matmul(a, b, dims):
    """dot_general accumulated and returned in float32, then cast to a's dtype.

    XLA's CPU backend runs a bfloat16 dot with a bfloat16 result at float32 speed (it widens
    the operands) but one with a float32 result on the CPU's bf16 units; on accelerators f32
    accumulation is what the matmul units do anyway."""
    out = jax.lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)
    return out.astype(a.dtype)


def _contract(x, kernel, num_in: int):
    """x [..., *in] . kernel [*in, *out] -> [..., *out]."""
    dims = (tuple(range(x.ndim - num_in, x.ndim)), tuple(range(num_in)))
    return _matmul(x, kernel, (dims, ((), ())))


# The plain versions below are differentiated by XLA itself; cpu_kernels.py holds CPU-tuned
# versions of the same functions (same values), chosen by the model config field `kernels`.
def dense(x, kernel, num_in: int = 1):
    """x [..., *in] . kernel [*in, *out] with the kernel cast to x's dtype -> [..., *out] in x's
    dtype, accumulated in float32."""
    return _contract(x, kernel.astype(x.dtype), num_in)


def attention_scores(q, k):
    """q [..., q, d] . k [..., k, d] -> float32 scores [..., q, k] (compute-dtype inputs)."""
    return jnp.einsum("...qd,...kd->...qk", q, k, preferred_element_type=jnp.float32)


def attention_values(w, v):
    """Attention weights w [..., q, k] . v [..., k, d] -> [..., q, d] in v's dtype, accumulated
    in float32."""
    out = jnp.einsum("...qk,...kd->...qd", w, v, preferred_element_type=jnp.float32)
    return out.astype(v.dtype)


def expand_batch(x, n: int):
    """x [1, ...] broadcast to [n, ...]."""
    return jnp.broadcast_to(x, (n,) + x.shape[1:])


def argmax(logits):
    """Index of the maximum over the last axis (the first one on ties)."""
    return jnp.argmax(logits, axis=-1)


KERNELS = ("auto", "xla", "cpu_tuned")
# The same five functions from each module, by kernels name.
_OPS = {name: types.SimpleNamespace(**{op: getattr(module, op) for op in cpu_kernels.OPS_NAMES})
        for name, module in (("xla", sys.modules[__name__]), ("cpu_tuned", cpu_kernels))}


def resolve_kernels(name: str) -> str:
    """The model config's `kernels` -> 'xla' | 'cpu_tuned'; 'auto' is 'cpu_tuned' where
    cpu_kernels says it is the faster set (the CPU backend) and 'xla' elsewhere."""
    if name not in KERNELS:
        raise ValueError(f"model config kernels={name!r}: expected one of {KERNELS}")
    if name == "auto":
        return "cpu_tuned" if cpu_kernels.for_this_backend() else "xla"
    return name


def ops(kernels: str) -> types.SimpleNamespace:
    """dense, attention_scores, attention_values, expand_batch, argmax for a `kernels` name."""
    return _OPS[resolve_kernels(kernels)]


# ----------------------------------------------------------------------------- dense / embed
class DenseGeneral(nn.Module):
    """Bias-free dense layer contracting the trailing `num_in` axes into `features`."""
    features: tuple[int, ...]
    kernel_axes: tuple[str | None, ...]
    num_in: int = 1
    kernel_init: Callable = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernels: str = "xla"  # see `ops`

    @nn.compact
    def __call__(self, x):
        in_shape = tuple(x.shape[-self.num_in:])
        shape = in_shape + tuple(self.features)
        flat = (int(np.prod(in_shape)), int(np.prod(self.features)))
        # Initialise as a 2-D [fan_in, fan_out] matrix so fans count all contracted axes.
        init = nn.with_logical_partitioning(
            lambda key, s, d: self.kernel_init(key, flat, d).reshape(s), self.kernel_axes)
        kernel = self.param("kernel", init, shape, _dtype(self.param_dtype))
        return ops(self.kernels).dense(jnp.asarray(x, _dtype(self.dtype)), kernel, self.num_in)


class Embed(nn.Module):
    """Token embedding [vocab, embed]; `attend` gives output logits through the same table."""
    num_embeddings: int
    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        init = nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed"))
        self.embedding = self.param("embedding", init, (self.num_embeddings, self.features),
                                    _dtype(self.param_dtype))

    def __call__(self, ids):
        # Gather the rows, then cast: casting the whole table first costs a pass over it.
        return jnp.asarray(jnp.take(self.embedding, ids, axis=0), _dtype(self.dtype))

    def attend(self, x):
        table = jnp.asarray(self.embedding, _dtype(self.dtype))
        return _matmul(jnp.asarray(x, table.dtype), table, (((x.ndim - 1,), (1,)), ((), ())))


# ----------------------------------------------------------------------------- norms / MLP
class RMSNorm(nn.Module):
    """T5's layer norm: scale only, no mean subtraction, statistics in float32."""
    epsilon: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x32 = jnp.asarray(x, jnp.float32)
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                           (x.shape[-1],), _dtype(self.param_dtype))
        y = x32 * jax.lax.rsqrt(var + self.epsilon)
        return jnp.asarray(y * jnp.asarray(scale, jnp.float32), _dtype(self.dtype))


class LayerNorm(nn.Module):
    """Standard LayerNorm (scale and bias), statistics in float32."""
    epsilon: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x32 = jnp.asarray(x, jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        d = x.shape[-1]
        pd = _dtype(self.param_dtype)
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                           (d,), pd)
        bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
                          (d,), pd)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
        return jnp.asarray(y, _dtype(self.dtype))


def make_norm(cfg, name: str) -> nn.Module:
    """'rms' (T5) or 'layer' (LayerNorm) from cfg.norm."""
    cls = {"rms": RMSNorm, "layer": LayerNorm}.get(cfg.norm)
    if cls is None:
        raise ValueError(f"model config norm={cfg.norm!r}: expected 'rms' or 'layer'")
    return cls(epsilon=cfg.norm_epsilon, dtype=cfg.dtype, param_dtype=cfg.param_dtype, name=name)


class Mlp(nn.Module):
    """Feed-forward block: relu / gelu (exact) / gated-gelu (tanh gelu, T5.1.1) / swiglu."""
    d_ff: int
    activation: str
    dropout_rate: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernels: str = "xla"  # see `ops`

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"model config activation={self.activation!r}: expected one of "
                             f"{ACTIVATIONS}")
        dense = lambda f, axes, name: DenseGeneral(  # noqa: E731
            (f,), axes, dtype=self.dtype, param_dtype=self.param_dtype, kernels=self.kernels,
            name=name)
        if self.activation in ("gated-gelu", "swiglu"):
            act = (lambda v: nn.gelu(v, approximate=True)) if self.activation == "gated-gelu" \
                else nn.silu
            h = act(dense(self.d_ff, ("embed", "mlp"), "wi_0")(x)) * \
                dense(self.d_ff, ("embed", "mlp"), "wi_1")(x)
        else:
            act = nn.relu if self.activation == "relu" else (lambda v: nn.gelu(v, approximate=False))
            h = act(dense(self.d_ff, ("embed", "mlp"), "wi")(x))
        h = constrain(h, ("batch", "length", "mlp"))
        h = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(h, deterministic=deterministic)
        return dense(x.shape[-1], ("mlp", "embed"), "wo")(h)


# ----------------------------------------------------------------------------- positions
def relative_position_bucket(relative_position, bidirectional: bool, num_buckets: int = 32,
                             max_distance: int = 128):
    """T5's bucketing of (key - query) distances: exact below num_buckets/2, log-spaced above."""
    ret = jnp.zeros_like(relative_position)
    n = relative_position
    if bidirectional:
        num_buckets //= 2
        ret = ret + (n > 0).astype(n.dtype) * num_buckets
        n = jnp.abs(n)
    else:
        n = -jnp.minimum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    n_f = jnp.maximum(n, 1).astype(jnp.float32)
    large = max_exact + (jnp.log(n_f / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).astype(n.dtype)
    large = jnp.minimum(large, num_buckets - 1)
    return ret + jnp.where(is_small, n, large)


class RelativePositionBias(nn.Module):
    """T5 relative position bias [heads, buckets], one table per stack shared by its layers."""
    num_heads: int
    num_buckets: int = 32
    max_distance: int = 128
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, q_pos, k_pos, bidirectional: bool):
        """q_pos [b, q] and k_pos [b, k] int positions -> float32 bias [b, heads, q, k]."""
        init = nn.with_logical_partitioning(
            nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"), ("heads", "relpos_buckets"))
        table = self.param("rel_embedding", init, (self.num_heads, self.num_buckets),
                           _dtype(self.param_dtype))
        rel = k_pos[:, None, :] - q_pos[:, :, None]
        buckets = relative_position_bucket(rel, bidirectional, self.num_buckets, self.max_distance)
        bias = jnp.take(jnp.asarray(table, jnp.float32), buckets, axis=1)  # [h, b, q, k]
        return jnp.transpose(bias, (1, 0, 2, 3))


def alibi_slopes(num_heads: int) -> np.ndarray:
    """ALiBi head slopes (Press et al.): geometric 2^(-8/n) series, interleaved for non-powers of 2."""
    def power_of_2(n):
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start ** i for i in range(n)]
    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = power_of_2(closest)
    if closest < num_heads:
        slopes += power_of_2(2 * closest)[0::2][: num_heads - closest]
    return np.asarray(slopes, np.float32)


def alibi_bias(num_heads: int, q_pos, k_pos):
    """-slope * |k - q| as float32 [b, heads, q, k]."""
    dist = jnp.abs(k_pos[:, None, :] - q_pos[:, :, None]).astype(jnp.float32)
    return -jnp.asarray(alibi_slopes(num_heads))[None, :, None, None] * dist[:, None]


def sinusoidal(positions, features: int, max_wavelength: float = 10_000.0):
    """Fixed [sin | cos] position features for int positions [b, l] -> [b, l, features]."""
    half = features // 2
    timescale = max_wavelength ** (np.arange(half, dtype=np.float32) / max(half - 1, 1))
    angles = positions[..., None].astype(jnp.float32) / timescale
    out = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    return jnp.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, features - 2 * half)])


def apply_rope(x, positions, max_wavelength: float = 10_000.0):
    """Rotary embedding on x [b, l, h, d] (rotate-half form) at int positions [b, l]."""
    d = x.shape[-1]
    if d % 2:
        raise ValueError(f"rope needs an even head_dim, got head_dim={d}")
    inv = 1.0 / (max_wavelength ** (np.arange(0, d, 2, dtype=np.float32) / d))
    angles = positions[..., None].astype(jnp.float32) * inv  # [b, l, d/2]
    sin, cos = jnp.sin(angles)[:, :, None, :], jnp.cos(angles)[:, :, None, :]
    cos = jnp.concatenate([cos, cos], axis=-1)   # [b, l, 1, d]: small
    sin = jnp.concatenate([-sin, sin], axis=-1)
    dtype, x = x.dtype, x.astype(jnp.float32)
    # rotate_half(x) = [-x2, x1]: the halves swapped by a reverse, which XLA fuses into the
    # elementwise loop (a concatenation of the rotated halves is a pass of its own).
    swapped = jnp.flip(x.reshape(x.shape[:-1] + (2, d // 2)), axis=-2).reshape(x.shape)
    return (x * cos + swapped * sin).astype(dtype)


# ----------------------------------------------------------------------------- masks
def attention_mask(q_valid, k_valid):
    """[b, q] and [b, k] booleans -> [b, 1, q, k] mask (True = may attend)."""
    return jnp.logical_and(q_valid[:, None, :, None], k_valid[:, None, None, :])


def segment_mask(q_segments, k_segments):
    """Packed sequences: attend only within the same segment id."""
    return q_segments[:, None, :, None] == k_segments[:, None, None, :]


def causal_mask(q_pos, k_pos):
    """Key position <= query position, from [b, q] and [b, k] int positions."""
    return k_pos[:, None, None, :] <= q_pos[:, None, :, None]


def prefix_mask(q_prefix, k_prefix):
    """Prefix LM: positions marked by decoder_causal_attention see each other bidirectionally."""
    return attention_mask(q_prefix.astype(bool), k_prefix.astype(bool))


def mask_to_bias(mask):
    """Boolean mask -> additive float32 bias (0 where allowed, -1e10 where masked)."""
    return jnp.where(mask, 0.0, NEG_INF).astype(jnp.float32)


# ----------------------------------------------------------------------------- attention
# Query block of causal self-attention (MultiHeadAttention(causal=True)): longer sequences skip
# the key blocks after each query block.
CAUSAL_BLOCK = 128


class MultiHeadAttention(nn.Module):
    """Dot-product attention, T5 style: no 1/sqrt(d) scaling (folded into the query init).

    num_kv_heads < num_heads gives grouped-query (1 = multi-query) attention. With `decode=True`
    new keys/values are written into a 'cache' collection at per-example `decode_index` and the
    queries attend over the whole cache of length `decode_length`. `causal=True` promises a
    self-attention mask (in `bias`) that allows no key after its query, and skips those keys.
    """
    num_heads: int
    num_kv_heads: int
    head_dim: int
    dropout_rate: float = 0.0
    rope: bool = False
    rope_max_wavelength: float = 10_000.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    kernels: str = "xla"  # see `ops`

    def _dense(self, heads, name, init):
        return DenseGeneral((heads, self.head_dim), ("embed", "heads", "kv"), kernel_init=init,
                            dtype=self.dtype, param_dtype=self.param_dtype, kernels=self.kernels,
                            name=name)

    @nn.compact
    def __call__(self, x_q, x_kv, bias, *, q_positions=None, k_positions=None, decode=False,
                 decode_index=None, decode_length=0, deterministic=True, causal=False):
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads={self.num_heads} must be a multiple of "
                             f"num_kv_heads={self.num_kv_heads}")
        base = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
        q_init = lambda k, s, d: base(k, s, d) / math.sqrt(self.head_dim)  # noqa: E731
        q = self._dense(self.num_heads, "query", q_init)(x_q)
        k = self._dense(self.num_kv_heads, "key", base)(x_kv)
        v = self._dense(self.num_kv_heads, "value", base)(x_kv)
        if self.rope:
            q = apply_rope(q, q_positions, self.rope_max_wavelength)
            k = apply_rope(k, k_positions, self.rope_max_wavelength)
        q = constrain(q, ("batch", "length", "heads", "kv"))
        if decode:
            k, v = self._update_cache(k, v, decode_index, decode_length)
        if causal and not decode and q.shape[1] == k.shape[1] > CAUSAL_BLOCK:
            out = self._attend_causal_blocks(q, k, v, bias, deterministic)
        else:
            out = self._attend(q, k, v, bias, deterministic)
        return DenseGeneral((x_q.shape[-1],), ("heads", "kv", "embed"), num_in=2, kernel_init=base,
                            dtype=self.dtype, param_dtype=self.param_dtype, kernels=self.kernels,
                            name="out")(out)

    def _update_cache(self, k, v, index, length):
        """Writes k, v [b, n, h, d] at positions index[b] + arange(n); returns the full cache."""
        b, n, h, d = k.shape
        ck = self.variable("cache", "cached_key", jnp.zeros, (b, length, h, d), k.dtype)
        cv = self.variable("cache", "cached_value", jnp.zeros, (b, length, h, d), v.dtype)
        rows = jnp.arange(b)[:, None]
        cols = index[:, None] + jnp.arange(n)[None, :]
        ck.value = ck.value.at[rows, cols].set(k, mode="drop")
        cv.value = cv.value.at[rows, cols].set(v, mode="drop")
        return ck.value, cv.value

    def _attend_causal_blocks(self, q, k, v, bias, deterministic):
        """`_attend` for a self-attention mask that allows no key after its query (`causal=True`):
        queries in blocks of CAUSAL_BLOCK, each over the keys up to its last query only. The
        skipped keys are masked for every query of the block (their weights are exactly 0), so
        the outputs are those of `_attend`, for ~half the attention FLOPs at long lengths."""
        outs = []
        for start in range(0, q.shape[1], CAUSAL_BLOCK):
            end = min(start + CAUSAL_BLOCK, q.shape[1])
            block_bias = None if bias is None else bias[:, :, start:end, :end]
            outs.append(self._attend(q[:, start:end], k[:, :end], v[:, :end], block_bias,
                                     deterministic))
        return jnp.concatenate(outs, axis=1)

    def _attend(self, q, k, v, bias, deterministic):
        b, lq, h, d = q.shape
        hk, lk = self.num_kv_heads, k.shape[1]
        g = h // hk
        # Heads-major [b, kv_heads, groups * q, d]: query heads sharing a key/value head are
        # rows of one matrix (head index = kv_head * groups + group, as the projections lay out).
        qh = q.reshape(b, lq, hk, g, d).transpose(0, 2, 3, 1, 4).reshape(b, hk, g * lq, d)
        kernels = ops(self.kernels)
        logits = kernels.attention_scores(qh, jnp.swapaxes(k, 1, 2).astype(q.dtype))
        logits = logits.reshape(b, h, lq, lk)
        if bias is not None:
            logits = logits + bias
        weights = jax.nn.softmax(logits, axis=-1)
        weights = nn.Dropout(self.dropout_rate)(weights, deterministic=deterministic)
        dt = _dtype(self.dtype)
        weights = weights.reshape(b, hk, g * lq, lk).astype(dt)
        out = kernels.attention_values(weights, jnp.swapaxes(v, 1, 2).astype(dt))
        return out.reshape(b, hk, g, lq, d).transpose(0, 3, 1, 2, 4).reshape(b, lq, h, d)
