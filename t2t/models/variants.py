"""Named model shapes (T5 v1.0 / v1.1, the T5 paper's Table 2 family, tiny test shapes),
plus parameter counts and training FLOPs per target token for any config.

`get_model_config(name, **overrides)` returns an ml_collections.ConfigDict with the fields of
`base_config()`; `architecture` picks the network ('encoder_decoder', 'decoder_only',
'encoder_only') and every other field is shared by all three.
"""
from __future__ import annotations

import jax
import ml_collections

ARCHITECTURES = ("encoder_decoder", "decoder_only", "encoder_only")
POSITIONS = ("relative", "absolute", "sinusoidal", "rope", "alibi")
GATED = ("gated-gelu", "swiglu")
# Rematerialisation of each Layer in the backward pass: name -> what jax.checkpoint saves.
# 'none' keeps every activation (no remat); 'full' recomputes the whole layer (least memory);
# 'dots' keeps the outputs of matmuls without batch dimensions (the projections) and
# recomputes the rest (attention scores, softmax, activations, norms).
REMAT_SAVE = {"full": None, "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}
REMAT_POLICIES = ("none", *REMAT_SAVE)


def base_config() -> ml_collections.ConfigDict:
    """Every model field with its default (T5 v1.0 small shape)."""
    return ml_collections.ConfigDict(dict(
        architecture="encoder_decoder",
        vocab_size=32128,
        d_model=512,
        num_heads=8,
        num_kv_heads=0,            # 0 = same as num_heads; fewer gives grouped/multi-query attention
        head_dim=64,
        d_ff=2048,
        num_encoder_layers=6,
        num_decoder_layers=6,
        activation="relu",          # relu | gelu | gated-gelu | swiglu
        dropout_rate=0.1,
        dtype="bfloat16",           # activation / compute dtype
        param_dtype="float32",
        position="relative",        # relative | absolute | sinusoidal | rope | alibi
        relative_num_buckets=32,
        relative_max_distance=128,
        max_length=2048,            # size of the learned absolute position table
        rope_max_wavelength=10_000.0,
        norm="rms",                 # rms (T5) | layer
        norm_epsilon=1e-6,
        tie_embeddings=True,        # output logits through the token embedding (scaled d_model^-0.5)
        shared_encoder_decoder=False,
        prefix_lm=False,            # decoder_only: fully-visible attention where decoder_causal_attention=1
        scan_layers=False,          # nn.scan over each stack's layers (faster compile): params
                                    # <stack>/layers/... on a leading 'layers' axis (scan.py)
        remat_policy="none",        # none | full | dots (see REMAT_POLICIES)
        kernels="auto",             # auto | xla | cpu_tuned matmul kernels (layers.ops); auto =
                                    # cpu_tuned on the CPU backend, else xla; same values
    ))


def _t5(d_model, num_heads, head_dim, d_ff, layers, v11):
    out = dict(d_model=d_model, num_heads=num_heads, head_dim=head_dim, d_ff=d_ff,
               num_encoder_layers=layers, num_decoder_layers=layers)
    if v11:
        out.update(activation="gated-gelu", tie_embeddings=False, dropout_rate=0.0)
    return out


_TABLE2 = dict(d_model=768, num_heads=12, head_dim=64, d_ff=3072, num_encoder_layers=12,
               num_decoder_layers=12)
_TINY = dict(vocab_size=128, d_model=32, num_heads=4, head_dim=8, d_ff=64, num_encoder_layers=2,
             num_decoder_layers=2, dropout_rate=0.0, dtype="float32")

VARIANTS: dict[str, dict] = {
    "t5_v1_0_small": _t5(512, 8, 64, 2048, 6, False),
    "t5_v1_0_base": _t5(768, 12, 64, 3072, 12, False),
    "t5_v1_0_large": _t5(1024, 16, 64, 4096, 24, False),
    "t5_v1_0_3b": _t5(1024, 32, 128, 16384, 24, False),
    "t5_v1_0_11b": _t5(1024, 128, 128, 65536, 24, False),
    "t5_v1_1_small": _t5(512, 6, 64, 1024, 8, True),
    "t5_v1_1_base": _t5(768, 12, 64, 2048, 12, True),
    "t5_v1_1_large": _t5(1024, 16, 64, 2816, 24, True),
    "t5_v1_1_xl": _t5(2048, 32, 64, 5120, 24, True),
    "t5_v1_1_xxl": _t5(4096, 64, 64, 10240, 24, True),
    # T5 paper Table 2: BERT-base-sized stacks (L=12, P params, M FLOPs).
    "table2_enc_dec": dict(_TABLE2),                                          # 2P, M
    "table2_enc_dec_shared": dict(_TABLE2, shared_encoder_decoder=True),      # P, M
    "table2_enc_dec_6layer": dict(_TABLE2, num_encoder_layers=6, num_decoder_layers=6),  # P, M/2
    "table2_lm": dict(_TABLE2, architecture="decoder_only", num_encoder_layers=0),       # P, M
    "table2_prefix_lm": dict(_TABLE2, architecture="decoder_only", num_encoder_layers=0,
                             prefix_lm=True),                                 # P, M
    "table2_encoder_only": dict(_TABLE2, architecture="encoder_only", num_decoder_layers=0),
    "tiny": dict(_TINY),
    "tiny_decoder_only": dict(_TINY, architecture="decoder_only", num_encoder_layers=0),
    "tiny_prefix_lm": dict(_TINY, architecture="decoder_only", num_encoder_layers=0,
                           prefix_lm=True),
    "tiny_encoder_only": dict(_TINY, architecture="encoder_only", num_decoder_layers=0),
}
VARIANTS["t5_v1_1_3b"] = VARIANTS["t5_v1_1_xl"]
VARIANTS["t5_v1_1_11b"] = VARIANTS["t5_v1_1_xxl"]


def get_model_config(name: str, **overrides) -> ml_collections.ConfigDict:
    """The named shape with `overrides` applied (unknown field names raise KeyError)."""
    if name not in VARIANTS:
        raise KeyError(f"unknown model variant {name!r}; known: {sorted(VARIANTS)}")
    cfg = base_config()
    for key, value in {**VARIANTS[name], **overrides}.items():
        if key not in cfg:
            raise KeyError(f"model config has no field {key!r} (variant {name!r}); fields: "
                           f"{sorted(cfg.keys())}")
        cfg[key] = value
    validate(cfg)
    return cfg


def from_run_config(run_cfg) -> ml_collections.ConfigDict:
    """The model config of a run config (a ConfigDict or its JSON dict): `model.name` with
    `model.overrides` applied."""
    model = run_cfg["model"]
    overrides = model.get("overrides") or {}
    if hasattr(overrides, "to_dict"):
        overrides = overrides.to_dict()
    return get_model_config(model["name"], **overrides)


def kv_heads(cfg) -> int:
    return cfg.num_kv_heads or cfg.num_heads


def validate(cfg) -> None:
    """Raises ValueError naming the field when the config cannot build a model."""
    checks = [
        (cfg.architecture in ARCHITECTURES, "architecture", ARCHITECTURES),
        (cfg.position in POSITIONS, "position", POSITIONS),
        (cfg.activation in ("relu", "gelu") + GATED, "activation", "relu|gelu|gated-gelu|swiglu"),
        (cfg.norm in ("rms", "layer"), "norm", "rms|layer"),
        (cfg.num_heads % kv_heads(cfg) == 0, "num_kv_heads", "a divisor of num_heads"),
        (cfg.position != "rope" or cfg.head_dim % 2 == 0, "head_dim", "even for rope"),
        (not cfg.shared_encoder_decoder or cfg.num_encoder_layers == cfg.num_decoder_layers,
         "num_decoder_layers", "equal to num_encoder_layers when shared_encoder_decoder"),
        (cfg.architecture == "decoder_only" or cfg.num_encoder_layers > 0,
         "num_encoder_layers", "> 0"),
        (cfg.architecture == "encoder_only" or cfg.num_decoder_layers > 0,
         "num_decoder_layers", "> 0"),
        (cfg.dtype in ("float32", "bfloat16", "float16"), "dtype", "float32|bfloat16|float16"),
        (cfg.remat_policy in REMAT_POLICIES, "remat_policy", "|".join(REMAT_POLICIES)),
        (cfg.kernels in ("auto", "xla", "cpu_tuned"), "kernels", "auto|xla|cpu_tuned"),
    ]
    for ok, field, expected in checks:
        if not ok:
            raise ValueError(f"model config {field}={cfg[field]!r}: expected {expected}")


# ----------------------------------------------------------------------------- counting
def _attention_params(cfg) -> int:
    return 2 * cfg.d_model * cfg.head_dim * (cfg.num_heads + kv_heads(cfg))


def _mlp_params(cfg) -> int:
    return cfg.d_model * cfg.d_ff * (3 if cfg.activation in GATED else 2)


def _stack_params(cfg, num_layers: int, cross: bool) -> int:
    norm = cfg.d_model * (2 if cfg.norm == "layer" else 1)
    layer = 2 * norm + _attention_params(cfg) + _mlp_params(cfg)
    if cross:
        layer += norm + _attention_params(cfg)
    extra = norm
    if cfg.position == "relative":
        extra += cfg.num_heads * cfg.relative_num_buckets
    elif cfg.position == "absolute":
        extra += cfg.max_length * cfg.d_model
    return num_layers * layer + extra


def count_params(cfg) -> int:
    """Exact number of parameters the model built from `cfg` has."""
    total = cfg.vocab_size * cfg.d_model * (1 if cfg.tie_embeddings else 2)
    if cfg.architecture == "decoder_only":
        return total + _stack_params(cfg, cfg.num_decoder_layers, cross=False)
    if cfg.architecture == "encoder_only":
        return total + _stack_params(cfg, cfg.num_encoder_layers, cross=False)
    if cfg.shared_encoder_decoder:  # one stack; the decoder adds only its cross-attention
        norm = cfg.d_model * (2 if cfg.norm == "layer" else 1)
        cross = cfg.num_decoder_layers * (norm + _attention_params(cfg))
        return total + _stack_params(cfg, cfg.num_encoder_layers, cross=False) + cross
    return (total + _stack_params(cfg, cfg.num_encoder_layers, cross=False)
            + _stack_params(cfg, cfg.num_decoder_layers, cross=True))


def _forward_flops(cfg, num_layers: int, q_len: int, kv_len: int, cross_len: int) -> float:
    """Matmul FLOPs (2 per multiply-add) of one stack on one example.

    Per layer: q/k/v/out projections 2*q_len*attn_params, scores + weighted values
    4*q_len*kv_len*heads*head_dim (full square, causal masking not discounted), MLP
    2*q_len*mlp_params; with cross-attention also the query/out projections on q_len tokens,
    key/value projections on cross_len encoder tokens and 4*q_len*cross_len*heads*head_dim.
    """
    hd = cfg.num_heads * cfg.head_dim
    kvd = kv_heads(cfg) * cfg.head_dim
    per_layer = (2 * q_len * _attention_params(cfg) + 4 * q_len * kv_len * hd
                 + 2 * q_len * _mlp_params(cfg))
    if cross_len:
        per_layer += (2 * q_len * 2 * cfg.d_model * hd + 2 * cross_len * 2 * cfg.d_model * kvd
                      + 4 * q_len * cross_len * hd)
    return float(num_layers * per_layer)


def flops_per_token(cfg, inputs_length: int, targets_length: int) -> float:
    """Training FLOPs per target token: 3 x forward matmul FLOPs of one example / targets_length.

    Forward = stacks (see `_forward_flops`) + output logits 2*d_model*vocab per position that
    gets logits. Encoder-decoder: the encoder runs on inputs_length tokens, the decoder on
    targets_length. Decoder-only: one stack on inputs_length + targets_length tokens, logits on
    all of them. Encoder-only: one stack and logits on inputs_length tokens. Backward = 2 x
    forward. Embedding lookups, norms, softmax and elementwise ops are not counted.
    """
    logit = 2.0 * cfg.d_model * cfg.vocab_size
    if cfg.architecture == "decoder_only":
        n = inputs_length + targets_length
        fwd = _forward_flops(cfg, cfg.num_decoder_layers, n, n, 0) + n * logit
    elif cfg.architecture == "encoder_only":
        n = inputs_length
        fwd = _forward_flops(cfg, cfg.num_encoder_layers, n, n, 0) + n * logit
    else:
        fwd = (_forward_flops(cfg, cfg.num_encoder_layers, inputs_length, inputs_length, 0)
               + _forward_flops(cfg, cfg.num_decoder_layers, targets_length, targets_length,
                                inputs_length)
               + targets_length * logit)
    return 3.0 * fwd / targets_length
