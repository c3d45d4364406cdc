"""Show exactly what a task feeds the model.

  python -m t2t.inspect --task c4_span_corruption --split validation -n 5 \
      --data_dir ../shared/data --vocab ../shared/data/vocab/t5_cc_all.32000/spiece.model
  python -m t2t.inspect --config configs/quickstart.py --stats \
      --config.data.objective.name=iid_denoise --config.data.objective.noise_density=0.5

With `--config` (and the same `--config.a.b=value` flags as `t2t.train`) the task, objective,
sequence lengths, vocabulary and data directory are the run's (t2t/pairing.py), so what
you inspect is what you train.

Prints N preprocessed examples (before the feature converter) as JSON lines:
`inputs`/`targets` token ids, `inputs_text`/`targets_text` decoded (sentinels
shown as <extra_id_N>) and `*_pretokenized` strings where the task has them.
The train split is shuffled with --seed as in training; other splits come in
file order. --stats summarises the whole split instead.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys

import numpy as np

from t2t import config_file, pairing, tasks
from t2t.data import registry
from t2t.data.vocab import SentencePieceVocabulary


def parse_lengths(text: str | None) -> dict[str, int] | None:
    """'inputs:512,targets:114' -> {'inputs': 512, 'targets': 114}."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition(":")
        if not sep or not value.strip().isdigit():
            raise SystemExit(f"--sequence_length: expected key:int pairs like inputs:512,targets:114, got {part!r}")
        out[key.strip()] = int(value)
    return out


def example_record(ex: dict, features) -> dict:
    out = {}
    for key, feature in features.items():
        if key not in ex:
            continue
        ids = np.asarray(ex[key]).tolist()
        out[key] = ids
        out[f"{key}_text"] = feature.vocabulary.decode(ids) if feature.vocabulary else None
        if f"{key}_pretokenized" in ex:
            out[f"{key}_pretokenized"] = ex[f"{key}_pretokenized"]
    return out


def split_stats(records, vocab_size: int, extra_ids: int = 100) -> dict:
    """Lengths and sentinel order over a split; where targets carry sentinels too (span
    corruption, i.i.d. denoising) also the noise density, the mean noise span length and
    the spans / noise tokens / target length of every full-length example."""
    first_sentinel = vocab_size - extra_ids
    n, lengths, per_input, ordered = 0, {}, [], True
    noise = raw = spans = 0
    shapes = []  # (inputs length, spans, noise tokens, targets length)
    for rec in records:
        n += 1
        sentinels = {}
        for key in ("inputs", "targets"):
            if key in rec:
                lengths.setdefault(key, []).append(len(rec[key]))
                s = [t for t in rec[key] if t >= first_sentinel]
                ordered &= s == list(range(vocab_size - 1, vocab_size - 1 - len(s), -1))
                sentinels[key] = len(s)
        if "inputs" in rec:
            per_input.append(sentinels["inputs"])
        if sentinels.get("targets") and "inputs" in rec:
            n_noise = len(rec["targets"]) - sentinels["targets"] - 1  # EOS
            noise += n_noise
            raw += n_noise + len(rec["inputs"]) - sentinels["inputs"] - 1
            spans += sentinels["inputs"]
            shapes.append((len(rec["inputs"]), sentinels["inputs"], n_noise, len(rec["targets"])))
    stats = {"examples": n, "sentinels_in_order": bool(ordered)}
    for key, values in lengths.items():
        stats[f"{key}_length_mean"] = float(np.mean(values))
        stats[f"{key}_length_max"] = int(np.max(values))
    if per_input:
        stats["sentinels_per_input_mean"] = float(np.mean(per_input))
    if shapes:
        stats["noise_density"] = noise / raw
        stats["mean_noise_span_length"] = noise / max(spans, 1)
        full = [x for x in shapes if x[0] == max(lengths["inputs"])]
        stats["full_length_examples"] = len(full)
        for i, name in enumerate(("spans", "noise_tokens", "targets_length"), start=1):
            stats[f"full_length_{name}"] = sorted({x[i] for x in full})
    return stats


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m t2t.inspect", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", help="a registered task or mixture name")
    p.add_argument("--config", help="a run config (configs/NAME.py); takes --config.a.b=value")
    p.add_argument("--split", default=None, help="default: validation (--task) or the config's "
                   "data.split")
    p.add_argument("-n", type=int, default=5, help="examples to print")
    p.add_argument("--data_dir", default=None, help="folder of local data files (default $T2T_DATA_DIR)")
    p.add_argument("--vocab", default=None, help="SentencePiece model overriding the task's vocabulary")
    p.add_argument("--seed", type=int, default=None, help="default: 0 or the config's seed")
    p.add_argument("--sequence_length", default=None, help="e.g. inputs:512,targets:114")
    p.add_argument("--format", choices=("jsonl", "text"), default="jsonl")
    p.add_argument("--stats", action="store_true", help="summarise the whole split instead")
    argv, overrides = config_file.split_overrides(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    if bool(args.task) == bool(args.config):
        p.error("give exactly one of --task NAME and --config FILE")
    if overrides and not args.config:
        p.error(f"{config_file.PREFIX}* overrides need --config")
    args.overrides = overrides
    return args


def resolve(args):
    """(task or mixture, sequence lengths, vocabulary override, data_dir, seed, split)."""
    if args.task:
        return (tasks.get_task_or_mixture(args.task), parse_lengths(args.sequence_length),
                SentencePieceVocabulary(args.vocab) if args.vocab else None, args.data_dir,
                args.seed or 0, args.split or "validation")
    cfg = config_file.load(args.config, args.overrides)
    task, objective = pairing.resolve_task(cfg.data)
    vocab = args.vocab or cfg.data.get("vocab")
    lengths = parse_lengths(args.sequence_length) or pairing.sequence_lengths(cfg.data, objective)
    return (task, lengths, SentencePieceVocabulary(vocab) if vocab else None,
            args.data_dir or cfg.data.data_dir or None,
            cfg.seed if args.seed is None else args.seed, args.split or cfg.data.split)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        task, lengths, vocab, data_dir, seed, split = resolve(args)
    except (KeyError, ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e.args[0] if e.args else e}") from None
    if isinstance(task, registry.Mixture):
        if args.stats:
            raise SystemExit("error: --stats needs a task; a mixture is endless")
        ds = task.get_dataset(split, sequence_length=lengths, data_dir=data_dir, seed=seed,
                              vocabulary=vocab)
        features = task.first_task().with_vocabulary(vocab).output_features
    else:
        task = task.with_vocabulary(vocab)
        ds = task.get_dataset(split, sequence_length=lengths, data_dir=data_dir,
                              shuffle=split == "train", seed=seed, num_epochs=1)
        features = task.output_features
    records = (example_record(ex, features) for ex in ds)
    if args.stats:
        vocab = next(iter(features.values())).vocabulary
        print(json.dumps(split_stats(records, vocab.vocab_size, vocab.extra_ids)))
        return 0
    for i, rec in enumerate(itertools.islice(records, args.n)):
        if args.format == "jsonl":
            print(json.dumps(rec, ensure_ascii=False))
        else:
            print(f"=== example {i}")
            for key in ("inputs", "targets"):
                if key in rec:
                    if f"{key}_pretokenized" in rec:
                        print(f"{key}_pretokenized: {rec[key + '_pretokenized']}")
                    print(f"{key} ({len(rec[key])} tokens): {rec[key + '_text']}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
