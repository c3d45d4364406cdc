"""Log-likelihood of targets given inputs under a t2t checkpoint.

  python -m t2t.score --checkpoint DIR --vocab SPM_MODEL --input TEXT --target TEXT
  python -m t2t.score --checkpoint DIR --vocab SPM_MODEL --file PAIRS.jsonl

PAIRS.jsonl holds one {"input": ..., "target": ...} per line. Prints one JSON line per pair:
{"input", "target", "log_likelihood" (sum over target tokens, EOS included), "num_tokens"}.
Input and target are tokenized with EOS appended. Decoder-only checkpoints score the target
after the input as prefix (decoder_causal_attention marks the input + start token, as T5X).
"""
from __future__ import annotations

from t2t import allocator

if __name__ == "__main__":  # before the heavy imports: XLA CPU steps run faster under tcmalloc
    allocator.reexec_with_tcmalloc()

import argparse
import json
import sys

import grain
import jax
import numpy as np

from t2t.data import converters
from t2t.data.vocab import SentencePieceVocabulary
from t2t.fileio import read_jsonl
from t2t.models.model import build_model
from t2t.workdir.model_dir import load_checkpoint, load_config

EOS_ID = 1


def _bucket(n: int) -> int:
    """Pads lengths to a power of two (>= 8) so few shapes get compiled."""
    return max(8, 1 << (n - 1).bit_length())


def make_batch(inputs: list[list[int]], targets: list[list[int]], architecture: str) -> dict:
    """Scoring batch from token ids that already end in EOS, built by the feature converter
    the architecture consumes for inputs + targets (enc_dec, or prefix_lm for decoder-only)."""
    if architecture not in ("encoder_decoder", "decoder_only"):
        raise ValueError(f"t2t.score needs an encoder_decoder or decoder_only checkpoint, got "
                         f"architecture={architecture!r}")
    name = "enc_dec" if architecture == "encoder_decoder" else "prefix_lm"
    lengths = {"inputs": _bucket(max(map(len, inputs))), "targets": _bucket(max(map(len, targets)))}
    rows = [{"inputs": np.asarray(i, np.int32), "targets": np.asarray(t, np.int32)}
            for i, t in zip(inputs, targets)]
    source = grain.MapDataset.source(rows).to_iter_dataset()
    converted = list(converters.get_converter(name)(source, lengths))
    return {k: np.stack([row[k] for row in converted]) for k in converted[0]}


def read_pairs(args) -> list[dict]:
    if args.file is None:
        return [{"input": args.input, "target": args.target}]
    return [{"input": row["input"], "target": row["target"]}
            for row in read_jsonl(args.file, required_keys=("input", "target"))]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m t2t.score", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="t2t checkpoint dir (model_config.json)")
    p.add_argument("--vocab", required=True, help="SentencePiece model file")
    p.add_argument("--input")
    p.add_argument("--target")
    p.add_argument("--file", help="JSONL of {\"input\": ..., \"target\": ...}")
    p.add_argument("--batch_size", type=int, default=16)
    args = p.parse_args(argv)
    if (args.file is None) == (args.input is None or args.target is None):
        p.error("give either --input and --target, or --file")
    return args


def main(argv=None, out=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    cfg = load_config(args.checkpoint)
    vocab = SentencePieceVocabulary(args.vocab)
    if vocab.vocab_size > cfg.vocab_size:
        raise ValueError(f"--vocab {args.vocab} has {vocab.vocab_size} ids but the checkpoint's "
                         f"model has vocab_size={cfg.vocab_size}")
    pairs = read_pairs(args)
    _, params = load_checkpoint(args.checkpoint)
    model = build_model(cfg)
    score = jax.jit(model.score)
    for start in range(0, len(pairs), args.batch_size):
        chunk = pairs[start:start + args.batch_size]
        inputs = [vocab.encode(p["input"]) + [EOS_ID] for p in chunk]
        targets = [vocab.encode(p["target"]) + [EOS_ID] for p in chunk]
        lls = np.asarray(score(params, make_batch(inputs, targets, cfg.architecture)))
        for pair, tgt, ll in zip(chunk, targets, lls):
            out.write(json.dumps({**pair, "log_likelihood": float(ll),
                                  "num_tokens": len(tgt)}) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
