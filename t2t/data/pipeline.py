"""The Grain loader: task or mixture -> converter (+ packing) -> batches, per process.

Every process reads its own shard of the source (`shard=(process_index,
process_count)`), shuffles it with the seed, runs the task's preprocessors and
the feature converter, packs, and batches `global_batch_size / process_count`
rows. The iterator's `get_state()` / `set_state()` let training resume on the
exact next batch.
"""
from __future__ import annotations

from typing import Mapping

import grain
import numpy as np

from t2t.data import converters as converters_lib
from t2t.data import registry
from t2t.data.vocab import SentencePieceVocabulary


def process_shard() -> tuple[int, int]:
    """(process_index, process_count) from JAX's runtime."""
    import jax
    return jax.process_index(), jax.process_count()


def get_dataset(task: registry.Task | registry.Mixture | str, split: str, *, sequence_length: Mapping[str, int],
                global_batch_size: int, converter: str = "enc_dec", pack: bool = False,
                seed: int = 0, shuffle: bool = True, num_epochs: int | None = None,
                data_dir=None, vocabulary: SentencePieceVocabulary | str | None = None,
                num_workers: int = 0, shard: tuple[int, int] | None = None,
                drop_remainder: bool = True, packing_bins: int = 8,
                num_shards: int = 0) -> grain.IterDataset:
    """Batches of the batch-key contract (t2t/batch_spec.py) for a task or mixture.

    `num_epochs=None` repeats forever (training); eval uses `num_epochs=1,
    shuffle=False, drop_remainder=False`. With `num_workers > 0` preprocessing
    runs in that many worker processes (deterministic for a fixed count).
    """
    if isinstance(task, str):  # a registered name (built-ins register on `import t2t.tasks`)
        task = registry.get_task_or_mixture(task)
    shard = shard or process_shard()
    if num_shards:
        common = dict(sequence_length=sequence_length, converter=converter, pack=pack, seed=seed,
                      shuffle=shuffle, num_epochs=num_epochs, data_dir=data_dir,
                      vocabulary=vocabulary, drop_remainder=drop_remainder,
                      packing_bins=packing_bins)
        return _fixed_shards(task, split, shard, num_shards, global_batch_size, num_workers, common)
    index, count = shard
    if global_batch_size % count:
        raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                         f"{count} data-loading processes")
    if isinstance(vocabulary, str):
        vocabulary = SentencePieceVocabulary(vocabulary)
    if isinstance(task, registry.Mixture):
        ds = task.get_dataset(split, sequence_length=sequence_length, data_dir=data_dir,
                                shuffle=shuffle, seed=seed, shard=shard, vocabulary=vocabulary)
    else:
        ds = task.with_vocabulary(vocabulary).get_dataset(
            split, sequence_length=sequence_length, data_dir=data_dir, shuffle=shuffle,
            seed=seed, num_epochs=num_epochs, shard=shard)
    ds = converters_lib.get_converter(converter, pack=pack, num_bins=packing_bins, seed=seed)(
        ds, sequence_length)
    ds = ds.batch(global_batch_size // count, drop_remainder=drop_remainder)
    if num_workers > 0:
        _allow_unparsed_absl_flags()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return ds


def _fixed_shards(task, split, shard, num_shards, global_batch_size, num_workers,
                  kwargs) -> grain.IterDataset:
    """The global batch built from `num_shards` data shards, whatever the process count.

    Each shard is its own stream of `global_batch_size / num_shards` rows per batch;
    process i of P owns shards [i*S/P, (i+1)*S/P) and concatenates their rows in
    order, so the global batch (processes in order) is the same for any P dividing S.
    """
    index, count = shard
    if num_shards % count or global_batch_size % num_shards:
        raise ValueError(f"data.num_shards={num_shards} must be a multiple of the {count} processes "
                         f"and divide the global batch size {global_batch_size}")
    per = num_shards // count
    parts = [get_dataset(task, split, shard=(index * per + j, num_shards),
                         global_batch_size=global_batch_size, **kwargs)
             for j in range(per)]
    ds = parts[0] if per == 1 else grain.experimental.ZipIterDataset(parts).map(
        lambda rows: {k: np.concatenate([r[k] for r in rows]) for k in rows[0]})
    if num_workers > 0:
        _allow_unparsed_absl_flags()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return ds


def _allow_unparsed_absl_flags() -> None:
    """Grain 0.2.18's worker processes read an absl flag; outside `absl.app.run` (pytest,
    notebooks, plain scripts) that raises UnparsedFlagAccessError (google/grain#1355).
    Marking the flags parsed keeps their defaults; a later `app.run` still parses argv."""
    from absl import flags
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def as_numpy(batch: Mapping) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in batch.items()}
