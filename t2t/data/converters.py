"""Feature converters: task examples -> model batches (the keys of t2t/batch_spec.py).

Each converter's `spec` (a batch_spec.ConverterSpec) states the keys it emits with their
shapes and dtypes; models declare which converters they consume. Packing uses Grain's
first-fit packer (segment ids start at 1 per row, 0 is padding; positions restart at 0 in
every segment). Converters work on Grain IterDatasets and emit one example (a dict of 1-D
int32 arrays) per row; the pipeline batches them.
"""
from __future__ import annotations

from typing import Mapping

import grain
import numpy as np

from t2t import batch_spec
from t2t.data import registry

def autoregressive_inputs(targets: np.ndarray, segment_ids: np.ndarray | None = None) -> np.ndarray:
    """Targets shifted right by one with 0 as the start token, per segment when packed."""
    shifted = np.concatenate([[0], targets[:-1]]).astype(np.int32)
    if segment_ids is not None:
        starts = np.concatenate([[True], segment_ids[1:] != segment_ids[:-1]])
        shifted = np.where(starts, 0, shifted)
    return shifted


def _pad(x, length: int) -> np.ndarray:
    x = np.asarray(x, np.int32)[:length]
    return np.pad(x, (0, length - len(x)))


def _pack(ds, lengths: Mapping[str, int], num_bins: int, seed: int):
    return grain.experimental.FirstFitPackIterDataset(
        registry.to_iter(ds), length_struct=dict(lengths), num_packing_bins=num_bins,
        seed=seed, shuffle_bins=False)


class Converter:
    """Base: `spec` names the converter and the keys it emits; packing options per instance."""

    spec: batch_spec.ConverterSpec

    def __init__(self, pack: bool = False, num_bins: int = 8, seed: int = 0):
        self.pack, self.num_bins, self.seed = pack, num_bins, seed

    def check_lengths(self, lengths: Mapping[str, int]) -> None:
        missing = [k for k in self.spec.needs_lengths if k not in lengths]
        if missing:
            raise ValueError(f"{self.spec.name} converter needs sequence lengths for {missing}, "
                             f"got {dict(lengths)}")

    def batch_shapes(self, lengths: Mapping[str, int], batch_size: int):
        """{key: KeySpec} of the batches this converter (packed or not) yields."""
        return self.spec.shapes(lengths, batch_size, self.pack)


class EncDecConverter(Converter):
    """'inputs'/'targets' -> encoder-decoder batch keys."""

    spec = batch_spec.get("enc_dec")

    def __call__(self, ds, lengths: Mapping[str, int]) -> grain.IterDataset:
        self.check_lengths(lengths)
        n_in, n_tg = lengths["inputs"], lengths["targets"]
        ds = registry.to_iter(ds).map(lambda ex: {"inputs": np.asarray(ex["inputs"], np.int32)[:n_in],
                                                  "targets": np.asarray(ex["targets"], np.int32)[:n_tg]})
        if not self.pack:
            return ds.map(lambda ex: self._unpacked(ex, lengths))
        return _pack(ds, {"inputs": lengths["inputs"], "targets": lengths["targets"]},
                     self.num_bins, self.seed).map(self._packed)

    @staticmethod
    def _unpacked(ex, lengths):
        targets = _pad(ex["targets"], lengths["targets"])
        return {"encoder_input_tokens": _pad(ex["inputs"], lengths["inputs"]),
                "decoder_input_tokens": autoregressive_inputs(targets),
                "decoder_target_tokens": targets,
                "decoder_loss_weights": (targets != 0).astype(np.int32)}

    @staticmethod
    def _packed(ex):
        targets, seg = ex["targets"].astype(np.int32), ex["targets_segment_ids"].astype(np.int32)
        return {"encoder_input_tokens": ex["inputs"].astype(np.int32),
                "decoder_input_tokens": autoregressive_inputs(targets, seg),
                "decoder_target_tokens": targets,
                "decoder_loss_weights": (seg > 0).astype(np.int32),
                "encoder_segment_ids": ex["inputs_segment_ids"].astype(np.int32),
                "encoder_positions": ex["inputs_positions"].astype(np.int32),
                "decoder_segment_ids": seg,
                "decoder_positions": ex["targets_positions"].astype(np.int32)}


class _DecoderOnly(Converter):
    """Shared by LM and prefix LM: one 'targets' stream plus a causal-attention region."""

    def _streams(self, ex) -> dict:
        raise NotImplementedError

    def __call__(self, ds, lengths: Mapping[str, int]) -> grain.IterDataset:
        self.check_lengths(lengths)
        length = self.spec.row_length("decoder_target_tokens", lengths)

        def trim(ex):
            return {k: v[:length] for k, v in self._streams(ex).items()}
        ds = registry.to_iter(ds).map(trim)
        if not self.pack:
            return ds.map(lambda ex: self._finish({k: _pad(v, length) for k, v in ex.items()}, None, None))
        packed = _pack(ds, {"targets": length, "causal": length, "weights": length}, self.num_bins, self.seed)
        return packed.map(lambda ex: self._finish(ex, ex["targets_segment_ids"], ex["targets_positions"]))

    @staticmethod
    def _finish(ex, segment_ids, positions):
        targets = ex["targets"].astype(np.int32)
        out = {"decoder_input_tokens": autoregressive_inputs(targets, segment_ids),
               "decoder_target_tokens": targets,
               "decoder_loss_weights": (ex["weights"] * (targets != 0)).astype(np.int32)
               if segment_ids is None else (ex["weights"] * (segment_ids > 0)).astype(np.int32),
               "decoder_causal_attention": ex["causal"].astype(np.int32)}
        if segment_ids is not None:
            out["decoder_segment_ids"] = segment_ids.astype(np.int32)
            out["decoder_positions"] = positions.astype(np.int32)
        return out


class LMConverter(_DecoderOnly):
    """'targets' -> decoder-only causal LM keys (decoder_causal_attention all 0)."""

    spec = batch_spec.get("lm")

    def _streams(self, ex):
        targets = np.asarray(ex["targets"], np.int32)
        return {"targets": targets, "causal": np.zeros_like(targets), "weights": np.ones_like(targets)}


class PrefixLMConverter(_DecoderOnly):
    """'inputs' + 'targets' -> one decoder-only sequence; the prefix attends bidirectionally.

    As seqio/T5X: decoder_causal_attention is 1 on the inputs and on the first
    target position (whose decoder input is the last prefix token); the loss
    covers the targets only. Row length = inputs length + targets length.
    """

    spec = batch_spec.get("prefix_lm")

    def _streams(self, ex):
        inputs, targets = np.asarray(ex["inputs"], np.int32), np.asarray(ex["targets"], np.int32)
        n = len(inputs)
        seq = np.concatenate([inputs, targets])
        causal = (np.arange(len(seq)) <= n).astype(np.int32)
        weights = (np.arange(len(seq)) >= n).astype(np.int32)
        return {"targets": seq, "causal": causal, "weights": weights}


class EncoderOnlyConverter(Converter):
    """BERT-style MLM: 'inputs' (corrupted), 'targets' (original), 'loss_mask' -> encoder keys."""

    spec = batch_spec.get("enc_only")

    def __call__(self, ds, lengths: Mapping[str, int]) -> grain.IterDataset:
        self.check_lengths(lengths)
        n = lengths["inputs"]

        def streams(ex):
            inputs = np.asarray(ex["inputs"], np.int32)[:n]
            targets = np.asarray(ex["targets"], np.int32)[:n]
            mask = np.asarray(ex.get("loss_mask", np.ones_like(targets)), np.int32)[:len(targets)]
            mask = np.pad(mask, (0, len(targets) - len(mask)))
            return {"inputs": inputs, "targets": targets, "weights": mask}
        ds = registry.to_iter(ds).map(streams)
        if self.pack:
            ds = _pack(ds, {"inputs": n, "targets": n, "weights": n}, self.num_bins, self.seed)
        return ds.map(lambda ex: self._finish(ex, n))

    @staticmethod
    def _finish(ex, n):
        out = {"encoder_input_tokens": _pad(ex["inputs"], n),
               "encoder_target_tokens": _pad(ex["targets"], n),
               "encoder_loss_weights": _pad(ex["weights"], n)}
        if "inputs_segment_ids" in ex:
            out["encoder_segment_ids"] = ex["inputs_segment_ids"].astype(np.int32)
            out["encoder_positions"] = ex["inputs_positions"].astype(np.int32)
        return out


CONVERTERS = {"enc_dec": EncDecConverter, "lm": LMConverter, "prefix_lm": PrefixLMConverter,
              "enc_only": EncoderOnlyConverter}


def get_converter(name: str, pack: bool = False, **kwargs) -> Converter:
    if name not in CONVERTERS:
        raise ValueError(f"unknown feature converter {name!r}; known: {sorted(CONVERTERS)}")
    return CONVERTERS[name](pack=pack, **kwargs)


def unpack(batch_row: Mapping[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    """Splits one packed row's `<prefix>` tokens back into its segments (for tests/inspection)."""
    tokens = batch_row[f"{prefix}_tokens"] if f"{prefix}_tokens" in batch_row else batch_row[prefix]
    seg = batch_row[f"{prefix.split('_')[0]}_segment_ids"]
    return [tokens[seg == s] for s in np.unique(seg) if s > 0]
