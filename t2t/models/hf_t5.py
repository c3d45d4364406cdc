"""Hugging Face T5 <-> t2t: configs and parameter trees, and HF checkpoint files.

t2t params are the UNBOXED tree of Model.init (looped `layers_{i}`, or stacked `layers` when
the config has scan_layers=True, see scan.py); a t2t model dir on disk (model_config.json +
params/) is read and written by t2t/workdir/model_dir.py.
HF side: config.json + model.safetensors (or sharded *.safetensors with an index); a
pytorch_model.bin (a pickle) is read only when the caller passes allow_pickle=True.
"""
from __future__ import annotations

import pathlib

import ml_collections
import numpy as np

from t2t import fileio
from t2t.models.scan import stack_layers, unstack_layers
from t2t.models.variants import base_config, validate

HF_ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "gated-gelu": "gated-gelu",
                  "gated-silu": "swiglu"}


# ----------------------------------------------------------------------------- configs
def hf_config_to_t2t(hf: dict, **overrides) -> ml_collections.ConfigDict:
    """A t2t model config from a HF T5 config.json dict (dtype float32 unless overridden)."""
    act = hf.get("feed_forward_proj", "relu")
    if act not in HF_ACTIVATIONS:
        raise ValueError(f"HF config feed_forward_proj={act!r}: expected one of "
                         f"{sorted(HF_ACTIVATIONS)}")
    if hf.get("model_type", "t5") != "t5":
        raise ValueError(f"HF config model_type={hf.get('model_type')!r}: only 't5' converts")
    cfg = base_config()
    cfg.update(dict(
        vocab_size=hf["vocab_size"], d_model=hf["d_model"], num_heads=hf["num_heads"],
        head_dim=hf["d_kv"], d_ff=hf["d_ff"], num_encoder_layers=hf["num_layers"],
        num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
        activation=HF_ACTIVATIONS[act], dropout_rate=hf.get("dropout_rate", 0.1),
        relative_num_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_max_distance=hf.get("relative_attention_max_distance", 128),
        norm_epsilon=hf.get("layer_norm_epsilon", 1e-6),
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)), dtype="float32"))
    cfg.update(overrides)
    validate(cfg)
    return cfg


def _check_hf_compatible(cfg) -> None:
    problems = [(cfg.architecture == "encoder_decoder", "architecture", "encoder_decoder"),
                (cfg.position == "relative", "position", "relative"),
                (cfg.norm == "rms", "norm", "rms"),
                (not cfg.shared_encoder_decoder, "shared_encoder_decoder", "False"),
                (cfg.num_kv_heads in (0, cfg.num_heads), "num_kv_heads", "0 or num_heads")]
    for ok, field, expected in problems:
        if not ok:
            raise ValueError(f"HF T5 cannot hold model config {field}={cfg[field]!r}: "
                             f"expected {expected}")


def t2t_config_to_hf(cfg) -> dict:
    """The HF T5 config.json dict for an HF-compatible t2t config."""
    _check_hf_compatible(cfg)
    act = {v: k for k, v in HF_ACTIVATIONS.items()}[cfg.activation]
    return {
        "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
        "vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "d_kv": cfg.head_dim,
        "d_ff": cfg.d_ff, "num_layers": cfg.num_encoder_layers,
        "num_decoder_layers": cfg.num_decoder_layers, "num_heads": cfg.num_heads,
        "relative_attention_num_buckets": cfg.relative_num_buckets,
        "relative_attention_max_distance": cfg.relative_max_distance,
        "dropout_rate": cfg.dropout_rate, "layer_norm_epsilon": cfg.norm_epsilon,
        "initializer_factor": 1.0, "feed_forward_proj": act,
        "tie_word_embeddings": bool(cfg.tie_embeddings), "is_encoder_decoder": True,
        "use_cache": True, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
    }


# ----------------------------------------------------------------------------- params
def _attn_names(hf_prefix: str, t2t_prefix: str):
    return [(f"{hf_prefix}.{n}.weight", f"{t2t_prefix}/{m}/kernel")
            for n, m in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out"))]


def _mlp_names(cfg, hf_prefix: str, t2t_prefix: str):
    names = ("wi_0", "wi_1", "wo") if cfg.activation in ("gated-gelu", "swiglu") else ("wi", "wo")
    return [(f"{hf_prefix}.DenseReluDense.{n}.weight", f"{t2t_prefix}/mlp/{n}/kernel")
            for n in names]


def name_map(cfg) -> list[tuple[str, str]]:
    """(HF state-dict key, t2t param path) pairs for every tensor of an HF T5 model."""
    pairs = [("shared.weight", "token_embedder/embedding")]
    for stack, n_layers in (("encoder", cfg.num_encoder_layers),
                            ("decoder", cfg.num_decoder_layers)):
        pairs.append((f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                      f"{stack}/relpos_bias/rel_embedding"))
        for i in range(n_layers):
            hf, t2 = f"{stack}.block.{i}.layer", f"{stack}/layers_{i}"
            pairs += _attn_names(f"{hf}.0.SelfAttention", f"{t2}/self_attention")
            pairs.append((f"{hf}.0.layer_norm.weight", f"{t2}/pre_self_attention_norm/scale"))
            mlp = 1
            if stack == "decoder":
                pairs += _attn_names(f"{hf}.1.EncDecAttention", f"{t2}/encoder_decoder_attention")
                pairs.append((f"{hf}.1.layer_norm.weight", f"{t2}/pre_cross_attention_norm/scale"))
                mlp = 2
            pairs += _mlp_names(cfg, f"{hf}.{mlp}", t2)
            pairs.append((f"{hf}.{mlp}.layer_norm.weight", f"{t2}/pre_mlp_norm/scale"))
        pairs.append((f"{stack}.final_layer_norm.weight", f"{stack}/final_norm/scale"))
    if not cfg.tie_embeddings:
        pairs.append(("lm_head.weight", "logits_dense/kernel"))
    return pairs


def _to_t2t(hf_key: str, w: np.ndarray, cfg) -> np.ndarray:
    """torch Linear weights are [out, in]; t2t kernels are [in, ...out] split per head."""
    h, d, m = cfg.num_heads, cfg.head_dim, cfg.d_model
    if hf_key.endswith((".q.weight", ".k.weight", ".v.weight")):
        return w.T.reshape(m, h, d)
    if hf_key.endswith(".o.weight"):
        return w.T.reshape(h, d, m)
    if "DenseReluDense" in hf_key or hf_key == "lm_head.weight" or hf_key.endswith("bias.weight"):
        return w.T
    return w


def _to_hf(hf_key: str, w: np.ndarray) -> np.ndarray:
    if hf_key.endswith((".q.weight", ".k.weight", ".v.weight")):
        return w.reshape(w.shape[0], -1).T
    if hf_key.endswith(".o.weight"):
        return w.reshape(-1, w.shape[-1]).T
    if "DenseReluDense" in hf_key or hf_key == "lm_head.weight" or hf_key.endswith("bias.weight"):
        return w.T
    return w


def _set_path(tree: dict, path: str, value) -> None:
    *parents, leaf = path.split("/")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def _get_path(tree: dict, path: str):
    for p in path.split("/"):
        if p not in tree:
            raise KeyError(f"t2t params have no entry {path!r} (missing {p!r})")
        tree = tree[p]
    return tree


def hf_state_to_params(state: dict, cfg) -> dict:
    """HF T5 state dict (numpy arrays) -> unboxed t2t params tree (float32 numpy), in the
    scanned layout when cfg.scan_layers."""
    _check_hf_compatible(cfg)
    params: dict = {}
    for hf_key, path in name_map(cfg):
        if hf_key not in state:
            raise KeyError(f"HF checkpoint has no tensor {hf_key!r} (needed for {path})")
        _set_path(params, path, np.asarray(_to_t2t(hf_key, np.asarray(state[hf_key]), cfg),
                                           np.float32))
    return stack_layers(params, cfg) if cfg.scan_layers else params


def params_to_hf_state(params: dict, cfg) -> dict:
    """Unboxed t2t params (looped or, with cfg.scan_layers, scanned) -> HF T5 state dict of
    float32 numpy arrays (tied keys included)."""
    _check_hf_compatible(cfg)
    if cfg.scan_layers:
        params = unstack_layers(params, cfg)
    state = {hf_key: np.ascontiguousarray(_to_hf(hf_key, np.asarray(_get_path(params, path),
                                                                      np.float32)))
             for hf_key, path in name_map(cfg)}
    aliases = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]
    if cfg.tie_embeddings:
        aliases.append("lm_head.weight")
    for alias in aliases:  # tied copies, as transformers' own state_dict lists them
        state[alias] = state["shared.weight"]
    return state


# ----------------------------------------------------------------------------- HF files
def load_hf_checkpoint(src, *, allow_pickle: bool = False, **overrides):
    """(cfg, params) from an HF T5 directory: config.json + safetensors (single or sharded),
    or pytorch_model.bin when allow_pickle=True (torch.load(weights_only=True)). `overrides`
    set t2t-only config fields (e.g. scan_layers=True for the scanned layout)."""
    src = pathlib.Path(src)
    config_path = src / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: no HF config.json in {src}")
    cfg = hf_config_to_t2t(fileio.read_json(config_path), **overrides)
    return cfg, hf_state_to_params(_read_hf_state(src, allow_pickle), cfg)


def _read_hf_state(src: pathlib.Path, allow_pickle: bool) -> dict:
    from safetensors.numpy import load_file
    files = sorted(src.glob("*.safetensors"))
    if files:
        state = {}
        for f in files:
            state.update(load_file(str(f)))
        return state
    binary = src / "pytorch_model.bin"
    if not binary.is_file():
        raise FileNotFoundError(f"{src}: no *.safetensors or pytorch_model.bin weights")
    if not allow_pickle:
        raise ValueError(f"{binary} is a pickle; refusing to unpickle it. Pass allow_pickle=True "
                         "(--allow-pickle) only for a file you trust, or convert to safetensors")
    import torch
    loaded = torch.load(binary, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in loaded.items()}


def save_hf_checkpoint(dst, cfg, params) -> None:
    """Writes config.json + model.safetensors that transformers' T5 loads."""
    from safetensors.numpy import save_file
    dst = pathlib.Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    fileio.atomic_write_json(dst / "config.json", t2t_config_to_hf(cfg), indent=2)
    save_file(params_to_hf_state(params, cfg), str(dst / "model.safetensors"),
              metadata={"format": "pt"})
