"""The batch contract: the keys each feature converter emits, with their shapes and dtypes.

Every batch in t2t is a dict of int32 arrays [batch, length] whose keys are T5X's:

  enc_dec    (encoder-decoder)    encoder_input_tokens [inputs], decoder_input_tokens,
                                  decoder_target_tokens, decoder_loss_weights [targets];
                                  packed: encoder_segment_ids, encoder_positions [inputs],
                                  decoder_segment_ids, decoder_positions [targets]
  lm         (decoder-only)       decoder_input_tokens, decoder_target_tokens,
                                  decoder_loss_weights, decoder_causal_attention (all 0)
                                  [targets]; packed: decoder_segment_ids, decoder_positions
  prefix_lm  (decoder-only)       the same keys over [inputs + targets] positions;
                                  decoder_causal_attention is 1 on the inputs and the first
                                  target position (the bidirectional prefix)
  enc_only   (encoder-only MLM)   encoder_input_tokens, encoder_target_tokens,
                                  encoder_loss_weights [inputs]; packed:
                                  encoder_segment_ids, encoder_positions

Converters (t2t/data/converters.py) emit exactly these keys; models declare which converters
they consume (t2t/models/model.py FEATURE_CONVERTERS); the training loop, scoring, synthetic
batches and benchmarks derive their shapes from here. This module is the one place the
keys are spelled out, and it imports nothing from t2t.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple

import numpy as np

DTYPE = np.dtype(np.int32)


class KeySpec(NamedTuple):
    """One batch key's shape and dtype."""
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class ConverterSpec:
    """The keys one feature converter emits, each sized by a sequence length.

    `keys` and `packed_keys` map key -> the length that sizes it: "inputs", "targets" or
    "inputs+targets". `targets` / `loss_weights` name the keys the loss reads.
    """

    name: str
    keys: Mapping[str, str]
    packed_keys: Mapping[str, str]
    targets: str
    loss_weights: str
    needs_lengths: tuple[str, ...]

    def key_names(self, pack: bool = False) -> tuple[str, ...]:
        return tuple(self.keys) + (tuple(self.packed_keys) if pack else ())

    def all_keys(self) -> tuple[str, ...]:
        return self.key_names(pack=True)

    def row_length(self, key: str, lengths: Mapping[str, int]) -> int:
        """The length of `key`'s rows for sequence lengths {"inputs", "targets"}."""
        sized_by = {**self.keys, **self.packed_keys}[key]
        missing = [k for k in sized_by.split("+") if k not in lengths]
        if missing:
            raise ValueError(f"{self.name} batches need sequence lengths for {missing} "
                             f"(sizing {key}), got {dict(lengths)}")
        return sum(int(lengths[k]) for k in sized_by.split("+"))

    def shapes(self, lengths: Mapping[str, int], batch_size: int,
               pack: bool = False) -> dict[str, KeySpec]:
        """{key: KeySpec([batch_size, row length], int32)} for every key emitted."""
        return {k: KeySpec((int(batch_size), self.row_length(k, lengths)), DTYPE)
                for k in self.key_names(pack)}

    def zeros(self, lengths: Mapping[str, int], batch_size: int = 1,
              pack: bool = False) -> dict[str, np.ndarray]:
        """A batch of zeros with every key (for `Model.init` and `jax.eval_shape`)."""
        return {k: np.zeros(s.shape, s.dtype) for k, s in self.shapes(lengths, batch_size,
                                                                      pack).items()}

    def tokens_per_row(self, lengths: Mapping[str, int]) -> int:
        """Input positions a row feeds the model (encoder + decoder input tokens)."""
        return sum(self.row_length(k, lengths) for k in self.keys if k.endswith("input_tokens"))


_ENC_DEC_PACKED = {"encoder_segment_ids": "inputs", "encoder_positions": "inputs",
                   "decoder_segment_ids": "targets", "decoder_positions": "targets"}


def _decoder_only(name: str, sized_by: str, needs: tuple[str, ...]) -> ConverterSpec:
    keys = dict.fromkeys(("decoder_input_tokens", "decoder_target_tokens",
                          "decoder_loss_weights", "decoder_causal_attention"), sized_by)
    return ConverterSpec(name, keys, dict.fromkeys(("decoder_segment_ids", "decoder_positions"),
                                                   sized_by),
                         "decoder_target_tokens", "decoder_loss_weights", needs)


SPECS: dict[str, ConverterSpec] = {s.name: s for s in (
    ConverterSpec("enc_dec",
                  {"encoder_input_tokens": "inputs", "decoder_input_tokens": "targets",
                   "decoder_target_tokens": "targets", "decoder_loss_weights": "targets"},
                  _ENC_DEC_PACKED, "decoder_target_tokens", "decoder_loss_weights",
                  ("inputs", "targets")),
    _decoder_only("lm", "targets", ("targets",)),
    _decoder_only("prefix_lm", "inputs+targets", ("inputs", "targets")),
    ConverterSpec("enc_only",
                  {"encoder_input_tokens": "inputs", "encoder_target_tokens": "inputs",
                   "encoder_loss_weights": "inputs"},
                  {"encoder_segment_ids": "inputs", "encoder_positions": "inputs"},
                  "encoder_target_tokens", "encoder_loss_weights", ("inputs",)),
)}


def get(name: str) -> ConverterSpec:
    """The spec of feature converter `name`; an unknown name lists the known ones."""
    if name not in SPECS:
        raise ValueError(f"unknown feature converter {name!r}; known: {sorted(SPECS)}")
    return SPECS[name]
