"""The pretraining objectives of the T5 paper, as pure seeded NumPy functions.

Each objective maps a 1-D array of token ids (a chunk of concatenated text,
no EOS) and a `np.random.Generator` to `{"inputs": ..., "targets": ...}` (or
only `"targets"` for causal LM), following T5's `denoise` building blocks:
a noise mask, an inputs function and a targets function. EOS is appended
afterwards by `registry.append_eos_after_trim`.

Which feature converter (t2t/data/converters.py) each objective pairs with:
  span_corruption, iid_denoise, drop_tokens, bert_t5, mass, deshuffle, prefix_lm
      -> EncDecConverter (encoder-decoder), or PrefixLMConverter (decoder-only
         prefix LM: inputs become the bidirectional prefix);
  bert_mlm -> EncoderOnlyConverter (inputs and targets aligned, loss on masked);
  causal_lm -> LMConverter (decoder-only, targets only).
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Callable, Mapping

import grain
import numpy as np

from t2t.data import registry

# ------------------------------------------------------------------------ lengths
def random_spans_helper(inputs_length: int = 512, noise_density: float = 0.15,
                        mean_noise_span_length: float = 3.0) -> tuple[int, int]:
    """T5's helper: raw tokens per example and target length for span corruption.

    For 512 inputs at density 0.15 and mean span 3: (568, 114).
    """
    def lengths(tokens_length):
        num_noise = int(round(tokens_length * noise_density))
        num_nonnoise = tokens_length - num_noise
        num_spans = int(round(num_noise / mean_noise_span_length))
        # inputs: non-noise tokens, one sentinel per span, EOS; targets likewise.
        return num_nonnoise + num_spans + 1, num_noise + num_spans + 1

    tokens_length = inputs_length - 1
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    inputs, targets = lengths(tokens_length)
    if noise_density == 0.5 and targets > inputs:
        tokens_length -= 1
        targets -= 1
    return tokens_length, targets


# ------------------------------------------------------------------------ noise masks
def random_spans_noise_mask(length: int, rng: np.random.Generator, noise_density: float = 0.15,
                            mean_noise_span_length: float = 3.0) -> np.ndarray:
    """T5's span mask: round(length*density) noise tokens in round(noise/mean) spans.

    Noise and non-noise span lengths are random segmentations; the sequence
    starts with a non-noise span and alternates.
    """
    if noise_density == 0.0:
        return np.zeros(length, bool)
    orig_length, length = length, max(length, 2)
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
    num_nonnoise = length - num_noise

    def segment_lengths(num_items, num_segments):
        first = np.concatenate([[0], rng.permutation(np.arange(num_items - 1) < num_segments - 1)])
        return np.bincount(np.cumsum(first), minlength=num_segments)

    noise_lengths = segment_lengths(num_noise, num_spans)
    nonnoise_lengths = segment_lengths(num_nonnoise, num_spans)
    interleaved = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)
    starts = np.cumsum(interleaved)[:-1]
    span_num = np.cumsum(np.bincount(starts, minlength=length))
    return (span_num % 2 == 1)[:orig_length]


def iid_noise_mask(length: int, rng: np.random.Generator, noise_density: float) -> np.ndarray:
    """Each token is noise independently with probability `noise_density`."""
    return rng.random(length) < noise_density


def random_prefix_noise_mask(length: int, rng: np.random.Generator) -> np.ndarray:
    """True on a prefix of uniform length in [1, length - 1] (T5's prefix LM split)."""
    max_inputs = length - 1
    num_inputs = rng.integers(min(max_inputs, 1), max_inputs + 1)
    return np.arange(length) < num_inputs


# ------------------------------------------------------------------------ inputs/targets functions
def noise_span_to_unique_sentinel(tokens, noise_mask, vocab_size: int) -> np.ndarray:
    """Each noise span becomes one sentinel: vocab_size-1, vocab_size-2, ... in order."""
    prev_noise = np.concatenate([[False], noise_mask[:-1]])
    first_noise = noise_mask & ~prev_noise
    sentinels = vocab_size - np.cumsum(first_noise)
    out = np.where(first_noise, sentinels, tokens)
    return out[~(noise_mask & prev_noise)].astype(np.int32)


def nonnoise_span_to_unique_sentinel(tokens, noise_mask, vocab_size: int) -> np.ndarray:
    return noise_span_to_unique_sentinel(tokens, ~noise_mask, vocab_size)


def noise_token_to_sentinel(tokens, noise_mask, vocab_size: int) -> np.ndarray:
    """Every noise token becomes the single mask sentinel `vocab_size - 1` (<extra_id_0>)."""
    return np.where(noise_mask, vocab_size - 1, tokens).astype(np.int32)


def noise_token_to_random_token(tokens, noise_mask, vocab_size, rng, num_reserved_tokens=3):
    random = rng.integers(num_reserved_tokens, vocab_size, size=len(tokens))
    return np.where(noise_mask, random, tokens).astype(np.int32)


def permute_noise_tokens(tokens, noise_mask, rng) -> np.ndarray:
    out = np.array(tokens, np.int32)
    out[noise_mask] = rng.permutation(out[noise_mask])
    return out


# ------------------------------------------------------------------------ objectives
def span_corruption(tokens, rng, *, vocab_size, noise_density=0.15, mean_noise_span_length=3.0):
    """T5's default: spans replaced by unique sentinels; targets list the spans."""
    tokens = np.asarray(tokens, np.int32)
    mask = random_spans_noise_mask(len(tokens), rng, noise_density, mean_noise_span_length)
    return {"inputs": noise_span_to_unique_sentinel(tokens, mask, vocab_size),
            "targets": nonnoise_span_to_unique_sentinel(tokens, mask, vocab_size)}


def iid_denoise(tokens, rng, *, vocab_size, noise_density=0.15):
    """'Replace corrupted spans' with i.i.d. noise: consecutive noise tokens share a sentinel."""
    tokens = np.asarray(tokens, np.int32)
    mask = iid_noise_mask(len(tokens), rng, noise_density)
    return {"inputs": noise_span_to_unique_sentinel(tokens, mask, vocab_size),
            "targets": nonnoise_span_to_unique_sentinel(tokens, mask, vocab_size)}


def drop_tokens(tokens, rng, *, vocab_size, noise_density=0.15):
    """'Drop corrupted tokens': noise tokens vanish from inputs; targets are those tokens."""
    del vocab_size
    tokens = np.asarray(tokens, np.int32)
    mask = iid_noise_mask(len(tokens), rng, noise_density)
    return {"inputs": tokens[~mask], "targets": tokens[mask]}


def bert_t5(tokens, rng, *, vocab_size, noise_density=0.15, random_prob=0.1):
    """BERT-style as T5 ran it: corrupted tokens -> mask sentinel (90%) or a random
    token in [3, vocab_size) (10%); targets are the original text."""
    tokens = np.asarray(tokens, np.int32)
    mask = iid_noise_mask(len(tokens), rng, noise_density)
    use_random = rng.random(len(tokens)) < random_prob
    inputs = np.where(use_random, noise_token_to_random_token(tokens, mask, vocab_size, rng),
                      noise_token_to_sentinel(tokens, mask, vocab_size))
    return {"inputs": inputs.astype(np.int32), "targets": tokens}


def bert_mlm(tokens, rng, *, vocab_size, noise_density=0.15, mask_prob=0.8, random_prob=0.1):
    """BERT's own masking for encoder-only MLM: of the corrupted tokens 80% become the
    mask sentinel, 10% a random token, 10% stay; `loss_mask` marks corrupted positions."""
    tokens = np.asarray(tokens, np.int32)
    mask = iid_noise_mask(len(tokens), rng, noise_density)
    u = rng.random(len(tokens))
    to_mask = mask & (u < mask_prob)
    to_random = mask & (u >= mask_prob) & (u < mask_prob + random_prob)
    inputs = noise_token_to_sentinel(tokens, to_mask, vocab_size)
    inputs = noise_token_to_random_token(inputs, to_random, vocab_size, rng)
    return {"inputs": inputs, "targets": tokens, "loss_mask": mask.astype(np.int32)}


def mass(tokens, rng, *, vocab_size, noise_density=0.15):
    """MASS-style (T5 paper): corrupted tokens -> mask sentinel, targets the original text."""
    tokens = np.asarray(tokens, np.int32)
    mask = iid_noise_mask(len(tokens), rng, noise_density)
    return {"inputs": noise_token_to_sentinel(tokens, mask, vocab_size), "targets": tokens}


def deshuffle(tokens, rng, *, vocab_size):
    """Deshuffling: inputs are the tokens in random order, targets the original text."""
    del vocab_size
    tokens = np.asarray(tokens, np.int32)
    return {"inputs": permute_noise_tokens(tokens, np.ones(len(tokens), bool), rng), "targets": tokens}


def prefix_lm(tokens, rng, *, vocab_size):
    """Prefix LM: a random split point in [1, len-1]; inputs = prefix, targets = the rest."""
    del vocab_size
    tokens = np.asarray(tokens, np.int32)
    prefix = random_prefix_noise_mask(len(tokens), rng)
    return {"inputs": tokens[prefix], "targets": tokens[~prefix]}


def causal_lm(tokens, rng, *, vocab_size):
    """Causal LM: the chunk is the target (decoder-only, no inputs)."""
    del rng, vocab_size
    return {"targets": np.asarray(tokens, np.int32)}


# ------------------------------------------------------------------------ registry of objectives
@dataclasses.dataclass(frozen=True)
class Objective:
    """An objective, its default sequence lengths and how many raw tokens it consumes."""

    name: str
    fn: Callable
    converter: str  # "enc_dec", "lm", "prefix_lm" or "enc_only": the natural pairing
    kwargs: Mapping = dataclasses.field(default_factory=dict)

    def raw_length(self, sequence_length: Mapping[str, int]) -> int:
        """Tokens per chunk so that the example fits `sequence_length` (EOS included)."""
        if self.fn is span_corruption:
            return random_spans_helper(sequence_length["inputs"], **self.kwargs)[0]
        if self.fn is causal_lm:
            return sequence_length["targets"] - 1
        return sequence_length["inputs"] - 1

    def default_sequence_length(self, inputs_length: int = 512) -> dict[str, int]:
        if self.fn is span_corruption:
            return {"inputs": inputs_length, "targets": random_spans_helper(inputs_length, **self.kwargs)[1]}
        if self.fn is causal_lm:
            return {"targets": inputs_length}
        return {"inputs": inputs_length, "targets": inputs_length}


OBJECTIVES = {o.name: o for o in [
    Objective("span_corruption", span_corruption, "enc_dec"),
    Objective("iid_denoise", iid_denoise, "enc_dec"),
    Objective("drop_tokens", drop_tokens, "enc_dec"),
    Objective("bert_t5", bert_t5, "enc_dec"),
    Objective("bert_mlm", bert_mlm, "enc_only"),
    Objective("mass", mass, "enc_dec"),
    Objective("deshuffle", deshuffle, "enc_dec"),
    Objective("prefix_lm", prefix_lm, "enc_dec"),
    Objective("causal_lm", causal_lm, "lm"),
]}


def arguments(name: str) -> dict[str, float]:
    """The objective's arguments with their defaults (vocab_size aside: the vocabulary's)."""
    params = inspect.signature(_lookup(name).fn).parameters
    return {k: p.default for k, p in params.items()
            if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}


def _lookup(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; known: {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name]


# Every argument any objective takes: the config's objective block has one field for each.
ARGUMENTS = sorted({k for name in OBJECTIVES for k in arguments(name)})
# Arguments that are probabilities (in [0, 1]); the others (span lengths) are >= 1.
_RATES = ("noise_density", "random_prob", "mask_prob")


def get_objective(name: str, **kwargs) -> Objective:
    """The objective `name` with `kwargs` replacing its default arguments.

    An unknown objective or argument, or a value out of range, is a ValueError that lists
    what is allowed."""
    base = _lookup(name)
    allowed = arguments(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"objective {name!r} takes no argument(s) {unknown}; its arguments "
                         f"are {sorted(allowed) or 'none'}")
    for key, value in kwargs.items():
        low, high = (0.0, 1.0) if key in _RATES else (1.0, float("inf"))
        if not low <= float(value) <= high:
            raise ValueError(f"objective {name!r}: {key}={value} is out of range; expected a "
                             f"value in [{low}, {high}]")
    changed = {k: float(v) for k, v in kwargs.items() if float(v) != allowed[k]}
    return dataclasses.replace(base, kwargs=changed) if changed else base


def from_config(block) -> Objective:
    """The objective of a config's `data.objective` block: `name` plus arguments, where an
    unset (None) argument keeps the objective's default."""
    block = dict(block)
    name = block.pop("name", None)
    if not name:
        raise ValueError("data.objective.name is not set; objectives: "
                         f"{', '.join(sorted(OBJECTIVES))}")
    return get_objective(name, **{k: v for k, v in block.items() if v is not None})


def describe(objective: Objective) -> dict:
    """{"name", every argument with its value}: what a run's objective resolves to."""
    return {"name": objective.name, **arguments(objective.name), **objective.kwargs}


# ------------------------------------------------------------------------ as task preprocessors
def concat_and_split(raw_length: int, feature: str = "targets") -> registry.Preprocessor:
    """T5's reduce_concat_tokens + split_tokens: documents' tokens are concatenated
    (no separator) and cut into chunks of `raw_length` (Grain ConcatThenSplit)."""
    def pp(ds, ctx):
        ds = ds.map(lambda ex: {feature: np.asarray(ex[feature], np.int32)})
        ds = _ConcatThenSplit(registry.to_iter(ds), length_struct={feature: raw_length})
        return ds.map(lambda ex: {feature: ex[feature][ex[f"{feature}_segment_ids"] > 0]})
    return pp


class _ConcatThenSplit(grain.experimental.ConcatThenSplitIterDataset):
    """Grain's concat-then-split, with an iterator state that survives a JSON round trip.

    Grain 0.2.18 marks "no remainder" with the tuple (-1, -1) and tests it with `!=`;
    after JSON (which grain's own Orbax handler uses) it comes back as a list, reads as
    a real slice, and the restored iterator resumes on the wrong tokens.
    """

    def __iter__(self):
        return _TupleSlicesIterator(super().__iter__())


class _TupleSlicesIterator(grain.DatasetIterator):
    def __next__(self):
        return next(self._parent)

    def get_state(self):
        return self._parent.get_state()

    def set_state(self, state):
        slices = {k: tuple(v) for k, v in state["remainder_slices"].items()}
        self._parent.set_state({**state, "remainder_slices": slices})


def apply_objective(objective: Objective, feature: str = "targets") -> registry.Preprocessor:
    """Runs the objective on `feature` of every example with a per-example seeded rng."""
    def pp(ds, ctx):
        vocab_size = ctx.vocabulary(feature).vocab_size
        fn = objective.fn
        kwargs = dict(objective.kwargs)

        def run(ex, rng):
            return fn(ex[feature], rng, vocab_size=vocab_size, **kwargs)
        return ds.random_map(run, seed=(ctx.seed * 7919 + 17) % 2**32)
    return pp


def check_lengths(objective: Objective) -> registry.Preprocessor:
    """Fails early with a clear message when sequence lengths cannot hold the objective."""
    def pp(ds, ctx):
        lengths = ctx.sequence_length
        if not lengths:
            raise ValueError(f"objective {objective.name!r} needs sequence lengths "
                             f"(e.g. {objective.default_sequence_length()})")
        needed = ("targets",) if objective.fn is causal_lm else ("inputs", "targets")
        for key in needed:
            if key not in lengths:
                raise ValueError(f"objective {objective.name!r} needs a sequence length for {key!r}")
        raw = objective.raw_length(lengths)
        minimum = 4 if objective.fn is not span_corruption else 8
        if raw < minimum or any(lengths[k] < 2 for k in needed):
            raise ValueError(f"sequence lengths {dict(lengths)} are too short for objective "
                             f"{objective.name!r} (raw chunk {raw} tokens; need >= {minimum})")
        if objective.fn is span_corruption:
            _, targets = random_spans_helper(lengths["inputs"], **objective.kwargs)
            if lengths["targets"] < targets:
                raise ValueError(f"span corruption with inputs {lengths['inputs']} needs targets "
                                 f">= {targets}, got {lengths['targets']}")
            density = objective.kwargs.get("noise_density", 0.15)
            mean_span = objective.kwargs.get("mean_noise_span_length", 3.0)
            spans = max(int(round(int(round(raw * density)) / mean_span)), 1)
            extra_ids = getattr(ctx.vocabulary("targets"), "extra_ids", None)
            if extra_ids is not None and spans > extra_ids:
                raise ValueError(
                    f"span corruption at density {density}, mean span {mean_span} on {raw} tokens "
                    f"makes {spans} spans but the vocabulary has only {extra_ids} sentinels "
                    "(extra_ids); use a vocabulary with more extra ids or shorter inputs")
        return ds
    return pp


def preprocessors(objective: Objective | str) -> list[registry.Preprocessor]:
    """Chunk, corrupt, then trim and append EOS: the tail of every pretraining task."""
    objective = get_objective(objective) if isinstance(objective, str) else objective

    def chunk(ds, ctx):
        return concat_and_split(objective.raw_length(ctx.sequence_length))(ds, ctx)
    return [check_lengths(objective), chunk, apply_objective(objective), registry.append_eos_after_trim]
