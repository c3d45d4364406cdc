"""Tokens per second through the data pipeline: tokenize -> objective -> pack -> batch.

  python benchmarks/data_throughput.py [--data_dir ../shared/data] [--out FILE.json]

Runs the C4 sample's train split (`<data_dir>/c4/en/c4-train.*.json.gz`, T5's vocabulary at
`<data_dir>/vocab/t5_cc_all.32000/spiece.model`) through `t2t.data.pipeline.get_dataset`:
span corruption packed in one process and with `--workers` worker processes, then every
objective in one process. Without a data directory it falls back to the built-in corpus.
Each configuration is one JSON record; `tokens_per_s` counts the non-padding tokens the model
receives (encoder inputs + decoder targets for encoder-decoder, decoder targets for
decoder-only, encoder inputs for encoder-only), over `--batches` batches after `--warmup`.
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

from t2t.data import objectives, pipeline, registry

TOKEN_KEYS = {"enc_dec": ("encoder_input_tokens", "decoder_target_tokens"),
              "lm": ("decoder_target_tokens",), "prefix_lm": ("decoder_target_tokens",),
              "enc_only": ("encoder_input_tokens",)}


def measure(task: str, objective: str, *, data_dir, vocab, batch_size: int, batches: int,
            warmup: int, num_workers: int = 0, pack: bool = True, seed: int = 0) -> dict:
    """One configuration's throughput record."""
    converter = objectives.get_objective(objective).converter
    lengths = dict(registry.get_task(task).default_sequence_length)
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
            "tokens_per_row": tokens / rows}


def _sources(args) -> tuple[str, str | None, str | None]:
    """(task prefix, data_dir, vocab path): C4 with T5's vocabulary, else the built-in corpus."""
    data_dir = args.data_dir or os.environ.get("T2T_DATA_DIR")
    if data_dir and (pathlib.Path(data_dir) / "c4" / "en").is_dir():
        vocab = args.vocab or str(pathlib.Path(data_dir) / "vocab" / "t5_cc_all.32000" / "spiece.model")
        return "c4", data_dir, vocab
    print(f"no C4 sample under data_dir={data_dir!r}; measuring the built-in corpus instead", file=sys.stderr)
    return "builtin", None, args.vocab


def print_table(records) -> None:
    print(f"{'configuration':<36} {'rows/s':>9} {'tokens/s':>11} {'tokens/row':>10} {'warmup s':>9}")
    for r in records:
        print(f"{r['name']:<36} {r['rows_per_s']:>9.1f} {r['tokens_per_s']:>11.0f} "
              f"{r['tokens_per_row']:>10.1f} {r['warmup_seconds']:>9.2f}")


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
    args = p.parse_args(argv)

    prefix, data_dir, vocab = _sources(args)
    common = dict(data_dir=data_dir, vocab=vocab, batch_size=args.batch_size, batches=args.batches,
                  warmup=args.warmup)
    records = [measure(f"{prefix}_span_corruption", "span_corruption", **common),
               measure(f"{prefix}_span_corruption", "span_corruption", num_workers=args.workers, **common)]
    for objective in filter(None, args.objectives.split(",")):
        if objective != "span_corruption":
            records.append(measure(f"{prefix}_{objective}", objective, **common))
    for r in records:
        print(json.dumps(r))
    print_table(records)
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(records, indent=2) + "\n")
    return records


if __name__ == "__main__":
    main()
