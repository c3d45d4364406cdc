"""Tokens per second through the data pipeline: tokenize -> objective -> pack -> batch.

  python benchmarks/data_throughput.py [--data_dir ../shared/data] [--out FILE.json]

Runs the C4 sample's train split (`<data_dir>/c4/en/c4-train.*.json.gz`, T5's vocabulary at
`<data_dir>/vocab/t5_cc_all.32000/spiece.model`) through `t2t.data.pipeline.get_dataset`:
span corruption packed in one process and with `--workers` worker processes, then every
objective in one process. Without a data directory it falls back to the built-in corpus.
Each configuration is one JSON record; `tokens_per_s` counts the non-padding tokens the model
receives (encoder inputs + decoder targets for encoder-decoder, decoder targets for
decoder-only, encoder inputs for encoder-only), over `--batches` batches after `--warmup`;
`steps_per_s_fed` is how many training steps of `--batch_size` rows per second it could feed.

Can the pipeline feed the train step? With `--step_model` (default t5_v1_1_small in float32 on
CPU; t5_v1_1_base in bf16 with `--device gpu`) it also times t2t's train step (Adafactor) on
real packed span-corruption batches of the same task and lengths (`--step_batch_size` of the
pipeline's rows; CPU steps are slow, so fewer rows than `--batch_size`: tokens per second per
row is what is compared), alternating `--step_rounds` times one train step with pipeline
batches (one process, as the training loop reads them by default). The `feed/...` record gives
both tokens per second (the step's counted like the pipeline's: the non-padding tokens of the
rows it consumes), their ratio `pipeline_over_step` (the issue asks >= 10) and steps per second
at `--batch_size` rows each. `--step_model ''` skips it.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import sys
import time

try:
    import t2t  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np

import common  # noqa: E402  (benchmarks/common.py: device choice, train step, timing)
from t2t import batch_spec, tasks
from t2t.data import objectives, pipeline

# The token streams counted per converter: what the encoder reads and the decoder predicts.
TOKEN_KEYS = {name: tuple(k for k in ("encoder_input_tokens", "decoder_target_tokens")
                          if k in spec.keys) for name, spec in batch_spec.SPECS.items()}


def measure(task: str, objective: str, *, data_dir, vocab, batch_size: int, batches: int,
            warmup: int, num_workers: int = 0, pack: bool = True, seed: int = 0) -> dict:
    """One configuration's throughput record."""
    converter = objectives.get_objective(objective).converter
    lengths = dict(tasks.get_task(task).default_sequence_length)
    ds = pipeline.get_dataset(task, "train", sequence_length=lengths, global_batch_size=batch_size,
                              converter=converter, pack=pack, seed=seed, data_dir=data_dir,
                              vocabulary=vocab, num_workers=num_workers, shard=(0, 1))
    start = time.perf_counter()
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    first_batches_s = time.perf_counter() - start
    tokens = rows = 0
    start = time.perf_counter()
    for batch in itertools.islice(it, batches):
        tokens += sum(int(np.count_nonzero(batch[k])) for k in TOKEN_KEYS[converter])
        rows += len(batch[TOKEN_KEYS[converter][0]])
    seconds = time.perf_counter() - start
    if hasattr(it, "close"):
        it.close()
    return {"name": f"{objective}/{'packed' if pack else 'padded'}/workers={num_workers}",
            "task": task, "objective": objective, "converter": converter, "pack": pack,
            "num_workers": num_workers, "batch_size": batch_size, "sequence_length": lengths,
            "batches": batches, "seconds": seconds, "warmup_seconds": first_batches_s,
            "rows_per_s": rows / seconds, "tokens_per_s": tokens / seconds,
            "tokens_per_row": tokens / rows, "steps_per_s_fed": rows / seconds / batch_size}


def feed_vs_step(task: str, *, data_dir, vocab, batch_size: int, model: str, device: str,
                 step_batch_size: int, rounds: int, batches_per_round: int = 4,
                 fast_compile: bool = False) -> dict:
    """Pipeline tokens/s against the train step's on the same task, lengths and rows."""
    import jax
    from t2t.models import variants
    lengths = dict(tasks.get_task(task).default_sequence_length)
    jax_device = common.select_device(device, fast_compile)
    cfg = variants.get_model_config(model, dtype="bfloat16" if device == "gpu" else "float32")
    it = iter(pipeline.get_dataset(task, "train", sequence_length=lengths,
                                   global_batch_size=batch_size, converter="enc_dec", pack=True,
                                   seed=0, data_dir=data_dir, vocabulary=vocab, shard=(0, 1)))
    first = next(it)
    step_batch = {k: v[:step_batch_size] for k, v in first.items()}
    keys = TOKEN_KEYS["enc_dec"]
    step_tokens_per_row = sum(int(np.count_nonzero(step_batch[k])) for k in keys) / step_batch_size
    state, step, jbatch = common.make_t2t_step(cfg, step_batch, "adafactor", jax_device)
    holder, pipe = [state], {"tokens": 0, "rows": 0}

    def train():
        holder[0], metrics = step(holder[0], jbatch)
        jax.block_until_ready((holder[0], metrics))

    def read():
        for batch in itertools.islice(it, batches_per_round):
            pipe["tokens"] += sum(int(np.count_nonzero(batch[k])) for k in keys)
            pipe["rows"] += len(batch[keys[0]])
    train(), read()  # warm-up: compilation, the pipeline's first batches
    pipe.update(tokens=0, rows=0)
    times = common.interleave({"step": train, "pipeline": read}, warmup=0, steps=rounds)
    pipe_rows_s = pipe["rows"] / sum(times["pipeline"])
    step_rows_s = step_batch_size / common.median(times["step"])
    pipe_tok_s = pipe["tokens"] / pipe["rows"] * pipe_rows_s
    step_tok_s = step_tokens_per_row * step_rows_s
    return {"name": f"feed/span_corruption/{model}", "task": task, "model": model,
            "dtype": cfg.dtype, "device": jax_device.device_kind, "sequence_length": lengths,
            "batch_size": batch_size, "step_batch_size": step_batch_size, "rounds": rounds,
            "pipeline_tokens_per_s": pipe_tok_s, "step_tokens_per_s": step_tok_s,
            "pipeline_over_step": pipe_tok_s / step_tok_s,
            "pipeline_steps_per_s": pipe_rows_s / batch_size,
            "step_steps_per_s": step_rows_s / batch_size,
            "step_seconds": times["step"], "pipeline_seconds": times["pipeline"]}


def _sources(args) -> tuple[str, str | None, str | None]:
    """(task prefix, data_dir, vocab path): C4 with T5's vocabulary, else the built-in corpus."""
    data_dir = args.data_dir or os.environ.get("T2T_DATA_DIR")
    if data_dir and (pathlib.Path(data_dir) / "c4" / "en").is_dir():
        vocab = args.vocab or str(pathlib.Path(data_dir) / "vocab" / "t5_cc_all.32000" / "spiece.model")
        return "c4", data_dir, vocab
    print(f"no C4 sample under data_dir={data_dir!r}; measuring the built-in corpus instead", file=sys.stderr)
    return "builtin", None, args.vocab


def print_table(records) -> None:
    print(f"{'configuration':<36} {'rows/s':>9} {'tokens/s':>11} {'tokens/row':>10} {'warmup s':>9} "
          f"{'steps/s fed':>11}")
    for r in records:
        if r["name"].startswith("feed/"):
            continue
        print(f"{r['name']:<36} {r['rows_per_s']:>9.1f} {r['tokens_per_s']:>11.0f} "
              f"{r['tokens_per_row']:>10.1f} {r['warmup_seconds']:>9.2f} {r['steps_per_s_fed']:>11.3f}")
    for r in records:
        if r["name"].startswith("feed/"):
            print(f"\n{r['name']} (step on {r['step_batch_size']} rows, {r['dtype']}): pipeline "
                  f"{r['pipeline_tokens_per_s']:,.0f} tokens/s vs train step "
                  f"{r['step_tokens_per_s']:,.0f} tokens/s = {r['pipeline_over_step']:.1f}x; "
                  f"steps/s at batch {r['batch_size']}: pipeline {r['pipeline_steps_per_s']:.3f}, "
                  f"step {r['step_steps_per_s']:.4f}")


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", default=None, help="folder with c4/en/*.json.gz (default $T2T_DATA_DIR)")
    p.add_argument("--vocab", default=None, help="SentencePiece model (default T5's, inside data_dir)")
    p.add_argument("--out", default=None, help="write the records here as a JSON list")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--batches", type=int, default=30, help="batches timed per configuration")
    p.add_argument("--warmup", type=int, default=2, help="batches run before timing (worker start-up)")
    p.add_argument("--workers", type=int, default=2, help="worker processes for the multi-process run")
    p.add_argument("--objectives", default=",".join(objectives.OBJECTIVES),
                   help="comma-separated objectives to time in one process ('' for none)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="where the train step of the feed comparison runs")
    p.add_argument("--step_model", default=None,
                   help="model variant of the feed comparison (default t5_v1_1_small on cpu, "
                        "t5_v1_1_base on gpu; '' skips it)")
    p.add_argument("--step_batch_size", type=int, default=0,
                   help="rows per train step (default 2 on cpu, --batch_size on gpu)")
    p.add_argument("--step_rounds", type=int, default=3, help="timed train steps (alternating)")
    p.add_argument("--fast_compile", action="store_true",
                   help="compile the train step with XLA's optimisation passes off (smoke tests)")
    args = p.parse_args(argv)
    if args.step_model is None:
        args.step_model = "t5_v1_1_base" if args.device == "gpu" else "t5_v1_1_small"
    if args.step_model:
        common.select_device(args.device)  # fail before the pipeline runs, not after

    prefix, data_dir, vocab = _sources(args)
    kwargs = dict(data_dir=data_dir, vocab=vocab, batch_size=args.batch_size, batches=args.batches,
                  warmup=args.warmup)
    records = [measure(f"{prefix}_span_corruption", "span_corruption", **kwargs),
               measure(f"{prefix}_span_corruption", "span_corruption", num_workers=args.workers, **kwargs)]
    for objective in filter(None, args.objectives.split(",")):
        if objective != "span_corruption":
            records.append(measure(f"{prefix}_{objective}", objective, **kwargs))
    if args.step_model:
        records.append(feed_vs_step(
            f"{prefix}_span_corruption", data_dir=data_dir, vocab=vocab,
            batch_size=args.batch_size, model=args.step_model, device=args.device,
            step_batch_size=args.step_batch_size or (args.batch_size if args.device == "gpu" else 2),
            rounds=args.step_rounds, fast_compile=args.fast_compile))
    for r in records:
        print(json.dumps(r))
    print_table(records)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(records, indent=2) + "\n")
    return records


if __name__ == "__main__":
    main()
