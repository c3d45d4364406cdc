"""Feature converters: the batch keys (t2t/batch_spec.py, README "Batches"), seqio's expected arrays,
packing that unpacks."""
import collections

import grain
import numpy as np
import pytest

from t2t.data import converters
import t2t.tasks  # noqa: F401  (registers the built-in tasks)

PACKED = ("segment_ids", "positions")


def _convert(name, examples, lengths, pack):
    ds = grain.MapDataset.source([{k: np.asarray(v, np.int32) for k, v in ex.items()} for ex in examples])
    return [{k: v.tolist() for k, v in row.items()}
            for row in converters.get_converter(name, pack=pack)(ds, lengths)]


def _random_examples(seed, n, max_inputs, max_targets):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        inputs = rng.integers(3, 1000, rng.integers(1, max_inputs + 1)).tolist() + [1]
        targets = rng.integers(3, 1000, rng.integers(1, max_targets + 1)).tolist() + [1]
        out.append({"inputs": inputs, "targets": targets})
    return out


def _segments(row, tokens_key, prefix):
    """{segment id: (tokens, positions)} of one packed row; asserts each id is one contiguous run."""
    seg, pos = np.asarray(row[f"{prefix}_segment_ids"]), np.asarray(row[f"{prefix}_positions"])
    tokens = np.asarray(row[tokens_key])
    out = {}
    for s in np.unique(seg[seg > 0]):
        where = np.flatnonzero(seg == s)
        assert np.array_equal(where, np.arange(where[0], where[-1] + 1)), f"segment {s} is split: {seg}"
        assert pos[where].tolist() == list(range(len(where))), f"positions restart per segment: {pos}"
        out[int(s)] = tokens[where].tolist()
    assert np.all(tokens[seg == 0] == 0) and np.all(pos[seg == 0] == 0)
    assert sorted(out) == list(range(1, len(out) + 1))
    return out


def _split(row, prefix, *keys):
    return tuple(_segments(row, key, prefix) for key in keys)


# ------------------------------------------------------------------ seqio's own expected arrays
def test_enc_dec_packed_matches_seqio():
    x = [{"inputs": [7, 8, 5, 1], "targets": [3, 9, 1]}, {"inputs": [8, 4, 9, 3, 1], "targets": [4, 1]}]
    (row,) = _convert("enc_dec", x, {"inputs": 10, "targets": 7}, pack=True)
    assert row == {
        "encoder_input_tokens": [7, 8, 5, 1, 8, 4, 9, 3, 1, 0],
        "encoder_segment_ids": [1, 1, 1, 1, 2, 2, 2, 2, 2, 0],
        "encoder_positions": [0, 1, 2, 3, 0, 1, 2, 3, 4, 0],
        "decoder_target_tokens": [3, 9, 1, 4, 1, 0, 0],
        "decoder_input_tokens": [0, 3, 9, 0, 4, 0, 0],
        "decoder_loss_weights": [1, 1, 1, 1, 1, 0, 0],
        "decoder_segment_ids": [1, 1, 1, 2, 2, 0, 0],
        "decoder_positions": [0, 1, 2, 0, 1, 0, 0]}


def test_enc_dec_unpacked_matches_seqio():
    x = [{"inputs": [9, 4, 3, 8, 1], "targets": [3, 9, 4, 1]}]
    (row,) = _convert("enc_dec", x, {"inputs": 7, "targets": 5}, pack=False)
    assert row == {"encoder_input_tokens": [9, 4, 3, 8, 1, 0, 0],
                   "decoder_target_tokens": [3, 9, 4, 1, 0],
                   "decoder_input_tokens": [0, 3, 9, 4, 1],
                   "decoder_loss_weights": [1, 1, 1, 1, 0]}


def test_prefix_lm_matches_seqio():
    # seqio PrefixLMFeatureConverter: causal attention on the inputs plus the first target
    # position, loss on the targets only (test_prefix_lm_pack_long_sequences, test_convert_example).
    x = [{"inputs": [7, 8, 5, 1], "targets": [3, 9, 1]}, {"inputs": [8, 4, 1], "targets": [5, 1]}]
    packed = _convert("prefix_lm", x, {"inputs": 4, "targets": 3}, pack=True)
    assert packed == [{
        "decoder_target_tokens": [7, 8, 5, 1, 3, 9, 1], "decoder_input_tokens": [0, 7, 8, 5, 1, 3, 9],
        "decoder_loss_weights": [0, 0, 0, 0, 1, 1, 1], "decoder_positions": [0, 1, 2, 3, 4, 5, 6],
        "decoder_segment_ids": [1, 1, 1, 1, 1, 1, 1], "decoder_causal_attention": [1, 1, 1, 1, 1, 0, 0],
    }, {
        "decoder_target_tokens": [8, 4, 1, 5, 1, 0, 0], "decoder_input_tokens": [0, 8, 4, 1, 5, 0, 0],
        "decoder_loss_weights": [0, 0, 0, 1, 1, 0, 0], "decoder_positions": [0, 1, 2, 3, 4, 0, 0],
        "decoder_segment_ids": [1, 1, 1, 1, 1, 0, 0], "decoder_causal_attention": [1, 1, 1, 1, 0, 0, 0]}]
    unpacked = _convert("prefix_lm", x[:1], {"inputs": 5, "targets": 3}, pack=False)
    assert unpacked == [{"decoder_target_tokens": [7, 8, 5, 1, 3, 9, 1, 0],
                         "decoder_input_tokens": [0, 7, 8, 5, 1, 3, 9, 1],
                         "decoder_loss_weights": [0, 0, 0, 0, 1, 1, 1, 0],
                         "decoder_causal_attention": [1, 1, 1, 1, 1, 0, 0, 0]}]
    (two,) = _convert("prefix_lm", x, {"inputs": 8, "targets": 5}, pack=True)
    assert two["decoder_causal_attention"] == [1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0]
    assert two["decoder_loss_weights"] == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0]
    assert two["decoder_input_tokens"] == [0, 7, 8, 5, 1, 3, 9, 0, 8, 4, 1, 5, 0]


def test_lm_packed_matches_seqio():
    x = [{"targets": [3, 9, 4, 5, 1]}, {"targets": [4, 3, 2, 1]}]
    rows = _convert("lm", x, {"targets": 5}, pack=True)
    assert rows == [
        {"decoder_target_tokens": [3, 9, 4, 5, 1], "decoder_input_tokens": [0, 3, 9, 4, 5],
         "decoder_loss_weights": [1, 1, 1, 1, 1], "decoder_positions": [0, 1, 2, 3, 4],
         "decoder_segment_ids": [1, 1, 1, 1, 1], "decoder_causal_attention": [0, 0, 0, 0, 0]},
        {"decoder_target_tokens": [4, 3, 2, 1, 0], "decoder_input_tokens": [0, 4, 3, 2, 0],
         "decoder_loss_weights": [1, 1, 1, 1, 0], "decoder_positions": [0, 1, 2, 3, 0],
         "decoder_segment_ids": [1, 1, 1, 1, 0], "decoder_causal_attention": [0, 0, 0, 0, 0]}]


def test_encoder_only_packed():
    x = [{"inputs": [8, 9, 9, 3, 4, 1], "targets": [8, 7, 4, 3, 4, 1], "loss_mask": [0, 1, 1, 0, 0]},
         {"inputs": [8, 3, 9, 1], "targets": [8, 3, 6, 1], "loss_mask": [0, 0, 1]}]
    (row,) = _convert("enc_only", x, {"inputs": 11, "targets": 11}, pack=True)
    assert row == {"encoder_input_tokens": [8, 9, 9, 3, 4, 1, 8, 3, 9, 1, 0],
                   "encoder_target_tokens": [8, 7, 4, 3, 4, 1, 8, 3, 6, 1, 0],
                   "encoder_segment_ids": [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 0],
                   "encoder_positions": [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 0],
                   "encoder_loss_weights": [0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0]}


# ------------------------------------------------------------------ the batch-key contract
ENC_DEC_KEYS = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
                "decoder_loss_weights")
DECODER_ONLY_KEYS = ("decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights",
                     "decoder_causal_attention")
ENC_ONLY_KEYS = ("encoder_input_tokens", "encoder_target_tokens", "encoder_loss_weights")


@pytest.mark.parametrize("name,keys,prefixes", [
    ("enc_dec", ENC_DEC_KEYS, ("encoder", "decoder")),
    ("lm", DECODER_ONLY_KEYS, ("decoder",)),
    ("prefix_lm", DECODER_ONLY_KEYS, ("decoder",)),
    ("enc_only", ENC_ONLY_KEYS, ("encoder",))])
@pytest.mark.parametrize("pack", [False, True])
def test_batch_keys_and_dtypes(name, keys, prefixes, pack):
    """The batch contract (README "Batches"), written out here by hand, is what the converters emit
    and what their spec (t2t/batch_spec.py) states, shapes and dtypes included."""
    lengths = {"inputs": 16, "targets": 16}
    ds = grain.MapDataset.source([{"inputs": np.array([5, 6, 1]), "targets": np.array([5, 7, 1])}])
    converter = converters.get_converter(name, pack=pack)
    (row,) = list(converter(ds, lengths))
    expected = set(keys) | ({f"{p}_{k}" for p in prefixes for k in PACKED} if pack else set())
    assert set(row) == expected
    assert all(v.dtype == np.int32 and v.ndim == 1 for v in row.values())
    spec = converter.batch_shapes(lengths, 3)
    assert {k: ((3,) + row[k].shape, row[k].dtype) for k in row} == {
        k: (s.shape, s.dtype) for k, s in spec.items()}


def test_unknown_converter_and_missing_lengths():
    with pytest.raises(ValueError, match=r"unknown feature converter 'encdec'; known: \['enc_dec', 'enc_only'"):
        converters.get_converter("encdec")
    ds = grain.MapDataset.source([{"inputs": np.array([5, 1]), "targets": np.array([5, 1])}])
    with pytest.raises(ValueError, match=r"enc_dec converter needs sequence lengths for "
                                         r"\['targets'\], got {'inputs': 8}"):
        converters.get_converter("enc_dec")(ds, {"inputs": 8})


def test_packed_enc_dec_trims_over_long_examples_like_unpacked():
    x = [{"inputs": list(range(3, 20)), "targets": [4, 5, 6, 7, 1]}]
    packed = _convert("enc_dec", x, {"inputs": 8, "targets": 3}, pack=True)
    unpacked = _convert("enc_dec", x, {"inputs": 8, "targets": 3}, pack=False)
    assert packed[0]["encoder_input_tokens"] == unpacked[0]["encoder_input_tokens"] == list(range(3, 11))
    assert packed[0]["decoder_target_tokens"] == unpacked[0]["decoder_target_tokens"] == [4, 5, 6]


# ------------------------------------------------------------------ packing gives back every example
def test_packing_enc_dec_unpacks_to_every_example():
    examples = _random_examples(0, 300, 20, 8)
    rows = _convert("enc_dec", examples, {"inputs": 64, "targets": 24}, pack=True)
    assert len(rows) < 300 / 2.5  # several examples per row
    got = []
    for row in rows:
        (enc,) = _split(row, "encoder", "encoder_input_tokens")
        dec, dec_in, weights = _split(row, "decoder", "decoder_target_tokens", "decoder_input_tokens",
                                      "decoder_loss_weights")
        assert sorted(enc) == sorted(dec)  # segment s is one example on both sides
        for s in enc:
            assert dec_in[s] == [0] + dec[s][:-1]  # shifted targets, restarted per segment
            assert weights[s] == [1] * len(dec[s])
            got.append((tuple(enc[s]), tuple(dec[s])))
        arrays = {k: np.asarray(v) for k, v in row.items()}
        assert [t.tolist() for t in converters.unpack(arrays, "encoder_input")] == [enc[s] for s in sorted(enc)]
        assert [t.tolist() for t in converters.unpack(arrays, "decoder_target")] == [dec[s] for s in sorted(dec)]
    want = [(tuple(ex["inputs"]), tuple(ex["targets"])) for ex in examples]
    assert collections.Counter(got) == collections.Counter(want)


@pytest.mark.parametrize("name", ["lm", "prefix_lm"])
def test_packing_decoder_only_unpacks_to_every_example(name):
    examples = _random_examples(1, 200, 10, 10)
    if name == "lm":
        examples = [{"targets": ex["targets"]} for ex in examples]
    rows = _convert(name, examples, {"inputs": 24, "targets": 24}, pack=True)
    got = []
    for row in rows:
        seq, dec_in, causal, weights = _split(row, "decoder", "decoder_target_tokens", "decoder_input_tokens",
                                              "decoder_causal_attention", "decoder_loss_weights")
        for s, tokens in seq.items():
            assert dec_in[s] == [0] + tokens[:-1]
            n = len(tokens) if name == "lm" else tokens.index(1) + 1  # the prefix ends with its EOS
            if name == "lm":
                assert causal[s] == [0] * n and weights[s] == [1] * n
                got.append((tuple(tokens),))
            else:
                assert causal[s] == [1] * (n + 1) + [0] * (len(tokens) - n - 1)
                assert weights[s] == [0] * n + [1] * (len(tokens) - n)
                got.append((tuple(tokens[:n]), tuple(tokens[n:])))
    want = [tuple(tuple(v) for v in ex.values()) for ex in examples]
    assert collections.Counter(got) == collections.Counter(want)


def test_packing_encoder_only_unpacks_to_every_example():
    rng = np.random.default_rng(2)
    examples = []
    for _ in range(150):
        n = int(rng.integers(2, 12))
        targets = rng.integers(3, 1000, n).tolist()
        mask = (rng.random(n) < 0.3).astype(int).tolist()
        inputs = [9 if m else t for t, m in zip(targets, mask)]
        examples.append({"inputs": inputs + [1], "targets": targets + [1], "loss_mask": mask})
    got = []
    for row in _convert("enc_only", examples, {"inputs": 40}, pack=True):
        inputs, targets, weights = _split(row, "encoder", "encoder_input_tokens", "encoder_target_tokens",
                                          "encoder_loss_weights")
        got += [(tuple(inputs[s]), tuple(targets[s]), tuple(weights[s][:-1])) for s in inputs]
        assert all(w[-1] == 0 for w in weights.values())  # no loss on EOS
    want = [(tuple(ex["inputs"]), tuple(ex["targets"]), tuple(ex["loss_mask"])) for ex in examples]
    assert collections.Counter(got) == collections.Counter(want)


@pytest.mark.parametrize("name", ["enc_dec", "lm", "prefix_lm", "enc_only"])
def test_unpacked_rows_are_one_padded_example_each(name):
    examples = _random_examples(3, 20, 6, 6)
    rows = _convert(name, examples, {"inputs": 8, "targets": 8}, pack=False)
    assert len(rows) == 20
    for ex, row in zip(examples, rows):
        if name == "enc_dec":
            assert row["encoder_input_tokens"] == ex["inputs"] + [0] * (8 - len(ex["inputs"]))
            assert row["decoder_target_tokens"] == ex["targets"] + [0] * (8 - len(ex["targets"]))
        elif name == "lm":
            assert row["decoder_target_tokens"] == ex["targets"] + [0] * (8 - len(ex["targets"]))
        elif name == "prefix_lm":
            seq = ex["inputs"] + ex["targets"]
            assert row["decoder_target_tokens"] == seq + [0] * (16 - len(seq))
        else:
            assert row["encoder_target_tokens"] == ex["targets"] + [0] * (8 - len(ex["targets"]))
