"""Tasks and mixtures, seqio-style.

A `Task` is a source, a list of preprocessors and the output features; a
`Mixture` samples several tasks at fixed rates. Both are registered by name.

A preprocessor is a callable `pp(ds, ctx) -> ds` on Grain datasets
(`grain.MapDataset` or `grain.IterDataset`), where `ctx` is a `Context`.
Example-level functions become preprocessors with `map_fn`, `random_map_fn`,
`flat_map_fn` and `filter_fn`.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Any, Callable, Iterable, Mapping, Sequence

import grain
import numpy as np

from t2t.data import sources as sources_lib
from t2t.data.vocab import SentencePieceVocabulary

Dataset = grain.MapDataset | grain.IterDataset


@dataclasses.dataclass(frozen=True)
class Feature:
    """An output feature: token ids from `vocabulary`, EOS appended after trimming."""

    vocabulary: SentencePieceVocabulary | None
    add_eos: bool = True
    required: bool = True


@dataclasses.dataclass(frozen=True)
class Context:
    """What a preprocessor may know about the dataset it transforms."""

    split: str
    output_features: Mapping[str, Feature]
    sequence_length: Mapping[str, int] | None = None
    seed: int = 0
    shuffle: bool = False
    data_dir: Any = None

    def vocabulary(self, feature: str = "targets") -> SentencePieceVocabulary:
        vocab = self.output_features[feature].vocabulary
        if vocab is None:
            raise ValueError(f"output feature {feature!r} has no vocabulary")
        return vocab


Preprocessor = Callable[[Dataset, Context], Dataset]


# ---------------------------------------------------------------- example-level adapters
def map_fn(fn: Callable[[dict], dict]) -> Preprocessor:
    """Preprocessor applying `fn(example) -> example` to every example."""
    @functools.wraps(fn)
    def pp(ds, ctx):
        return ds.map(fn)
    return pp


def random_map_fn(fn: Callable[[dict, np.random.Generator], dict], salt: int = 0) -> Preprocessor:
    """Preprocessor applying `fn(example, rng)`; the rng is derived from the seed and position."""
    @functools.wraps(fn)
    def pp(ds, ctx):
        return ds.random_map(fn, seed=(ctx.seed * 1_000_003 + salt) % 2**32)
    return pp


def filter_fn(fn: Callable[[dict], bool]) -> Preprocessor:
    @functools.wraps(fn)
    def pp(ds, ctx):
        return ds.filter(fn)
    return pp


def flat_map_fn(fn: Callable[[dict], Iterable[dict]]) -> Preprocessor:
    """Preprocessor replacing each example by the examples `fn` yields (any number)."""
    @functools.wraps(fn)
    def pp(ds, ctx):
        return grain.experimental.FlatMapIterDataset(to_iter(ds), _FlatMap(fn))
    return pp


class _FlatMap(grain.experimental.FlatMapTransform):
    max_fan_out = 1 << 20

    def __init__(self, fn):
        self._fn = fn

    def flat_map(self, element):
        return list(self._fn(element))


def to_iter(ds: Dataset) -> grain.IterDataset:
    return ds.to_iter_dataset() if isinstance(ds, grain.MapDataset) else ds


# ---------------------------------------------------------------- standard preprocessors
def rekey(mapping: Mapping[str, str | None]) -> Preprocessor:
    """New example with keys renamed: {new_key: old_key or None for empty string}."""
    def fn(ex):
        return {new: ("" if old is None else ex[old]) for new, old in mapping.items()}
    return map_fn(fn)


def tokenize(ds: Dataset, ctx: Context, copy_pretokenized: bool = True) -> Dataset:
    """Encodes every string output feature present; keeps `<key>_pretokenized` copies."""
    features = {k: f for k, f in ctx.output_features.items() if f.vocabulary is not None}

    def fn(ex):
        out = dict(ex)
        for key, feature in features.items():
            value = ex.get(key)  # features an objective creates later are absent here
            if isinstance(value, str):
                out[key] = np.asarray(feature.vocabulary.encode(value), np.int32)
                if copy_pretokenized:
                    out[f"{key}_pretokenized"] = value
        return out
    return ds.map(fn)


def append_eos_after_trim(ds: Dataset, ctx: Context) -> Dataset:
    """Trims each feature to its sequence length minus one and appends EOS (seqio)."""
    lengths = ctx.sequence_length or {}

    def fn(ex):
        out = dict(ex)
        for key, feature in ctx.output_features.items():
            if key not in ex or not feature.add_eos:
                continue
            ids = np.asarray(ex[key], np.int32)
            if key in lengths:
                ids = ids[: lengths[key] - 1]
            eos_id = feature.vocabulary.eos_id if feature.vocabulary else 1
            out[key] = np.concatenate([ids, np.asarray([eos_id], np.int32)])
        return out
    return ds.map(fn)


# ---------------------------------------------------------------- registries
class _Registry:
    def __init__(self, kind: str):
        self.kind, self._items = kind, {}

    def add(self, item):
        if item.name in self._items:
            raise ValueError(f"{self.kind} {item.name!r} is already registered; choose another "
                             f"name or remove the old one first ({self.kind.capitalize()}Registry.remove)")
        self._items[item.name] = item
        return item

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    def get(self, name: str):
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}{hint} ({len(self._items)} registered; "
                           "the built-in ones register on `import t2t.tasks`)")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name):
        return name in self._items


TaskRegistry = _Registry("task")
MixtureRegistry = _Registry("mixture")


@dataclasses.dataclass
class Task:
    """A named dataset: source -> preprocessors -> output features.

    `postprocess_fn(text, example=None, is_target=False)` maps decoded strings to
    the values `metric_fns(targets, predictions) -> {name: value}` compare.
    """

    name: str
    source: sources_lib.DataSource
    preprocessors: Sequence[Preprocessor] = ()
    output_features: Mapping[str, Feature] = dataclasses.field(default_factory=dict)
    postprocess_fn: Callable | None = None
    metric_fns: Sequence[Callable] = ()
    default_sequence_length: Mapping[str, int] | None = None
    description: str = ""

    @property
    def splits(self) -> tuple[str, ...]:
        return self.source.splits

    def with_vocabulary(self, vocab: SentencePieceVocabulary | None) -> "Task":
        """The same task with every tokenized feature using `vocab`."""
        if vocab is None:
            return self
        features = {k: dataclasses.replace(f, vocabulary=vocab) if f.vocabulary is not None else f
                    for k, f in self.output_features.items()}
        return dataclasses.replace(self, output_features=features)

    def num_input_examples(self, split: str, data_dir=None) -> int:
        return len(self.source.get(split, data_dir))

    def get_dataset(self, split: str, *, sequence_length: Mapping[str, int] | None = None,
                    data_dir=None, shuffle: bool = False, seed: int = 0,
                    num_epochs: int | None = 1, shard: tuple[int, int] = (0, 1)) -> Dataset:
        """Examples after every preprocessor, sharded as `shard = (index, count)`.

        With `shuffle`, the source order is shuffled with `seed` (a new order
        every epoch); `num_epochs=None` repeats forever.
        """
        if split not in self.splits:
            raise ValueError(f"task {self.name!r} has no split {split!r}; it has {list(self.splits)}")
        records = self.source.get(split, data_dir)
        if len(records) == 0:
            raise ValueError(f"task {self.name!r} split {split!r}: the source is empty")
        index, count = shard
        ds = grain.MapDataset.source(records)[index::count]
        if len(ds) == 0:
            raise ValueError(f"task {self.name!r} split {split!r}: shard {index} of {count} is empty "
                             f"({len(records)} examples)")
        if shuffle:
            ds = ds.shuffle(seed=seed % 2**32)
        if num_epochs != 1:
            ds = ds.repeat(num_epochs)
        ctx = Context(split=split, output_features=self.output_features,
                      sequence_length=sequence_length or self.default_sequence_length,
                      seed=seed, shuffle=shuffle, data_dir=data_dir)
        for pp in self.preprocessors:
            ds = pp(ds, ctx)
        return ds


def rate_num_examples(maximum: int | None = None, temperature: float = 1.0,
                      scale: float = 1.0) -> Callable[[Task, str, Any], float]:
    """seqio's examples-proportional rate: (scale * min(n, maximum)) ** (1 / temperature)."""
    def rate(task: Task, split: str, data_dir=None) -> float:
        n = scale * task.num_input_examples(split, data_dir)
        if maximum is not None:
            n = min(n, maximum)
        return float(n) ** (1.0 / temperature)
    return rate


@dataclasses.dataclass
class Mixture:
    """Several tasks sampled at rates: numbers, or callables `rate(task, split, data_dir)`."""

    name: str
    tasks: Sequence[str | tuple[str, float | Callable]]
    default_rate: float | Callable | None = None

    def first_task(self) -> Task:
        """The first task (its output features stand for the mixture's); reads no data."""
        entry = self.tasks[0]
        return get_task(entry[0] if isinstance(entry, tuple) else entry)

    def task_rates(self, split: str, data_dir=None) -> list[tuple[Task, float]]:
        out = []
        for entry in self.tasks:
            name, rate = entry if isinstance(entry, tuple) else (entry, self.default_rate)
            if rate is None:
                raise ValueError(f"mixture {self.name!r}: task {name!r} has no rate and no default_rate")
            task = get_task(name)
            value = rate(task, split, data_dir) if callable(rate) else float(rate)
            out.append((task, value))
        return out

    def get_dataset(self, split: str, *, sequence_length=None, data_dir=None, shuffle=True,
                    seed: int = 0, shard=(0, 1), vocabulary=None) -> grain.IterDataset:
        """An endless weighted mix of the tasks' (repeated) datasets."""
        rates = self.task_rates(split, data_dir)
        parts = [to_iter(task.with_vocabulary(vocabulary).get_dataset(
            split, sequence_length=sequence_length, data_dir=data_dir, shuffle=shuffle,
            seed=seed + i, num_epochs=None, shard=shard)) for i, (task, _) in enumerate(rates)]
        return grain.IterDataset.mix(parts, [r for _, r in rates])


def add_task(name: str, source, preprocessors=(), output_features=None, **kwargs) -> Task:
    return TaskRegistry.add(Task(name, source, list(preprocessors), output_features or {}, **kwargs))


def add_mixture(name: str, tasks, default_rate=None) -> Mixture:
    for entry in tasks:
        get_task(entry[0] if isinstance(entry, tuple) else entry)
    return MixtureRegistry.add(Mixture(name, list(tasks), default_rate))


def get_task(name: str) -> Task:
    return TaskRegistry.get(name)


def get_mixture(name: str) -> Mixture:
    return MixtureRegistry.get(name)


def get_task_or_mixture(name: str) -> Task | Mixture:
    if name in MixtureRegistry:
        return MixtureRegistry.get(name)
    if name in TaskRegistry:
        return TaskRegistry.get(name)
    everything = TaskRegistry.names() + MixtureRegistry.names()
    close = difflib.get_close_matches(name, everything, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"unknown task or mixture {name!r}{hint} (the built-in ones register on "
                   "`import t2t.tasks`)")
