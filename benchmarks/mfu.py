"""Model FLOPs utilisation of t2t's train step for every architecture of the T5 paper's Table 2.

  python benchmarks/mfu.py [--scale cpu|full|tiny] [--archs a,b] [--steps 3] [--warmup 1]
      [--batch_size N] [--scan_layers] [--remat_policy none|full|dots] [--device cpu|gpu]
      [--out FILE]

Architectures (T5 Table 2): encoder-decoder (2P params, M FLOPs), encoder-decoder with shared
stacks (P, M), encoder-decoder with 6-layer stacks (P, M/2), language model (P, M) and prefix LM
(P, M). Encoder-decoders run 512 input / 114 target tokens; the decoder-only models run one
626-token sequence (prefix LM: 512 fully visible, loss on the last 114; LM: causal, loss on all).
Adafactor with T5's settings. MFU = model FLOPs per step (variants.flops_per_token: 3x the
forward matmul FLOPs, attention included) / seconds per step / peak, where the peak on CPU is a
float32 matmul measured in this run (the larger of a reading before and after the steps) and on
GPU the datasheet dense bf16 peak. After warm-up the architectures take turns, one step each.

Scales: `full` is the paper's shape (d_model 768, 12 heads, d_ff 3072, 12 layers per stack;
bf16 activations; the GPU default). `cpu` (the CPU default) keeps the vocabulary, lengths and the
architectures' relations but reduces width and depth to fit a 2-core CPU: d_model 256, 4x64
heads, d_ff 1024, 4 layers per stack (2 for the 6-layer variant), float32. `tiny` is the test
shape (d_model 32, vocab 128, 32/8 tokens). `--scan_layers` / `--remat_policy` set those model
fields (compare the 'first step s' column, which includes compilation, and s/step).
"""
from __future__ import annotations

import dataclasses
import sys
import time

import common  # noqa: F401  (puts the checkout on sys.path)

import jax

from t2t.models import variants

ARCHS = ("table2_enc_dec", "table2_enc_dec_shared", "table2_enc_dec_6layer", "table2_lm",
         "table2_prefix_lm")


@dataclasses.dataclass(frozen=True)
class Scale:
    description: str
    width: dict            # overrides applied to every architecture
    layers: int            # layers per stack (halved for the 6-layer variant)
    batch_size: int
    inputs_length: int
    targets_length: int


SCALES = {
    "full": Scale("T5 Table 2 shape (BERT-base stacks)", dict(dtype="bfloat16"), 12, 32, 512, 114),
    "cpu": Scale("reduced for CPU: d_model 256, 4x64 heads, d_ff 1024, 4 layers per stack (6-layer "
                 "variant: 2), float32",
                 dict(d_model=256, num_heads=4, head_dim=64, d_ff=1024, dtype="float32"),
                 4, 2, 512, 114),
    "tiny": Scale("tiny test shape: d_model 32, 4x8 heads, d_ff 64, 2 layers, vocab 128",
                  dict(vocab_size=128, d_model=32, num_heads=4, head_dim=8, d_ff=64,
                       dtype="float32"), 2, 4, 32, 8),
}


def arch_config(name: str, scale: Scale, **overrides):
    """The named Table 2 architecture at `scale` (layer counts keep the variants' ratios),
    with further model-field `overrides` (e.g. scan_layers, remat_policy)."""
    full = variants.get_model_config(name)
    ratio = lambda n: max(1, n * scale.layers // 12) if n else 0  # noqa: E731
    return variants.get_model_config(
        name, num_encoder_layers=ratio(full.num_encoder_layers),
        num_decoder_layers=ratio(full.num_decoder_layers), **scale.width, **overrides)


def measure(names, scale: Scale, device, *, warmup: int, steps: int, optimizer: str = "adafactor",
            overrides=None):
    """Seconds per step of every architecture, interleaved, after each one's first step;
    returns (configs, times, first-step seconds)."""
    cfgs, fns, compile_s = {}, {}, {}
    for name in names:
        cfg = arch_config(name, scale, **(overrides or {}))
        batch = common.synthetic_batch(cfg.architecture, scale.batch_size, scale.inputs_length,
                                       scale.targets_length, cfg.vocab_size,
                                       prefix_lm=cfg.prefix_lm)
        state, step, jbatch = common.make_t2t_step(cfg, batch, optimizer, device)
        holder = [state]

        def run(holder=holder, step=step, jbatch=jbatch):
            holder[0], metrics = step(holder[0], jbatch)
            jax.block_until_ready((holder[0], metrics))
        start = time.perf_counter()
        run()  # compiles
        compile_s[name] = time.perf_counter() - start
        print(f"{name}: first step (compilation included) {compile_s[name]:.1f} s", file=sys.stderr,
              flush=True)
        cfgs[name], fns[name] = cfg, run
    return cfgs, common.interleave(fns, warmup=warmup, steps=steps), compile_s


COLUMNS = [("name", "architecture", ""), ("params", "params", ",d"),
           ("gflops_per_step", "GFLOP/step", ",.1f"), ("seconds_per_step", "s/step", ".3f"),
           ("tokens_per_second", "tokens/s", ",.0f"), ("mfu", "MFU", ".3f"),
           ("first_step_seconds", "1st step s", ".1f")]


def main(argv=None) -> list[dict]:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=tuple(SCALES), default=None,
                   help="model size (default: cpu on --device cpu, full on --device gpu)")
    p.add_argument("--archs", default=",".join(ARCHS), help="comma-separated Table 2 variants")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch_size", type=int, default=0, help="override the scale's batch size")
    p.add_argument("--scan_layers", action="store_true", help="scan each stack's layers")
    p.add_argument("--remat_policy", choices=variants.REMAT_POLICIES, default="none")
    args = p.parse_args(argv)
    device = common.select_device(args.device, args.fast_compile)
    scale = SCALES[args.scale or ("full" if args.device == "gpu" else "cpu")]
    if args.batch_size:
        scale = dataclasses.replace(scale, batch_size=args.batch_size)
    names = [n for n in args.archs.split(",") if n]
    bad = [n for n in names if n not in ARCHS]
    if bad:
        raise SystemExit(f"--archs: {bad} are not Table 2 architectures; expected some of {ARCHS}")
    peak, source = common.peak_flops(device)
    overrides = dict(scan_layers=args.scan_layers, remat_policy=args.remat_policy)
    cfgs, times, first = measure(names, scale, device, warmup=args.warmup, steps=args.steps,
                                 overrides=overrides)
    if device.platform == "cpu":
        peak = max(peak, common.peak_flops(device)[0])
    records = []
    for name in names:
        cfg, seconds = cfgs[name], common.median(times[name])
        flops = common.flops_per_step(cfg, scale.batch_size, scale.inputs_length,
                                      scale.targets_length)
        tokens = scale.batch_size * (scale.inputs_length + scale.targets_length)
        records.append({
            "name": name, "architecture": cfg.architecture, "scale": scale.description,
            "params": variants.count_params(cfg), "d_model": cfg.d_model, "d_ff": cfg.d_ff,
            "num_encoder_layers": cfg.num_encoder_layers,
            "num_decoder_layers": cfg.num_decoder_layers, "dtype": cfg.dtype, **overrides,
            "batch_size": scale.batch_size, "inputs_length": scale.inputs_length,
            "targets_length": scale.targets_length, "device": device.device_kind,
            "flops_per_step": flops, "gflops_per_step": flops / 1e9, "seconds_per_step": seconds,
            "tokens_per_second": tokens / seconds, "mfu": flops / seconds / peak,
            "peak_flops": peak, "peak_source": source, "first_step_seconds": first[name],
            "step_times": times[name]})
    print(f"{scale.description}; scan_layers={args.scan_layers}, "
          f"remat_policy={args.remat_policy}; peak {peak / 1e9:,.1f} GFLOP/s ({source})")
    common.print_table(records, COLUMNS)
    common.write_records(args.out, records)
    return records


if __name__ == "__main__":
    main()
