"""Decoding tokens per second with the key-value cache against a no-cache baseline.

  python benchmarks/decode.py [--model t5_v1_1_small] [--batch_size 1] [--beams 4]
      [--targets_length 114] [--inputs_length 512] [--rounds 1] [--device cpu|gpu] [--out FILE]

Cached: `Model.predict` (t2t.models.decoding's loops; each step feeds one token and reads the
cached keys/values). No cache: the same greedy / beam-search loops, but every step runs the
decoder over the whole fixed-length [rows, targets_length] prefix buffer again (the encoder
output is computed once, as any decoder would; only the KV cache is missing) and reads the
logits at the current position. EOS is disabled (eos_id outside the vocabulary) so every decode
runs all `--targets_length` steps on random-initialised weights. Each of the four programs is
compiled ahead of time, then the cached and uncached runs alternate `--rounds` times; tokens/s
counts batch_size x targets_length output tokens per decode (beam: the returned best beam).
CPU default: t5_v1_1_small in float32; GPU: t5_v1_1_base in bf16 with a batch of 32.
"""
from __future__ import annotations

import time

import common  # noqa: F401  (puts the checkout on sys.path)

import flax.linen as nn
import jax
import jax.numpy as jnp

from t2t.models import decoding, variants
from t2t.models.model import build_model


def no_cache_decode(model, params, encoder_tokens, *, length: int, method: str, beams: int,
                    eos_id: int):
    """Greedy or beam decoding that recomputes the decoder over the whole prefix every step."""
    encoded = model.module.apply({"params": params}, encoder_tokens, method="encode")
    repeats = beams if method == "beam" else 1
    encoded, enc_tokens = decoding.repeat_batch((encoded, encoder_tokens), repeats)
    n = enc_tokens.shape[0]
    all_valid = jnp.ones((n, length), jnp.int32)

    def tokens_to_logits(tokens, index, buffer):
        buffer = buffer.at[jnp.arange(n), index].set(tokens, mode="drop")
        logits = model.module.apply({"params": params}, encoded, enc_tokens, buffer, all_valid,
                                    method="decode")
        return jnp.take_along_axis(logits, index[:, None, None], axis=1)[:, 0], buffer

    buffer = jnp.zeros((n, length), jnp.int32)
    zeros = jnp.zeros((n,), jnp.int32)
    if method == "greedy":
        return decoding.sample_decode(tokens_to_logits, buffer, zeros, zeros,
                                      max_decode_length=length, eos_id=eos_id)
    seqs, _ = decoding.beam_search(tokens_to_logits, buffer, zeros, zeros,
                                   batch_size=n // beams, beam_size=beams,
                                   max_decode_length=length, eos_id=eos_id)
    return seqs[:, 0]


def compiled_programs(model, params, batch, *, length: int, beams: int, eos_id: int) -> dict:
    """{(method, 'cache'|'no_cache'): zero-argument callable running one compiled decode}."""
    programs = {}
    for method in ("greedy", "beam"):
        cached = common.jit(lambda p, b, m=method: model.predict(
            p, b, max_decode_length=length, method=m, num_beams=beams, eos_id=eos_id, jit=False))
        uncached = common.jit(lambda p, e, m=method: no_cache_decode(
            model, p, e, length=length, method=m, beams=beams, eos_id=eos_id))
        for kind, fn, arg in (("cache", cached, batch),
                              ("no_cache", uncached, batch["encoder_input_tokens"])):
            exe = fn.lower(params, arg).compile()
            programs[(method, kind)] = (lambda exe=exe, arg=arg:
                                        jax.block_until_ready(exe(params, arg)))
    return programs


COLUMNS = [("name", "decode", ""), ("cache_seconds", "cache s", ".3f"),
           ("no_cache_seconds", "no-cache s", ".3f"), ("cache_tokens_per_second", "cache tok/s", ",.1f"),
           ("no_cache_tokens_per_second", "no-cache tok/s", ",.1f"), ("speedup", "speedup", ".1f")]


def main(argv=None) -> list[dict]:
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="variant (default t5_v1_1_small; gpu: base)")
    p.add_argument("--batch_size", type=int, default=0, help="default 1 on cpu, 32 on gpu")
    p.add_argument("--beams", type=int, default=4)
    p.add_argument("--inputs_length", type=int, default=512)
    p.add_argument("--targets_length", type=int, default=114)
    p.add_argument("--rounds", type=int, default=1, help="timed decodes per program")
    args = p.parse_args(argv)
    device = common.select_device(args.device, args.fast_compile)
    gpu = args.device == "gpu"
    name = args.model or ("t5_v1_1_base" if gpu else "t5_v1_1_small")
    cfg = variants.get_model_config(name, dtype="bfloat16" if gpu else "float32",
                                    dropout_rate=0.0)
    if cfg.architecture != "encoder_decoder":
        raise SystemExit(f"--model {name}: decode.py measures encoder-decoder models")
    batch_size = args.batch_size or (32 if gpu else 1)
    model = build_model(cfg)
    batch = common.synthetic_batch("encoder_decoder", batch_size, args.inputs_length, 1,
                                   cfg.vocab_size)
    batch = {"encoder_input_tokens": batch["encoder_input_tokens"]}
    with jax.default_device(device):
        batch = jax.device_put(batch, device)
        params = jax.device_put(nn.unbox(common.jit(model.init)(jax.random.key(0), {
            **batch, **{k: jnp.ones((batch_size, 1), jnp.int32) for k in (
                "decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights")}})),
            device)
    start = time.perf_counter()
    programs = compiled_programs(model, params, batch, length=args.targets_length,
                                 beams=args.beams, eos_id=cfg.vocab_size)
    compile_s = time.perf_counter() - start
    times = common.interleave({f"{m}/{k}": fn for (m, k), fn in programs.items()}, warmup=0,
                              steps=args.rounds)
    records = []
    tokens = batch_size * args.targets_length
    for method in ("greedy", "beam"):
        cache_s = common.median(times[f"{method}/cache"])
        none_s = common.median(times[f"{method}/no_cache"])
        records.append({
            "name": method if method == "greedy" else f"beam{args.beams}", "model": name,
            "dtype": cfg.dtype, "device": device.device_kind, "batch_size": batch_size,
            "beams": args.beams if method == "beam" else 1, "inputs_length": args.inputs_length,
            "targets_length": args.targets_length, "cache_seconds": cache_s,
            "no_cache_seconds": none_s, "cache_tokens_per_second": tokens / cache_s,
            "no_cache_tokens_per_second": tokens / none_s, "speedup": none_s / cache_s,
            "compile_seconds_all": compile_s})
    print(f"{name} {cfg.dtype}, batch {batch_size}, {args.inputs_length} inputs -> "
          f"{args.targets_length} tokens; speedup = no-cache s / cache s")
    common.print_table(records, COLUMNS)
    common.write_records(args.out, records)
    return records


if __name__ == "__main__":
    main()
