"""t2t's train step against Hugging Face transformers (PyTorch) at the same config, in one run.

  python benchmarks/train_step.py [--configs t5_v1_1_small,decoder_only,tiny]
      [--optimizer adafactor|adamw] [--steps 3] [--warmup 1] [--device cpu|gpu] [--out FILE]

Both sides train the same model (equal parameter counts, asserted) on the same random batch
with the same sequence lengths and optimizer family (Adafactor with T5's settings: factored,
no momentum, decay 0.8, update clipping 1.0, parameter-scaled; or AdamW), after `--warmup`
steps each (compilation), then alternate one t2t step and one HF step `--steps` times, with
`--pause` idle seconds (untimed) before each. Per-step
times are medians; speedup = HF seconds / t2t seconds (speedup_best: the fastest step of each,
less sensitive to other jobs on a shared machine); t2t_first_step_seconds is the first warm-up
step (compilation included); MFU is t2t's model FLOPs per second over
the device's peak (CPU: a matmul in the config's compute dtype measured in this run; GPU: the
datasheet bf16 peak).

Configs (CPU, float32 unless named _bf16): t5_v1_1_small (T5ForConditionalGeneration) at
512/114; t5_v1_1_small_bf16, the same in t2t's default mixed precision (bf16 compute, float32
params; HF under torch.autocast(bf16)), with MFU against a bf16 matmul peak; decoder_only,
a decoder-only model of t5 v1.1 small's parameter count (d_model 512, 6x64 heads, 18 layers,
SwiGLU d_ff 1080, RoPE, untied; HF's LlamaForCausalLM is exactly that network) on 626 =
512 + 114 tokens with the loss on all of them; tiny, configs/tiny_test.py's shape (32/8).
GPU (bf16 activations, float32 params, autocast on the HF side): t5_v1_1_base at 512/114 and
decoder_only_1b (d_model 2048, 16x128 heads, 18 layers, d_ff 5632: 1.06B params) on 626 tokens.
"""
from __future__ import annotations

import dataclasses
import sys

import common  # noqa: F401  (puts the checkout on sys.path)

import jax
import numpy as np

from t2t.models import variants


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    model: str                 # t2t variant name
    overrides: dict
    batch_size: int
    inputs_length: int
    targets_length: int


_DEC_ONLY = dict(architecture="decoder_only", num_encoder_layers=0, position="rope",
                 activation="swiglu", tie_embeddings=False, dropout_rate=0.0)
CPU_CONFIGS = {
    "t5_v1_1_small": Config("t5_v1_1_small", "t5_v1_1_small", dict(dtype="float32"), 2, 512, 114),
    "decoder_only": Config("decoder_only", "t5_v1_1_small",
                           dict(_DEC_ONLY, num_decoder_layers=18, d_ff=1080, dtype="float32"),
                           2, 512, 114),
    "tiny": Config("tiny", "tiny", dict(vocab_size=8192), 8, 32, 8),
    # t2t's own default precision (bf16 compute, float32 params); HF under torch.autocast.
    "t5_v1_1_small_bf16": Config("t5_v1_1_small_bf16", "t5_v1_1_small",
                                 dict(dtype="bfloat16"), 2, 512, 114),
}
GPU_CONFIGS = {
    "t5_v1_1_base": Config("t5_v1_1_base", "t5_v1_1_base", dict(dtype="bfloat16"), 32, 512, 114),
    "decoder_only_1b": Config("decoder_only_1b", "t5_v1_1_base",
                              dict(_DEC_ONLY, d_model=2048, num_heads=16, head_dim=128, d_ff=5632,
                                   num_decoder_layers=18, dtype="bfloat16"), 16, 512, 114),
}


# ----------------------------------------------------------------------------- HF side
def hf_model(cfg, torch_device):
    """The transformers model computing the same network as the t2t config."""
    import torch
    import transformers
    from t2t.models import hf_t5 as convert
    torch.manual_seed(0)
    if cfg.architecture == "encoder_decoder":
        hf = transformers.T5ForConditionalGeneration(
            transformers.T5Config(**convert.t2t_config_to_hf(cfg)))
    else:
        if (cfg.position, cfg.activation, cfg.norm, cfg.tie_embeddings) != (
                "rope", "swiglu", "rms", False):
            raise ValueError(f"decoder-only HF comparison needs position=rope, activation=swiglu, "
                             f"norm=rms, tie_embeddings=False (LlamaForCausalLM); got {cfg}")
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
            num_hidden_layers=cfg.num_decoder_layers, num_attention_heads=cfg.num_heads,
            num_key_value_heads=variants.kv_heads(cfg), head_dim=cfg.head_dim,
            rms_norm_eps=cfg.norm_epsilon, rope_theta=cfg.rope_max_wavelength,
            max_position_embeddings=4096, tie_word_embeddings=False, hidden_act="silu",
            attention_dropout=cfg.dropout_rate))
    return hf.to(torch_device).train()


def hf_optimizer(name: str, params, lr: float, fused: bool):
    import torch
    import transformers
    if name == "adafactor":  # T5's settings, as optax.adafactor in t2t.train.optim
        return transformers.optimization.Adafactor(
            params, lr=lr, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8, beta1=None,
            weight_decay=0.0, scale_parameter=True, relative_step=False, warmup_init=False)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=fused or None)


def make_hf_step(cfg, batch: dict, optimizer: str, gpu: bool):
    """(step, param_count): one zero_grad / forward / mean token cross-entropy / backward /
    optimizer step of the HF model on `batch` (the loss t2t's step computes, without z-loss)."""
    import contextlib
    import torch
    device = torch.device("cuda" if gpu else "cpu")
    model = hf_model(cfg, device)
    opt = hf_optimizer(optimizer, model.parameters(), 1e-3, fused=gpu)
    tb = {k: torch.from_numpy(np.asarray(v, np.int64)).to(device) for k, v in batch.items()}
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) \
        if cfg.dtype == "bfloat16" else contextlib.nullcontext

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            if cfg.architecture == "encoder_decoder":
                loss = model(input_ids=tb["encoder_input_tokens"],
                             decoder_input_ids=tb["decoder_input_tokens"],
                             labels=tb["decoder_target_tokens"]).loss
            else:
                logits = model(input_ids=tb["decoder_input_tokens"]).logits
                loss = torch.nn.functional.cross_entropy(
                    logits.float().flatten(0, 1), tb["decoder_target_tokens"].flatten())
        loss.backward()
        opt.step()
        if gpu:
            torch.cuda.synchronize()
    return step, sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- one config
def run_config(c: Config, *, optimizer: str, device, warmup: int, steps: int, peak: float,
               peak_source: str, pause: float = 0.0) -> dict:
    cfg = variants.get_model_config(c.model, **c.overrides)
    batch = common.synthetic_batch(cfg.architecture, c.batch_size, c.inputs_length,
                                   c.targets_length, cfg.vocab_size)
    state, t2t_step, jbatch = common.make_t2t_step(cfg, batch, optimizer, device)
    hf_step, hf_params = make_hf_step(cfg, batch, optimizer, device.platform == "gpu")
    counts = {"count_params": variants.count_params(cfg),
              "t2t": common.param_count(state.params), "hf": hf_params}
    if len(set(counts.values())) != 1:
        raise AssertionError(f"config {c.name}: parameter counts differ {counts}; the two "
                             "models are not the same network")
    holder = [state]

    def t2t():
        holder[0], metrics = t2t_step(holder[0], jbatch)
        jax.block_until_ready((holder[0], metrics))

    first = {}
    times = common.interleave({"t2t": t2t, "hf": hf_step}, warmup=warmup, steps=steps,
                              warmup_times=first, pause=pause)
    t2t_s, hf_s = common.median(times["t2t"]), common.median(times["hf"])
    tokens = c.batch_size * (c.inputs_length + c.targets_length)
    flops = common.flops_per_step(cfg, c.batch_size, c.inputs_length, c.targets_length)
    return {"name": c.name, "architecture": cfg.architecture, "params": counts["t2t"],
            "batch_size": c.batch_size, "inputs_length": c.inputs_length,
            "targets_length": c.targets_length, "dtype": cfg.dtype, "optimizer": optimizer,
            "device": device.device_kind, "t2t_seconds_per_step": t2t_s,
            "hf_seconds_per_step": hf_s, "speedup": hf_s / t2t_s,
            "tokens_per_second": tokens / t2t_s, "hf_tokens_per_second": tokens / hf_s,
            "flops_per_step": flops, "mfu": flops / t2t_s / peak, "hf_mfu": flops / hf_s / peak,
            "peak_flops": peak, "peak_source": peak_source,
            "speedup_best": min(times["hf"]) / min(times["t2t"]),
            "t2t_first_step_seconds": first.get("t2t", [None])[0],
            "hf_first_step_seconds": first.get("hf", [None])[0],
            "t2t_step_times": times["t2t"], "hf_step_times": times["hf"]}


COLUMNS = [("name", "config", ""), ("params", "params", ",d"), ("optimizer", "optimizer", ""),
           ("t2t_seconds_per_step", "t2t s/step", ".3f"), ("hf_seconds_per_step", "HF s/step", ".3f"),
           ("speedup", "HF/t2t", ".2f"), ("speedup_best", "best/best", ".2f"),
           ("tokens_per_second", "t2t tok/s", ",.0f"),
           ("mfu", "t2t MFU", ".3f"), ("hf_mfu", "HF MFU", ".3f")]


def main(argv=None) -> list[dict]:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--configs", default=None,
                   help="comma-separated config names (default: all of the device's)")
    p.add_argument("--optimizer", choices=("adafactor", "adamw"), default="adafactor")
    p.add_argument("--steps", type=int, default=3, help="timed steps per side (alternating)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per side first")
    p.add_argument("--batch_size", type=int, default=0, help="override every config's batch")
    p.add_argument("--pause", type=float, default=None,
                   help="idle seconds before each timed step (default 0.5 on cpu, 0 on gpu): "
                        "lets the other side's spinning worker threads go quiet")
    args = p.parse_args(argv)
    device = common.select_device(args.device, args.fast_compile)
    table = GPU_CONFIGS if args.device == "gpu" else CPU_CONFIGS
    names = args.configs.split(",") if args.configs else list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"--configs: unknown {unknown}; {args.device} configs are {list(table)}")
    import torch
    print(f"device {device.device_kind}; torch {torch.__version__} threads "
          f"{torch.get_num_threads()}", file=sys.stderr)
    peaks = {}  # dtype -> (peak, source); CPU peaks are measured per compute dtype
    records = []
    for name in names:
        c = table[name]
        if args.batch_size:
            c = dataclasses.replace(c, batch_size=args.batch_size)
        dtype = c.overrides.get("dtype", "float32")
        if dtype not in peaks:
            peaks[dtype] = common.peak_flops(device, dtype=dtype)
        pause = args.pause if args.pause is not None else (0.0 if args.device == "gpu" else 0.5)
        records.append(run_config(c, optimizer=args.optimizer, device=device, warmup=args.warmup,
                                  steps=args.steps, peak=peaks[dtype][0],
                                  peak_source=peaks[dtype][1], pause=pause))
        common.print_table(records[-1:], COLUMNS)
    if device.platform == "cpu":  # each matmul peak again: the larger reading is the peak
        for dtype, (peak, source) in peaks.items():
            peaks[dtype] = (max(peak, common.peak_flops(device, dtype=dtype)[0]), source)
        for r in records:
            peak = peaks[r["dtype"]][0]
            r["mfu"], r["hf_mfu"], r["peak_flops"] = (
                r["mfu"] * r["peak_flops"] / peak, r["hf_mfu"] * r["peak_flops"] / peak, peak)
    for dtype, (peak, source) in peaks.items():
        print(f"\npeak {dtype} {peak / 1e9:.1f} GFLOP/s ({source})")
    print("speedup = HF s/step / t2t s/step")
    common.print_table(records, COLUMNS)
    common.write_records(args.out, records)
    return records


if __name__ == "__main__":
    main()
