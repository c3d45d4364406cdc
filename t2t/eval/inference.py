"""Model inference for task evaluation: batched, jit-compiled decoding and rank classification.

Examples come from the task's own preprocessors (token ids with EOS appended, trimmed to the
run's sequence lengths, plus the `*_pretokenized` strings the metrics read). Batches are built
by the feature converters, so they follow the batch-key contract exactly: `enc_dec` for
encoder-decoder models, `prefix_lm` for decoder-only ones (inputs then targets in one row,
`decoder_causal_attention` 1 on the inputs and the first target position).

- decode: greedy (T5's default) up to the longest target of the split (EOS included, as
  seqio's evaluator sizes it); the prediction is the decoded text up to EOS.
- rank: every candidate target string of an example (`formats.candidates`: label words,
  ReCoRD entities) is scored with `model.score` (sum of target-token log-likelihoods); the
  best is the prediction. Tasks without candidates (WSC) are decoded instead.

Lengths are padded to powers of two and the last batch to the batch size, so a task compiles
once per shape; the jitted functions are kept per model, so periodic evaluation during training
and later evaluations in the same process reuse them. Compilation is timed apart (`Stats`).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Mapping, Sequence

import grain
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from t2t.data import converters, registry
from t2t.tasks import formats
from t2t.data.vocab import EOS_ID
from t2t.eval import evaluator

METHODS = ("decode", "rank")
CONVERTERS = {"encoder_decoder": "enc_dec", "decoder_only": "prefix_lm"}


def bucket(n: int, limit: int | None = None) -> int:
    """`n` rounded up to a power of two (at least 8), but at most `limit`."""
    padded = max(8, 1 << (max(n, 1) - 1).bit_length())
    return min(padded, limit) if limit else padded


@dataclasses.dataclass
class Stats:
    """What one task split cost: rows run through the model and seconds (compilation apart)."""

    examples: int = 0
    rows: int = 0
    seconds: float = 0.0
    compile_seconds: float = 0.0

    def summary(self) -> dict:
        return {"examples": self.examples, "rows": self.rows, "seconds": self.seconds,
                "compile_seconds": self.compile_seconds,
                "examples_per_second": self.examples / self.seconds if self.seconds else 0.0}


class Inference:
    """Decodes and scores task examples with one model; reuses compiled functions per shape.

    `sequence_length` ({"inputs", "targets"}) trims examples as training did. `sharding`
    (optional; the training mesh's batch sharding) splits each batch's rows over the devices,
    params stay as they are sharded and outputs come back replicated; the batch size is rounded
    up to a multiple of the row shards. Without it batches are passed as numpy arrays.
    """

    def __init__(self, model, vocab, *, sequence_length: Mapping[str, int], batch_size: int = 32,
                 sharding=None, decode_method: str = "greedy"):
        if model.architecture not in CONVERTERS:
            raise ValueError(f"task evaluation needs an encoder_decoder or decoder_only model, got "
                             f"architecture={model.architecture!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: expected >= 1")
        multiple = 1 if sharding is None else _row_shards(sharding)
        self.model, self.vocab = model, vocab
        self.batch_size = -(-int(batch_size) // multiple) * multiple
        self.sequence_length = {"inputs": int(sequence_length["inputs"]),
                                "targets": int(sequence_length["targets"])}
        self.sharding, self.decode_method = sharding, decode_method
        self.converter = converters.get_converter(CONVERTERS[model.architecture])
        self._examples: dict = {}

    # ------------------------------------------------------------------ examples
    def examples(self, task: registry.Task, split: str, data_dir=None,
                 max_examples: int | None = None) -> list[dict]:
        """The split's first `max_examples` examples, tokenized by the task's preprocessors
        (cached, so periodic evaluation reads and tokenizes each split once)."""
        key = (task.name, split, str(data_dir), max_examples)
        if key not in self._examples:
            ds = task.with_vocabulary(self.vocab).get_dataset(
                split, sequence_length=self.sequence_length, data_dir=data_dir)
            examples = evaluator.collect_examples(ds, max_examples)
            if examples and not {"inputs", "targets"} <= set(examples[0]):
                raise ValueError(f"task {task.name!r} split {split!r}: examples need 'inputs' and "
                                 f"'targets' token ids; the first has {sorted(examples[0])}")
            self._examples[key] = examples
        return self._examples[key]

    def _target_ids(self, text: str) -> np.ndarray:
        ids = self.vocab.encode(text)[: self.sequence_length["targets"] - 1]
        return np.asarray(ids + [EOS_ID], np.int32)

    # ------------------------------------------------------------------ decode and score
    def decode(self, params, examples: Sequence[Mapping], stats: Stats | None = None) -> list[str]:
        """Greedy (or `decode_method`) predictions as text, one per example."""
        longest = max(len(ex["targets"]) for ex in examples)
        max_decode_length = min(longest, self.sequence_length["targets"])
        # A one-token placeholder target: the prefix-LM row then holds every input token
        # and marks the input + start token as the prompt; encoder-decoder ignores it.
        rows = [{"inputs": ex["inputs"], "targets": np.asarray([EOS_ID], np.int32)}
                for ex in examples]
        lengths = {"inputs": bucket(max(len(ex["inputs"]) for ex in examples),
                                    self.sequence_length["inputs"]), "targets": 1}
        ids = self._run("decode", params, rows, lengths, stats, max_decode_length=max_decode_length)
        return [self.vocab.decode(row) for row in ids]

    def score(self, params, examples: Sequence[Mapping], targets: Sequence[str],
              stats: Stats | None = None) -> np.ndarray:
        """float64 [n]: log p(target_i | example_i), summed over target tokens (EOS included)."""
        rows = [{"inputs": ex["inputs"], "targets": self._target_ids(t)}
                for ex, t in zip(examples, targets, strict=True)]
        lengths = {"inputs": bucket(max(len(r["inputs"]) for r in rows), self.sequence_length["inputs"]),
                   "targets": bucket(max(len(r["targets"]) for r in rows), self.sequence_length["targets"])}
        return self._run("score", params, rows, lengths, stats).astype(np.float64)

    def evaluate(self, params, task: registry.Task, split: str, examples: Sequence[dict],
                 method: str = "decode") -> tuple[evaluator.TaskResult, dict]:
        """(metrics of the split, {"method", examples, rows, seconds, examples_per_second, ...})."""
        if method not in METHODS:
            raise ValueError(f"method={method!r}: expected one of {METHODS}")
        if not examples:
            raise ValueError(f"task {task.name!r} split {split!r}: no examples to evaluate")
        if method == "rank" and formats.candidates(task.name, examples[0]) is None:
            method = "decode"  # a generation task (WSC): T5 decodes it
        stats = Stats(examples=len(examples))
        if method == "decode":
            result = evaluator.evaluate_task(task, split, examples=examples,
                                             predict_fn=lambda exs: self.decode(params, exs, stats))
        else:
            result = evaluator.evaluate_task(
                task, split, examples=examples,
                score_fn=lambda exs, targets: self.score(params, exs, targets, stats))
        return result, {"method": method, **stats.summary()}

    # ------------------------------------------------------------------ batching and jit
    def _batches(self, rows: list[dict], lengths: Mapping[str, int]):
        """(batch, number of real rows): converter output stacked, the last batch padded by
        repeating its last row."""
        source = grain.MapDataset.source(rows).to_iter_dataset(
            grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
        converted = list(self.converter(source, lengths))
        for start in range(0, len(converted), self.batch_size):
            chunk = converted[start:start + self.batch_size]
            real = len(chunk)
            chunk += [chunk[-1]] * (self.batch_size - real)
            yield {k: np.stack([row[k] for row in chunk]) for k in chunk[0]}, real

    def _executable(self, kind, params, batch, stats: Stats, max_decode_length=None):
        start = time.perf_counter()  # jax caches lowering + compilation per function and shapes
        compiled = _jitted(self.model, kind, max_decode_length, self.decode_method,
                           self.sharding).lower(params, batch).compile()
        stats.compile_seconds += time.perf_counter() - start
        return compiled

    def _place(self, batch: dict) -> dict:
        """Global arrays (every process holds the whole batch) or the numpy batch itself."""
        if self.sharding is None:
            return batch
        return {k: jax.make_array_from_callback(v.shape, self.sharding, lambda index, v=v: v[index])
                for k, v in batch.items()}

    def _run(self, kind, params, rows, lengths, stats, max_decode_length=None) -> np.ndarray:
        stats = stats if stats is not None else Stats()
        outputs = []
        for batch, real in self._batches(rows, lengths):
            batch = self._place(batch)
            fn = self._executable(kind, params, batch, stats, max_decode_length)
            start = time.perf_counter()
            outputs.append(np.asarray(jax.device_get(fn(params, batch)))[:real])
            stats.seconds += time.perf_counter() - start
            stats.rows += real
        return np.concatenate(outputs)


def evaluate_tasks(runner: Inference, params, tasks: Sequence[registry.Task], split: str = "validation",
                   *, method: str = "decode", data_dir=None, max_examples: int | None = None):
    """([(TaskResult, info)] per task split, benchmark averages) for `tasks` on `params`.

    `split` "validation" means MNLI's validation_matched and _mismatched.
    """
    results = []
    for task in tasks:
        for s in evaluator.eval_splits(task, split):
            examples = runner.examples(task, s, data_dir, max_examples)
            results.append(runner.evaluate(params, task, s, examples, method))
    return results, evaluator.benchmark_averages([r for r, _ in results])


def total_speed(results) -> float:
    """Examples per second over all task splits of `evaluate_tasks` (compilation excluded)."""
    seconds = sum(info["seconds"] for _, info in results)
    return sum(info["examples"] for _, info in results) / seconds if seconds else 0.0


@functools.lru_cache(maxsize=64)
def _jitted(model, kind: str, max_decode_length: int | None, decode_method: str, sharding):
    """One jitted function per (model, kind, decode length): jax reuses its compilations."""
    if kind == "score":
        fn = model.score
    else:
        def fn(params, batch):
            return model.predict(params, batch, max_decode_length=max_decode_length,
                                 method=decode_method, jit=False)
    if sharding is None:
        return jax.jit(fn)
    return jax.jit(fn, out_shardings=NamedSharding(sharding.mesh, PartitionSpec()))


def _row_shards(sharding) -> int:
    """How many ways `sharding` splits a batch's rows (its first dimension)."""
    axes = sharding.spec[0] if len(sharding.spec) else None
    axes = (axes,) if isinstance(axes, str) else (axes or ())
    return math.prod(sharding.mesh.shape[a] for a in axes)
