"""T5's pretraining objectives: exact properties on synthetic tokens, statistics on real C4."""
import types
import unicodedata

import numpy as np
import pytest

from t2t.data import objectives, registry, sources
from t2t.data.vocab import SentencePieceVocabulary
import t2t.tasks  # noqa: F401  (registers the built-in tasks)

VOCAB_SIZE = 32100
SENTINEL_0 = VOCAB_SIZE - 1


def _sentinelize(tokens, mask, vocab_size):
    """Reference: every run of masked tokens becomes the next sentinel, counting down."""
    out, next_sentinel, previous = [], vocab_size - 1, False
    for token, masked in zip(tokens, mask):
        if masked and not previous:
            out.append(next_sentinel)
            next_sentinel -= 1
        elif not masked:
            out.append(token)
        previous = masked
    return out


def _unspan(inputs, targets, vocab_size, extra_ids=100):
    """Rebuilds a span-corrupted chunk: each input sentinel takes the tokens after it in targets."""
    first_sentinel, fill, current = vocab_size - extra_ids, {}, None
    for t in targets:
        if t >= first_sentinel:
            current = fill.setdefault(int(t), [])
        else:
            current.append(int(t))
    out = []
    for t in inputs:
        out.extend(fill[int(t)] if t >= first_sentinel else [int(t)])
    return out


def _countdown(ids, vocab_size=VOCAB_SIZE, extra_ids=100):
    s = [int(t) for t in ids if t >= vocab_size - extra_ids]
    return s == list(range(vocab_size - 1, vocab_size - 1 - len(s), -1)), len(s)


# ------------------------------------------------------------------ exact properties
def test_random_spans_helper_matches_t5():
    assert objectives.random_spans_helper(512) == (568, 114)
    assert objectives.random_spans_helper(512, 0.15, 3.0) == (568, 114)
    for inputs_length in (32, 64, 128, 256, 512, 1024):
        raw, targets_length = objectives.random_spans_helper(inputs_length)
        out = objectives.span_corruption(np.arange(raw) + 3, np.random.default_rng(inputs_length),
                                         vocab_size=VOCAB_SIZE)
        assert len(out["inputs"]) + 1 == inputs_length  # + EOS fills the inputs exactly
        assert len(out["targets"]) + 1 == targets_length


@pytest.mark.parametrize("length,density,mean_span",
                         [(568, 0.15, 3.0), (100, 0.5, 2.0), (37, 0.3, 5.0), (2, 0.15, 3.0)])
def test_random_spans_noise_mask_counts(length, density, mean_span):
    num_noise = min(max(round(length * density), 1), length - 1)
    num_spans = max(round(num_noise / mean_span), 1)
    for seed in range(20):
        mask = objectives.random_spans_noise_mask(length, np.random.default_rng(seed), density, mean_span)
        assert mask.shape == (length,) and mask.sum() == num_noise
        assert not mask[0]  # T5's masks start with a non-noise span
        starts = mask & ~np.concatenate([[False], mask[:-1]])
        assert starts.sum() == num_spans


def test_span_corruption_round_trips_and_numbers_sentinels_in_order():
    tokens = np.random.default_rng(0).integers(3, 32000, 568)
    out = objectives.span_corruption(tokens, np.random.default_rng(1), vocab_size=VOCAB_SIZE)
    assert _unspan(out["inputs"], out["targets"], VOCAB_SIZE) == tokens.tolist()
    assert _countdown(out["inputs"]) == (True, 28) and _countdown(out["targets"]) == (True, 28)
    assert out["targets"][0] == SENTINEL_0 and out["inputs"].dtype == np.int32
    mask = objectives.random_spans_noise_mask(568, np.random.default_rng(1))
    assert out["inputs"].tolist() == _sentinelize(tokens, mask, VOCAB_SIZE)
    assert out["targets"].tolist() == _sentinelize(tokens, ~mask, VOCAB_SIZE)


def test_iid_denoise_sentinels_match_the_reference():
    tokens = np.random.default_rng(2).integers(3, 32000, 511)
    for seed in range(5):
        out = objectives.iid_denoise(tokens, np.random.default_rng(seed), vocab_size=VOCAB_SIZE)
        mask = objectives.iid_noise_mask(511, np.random.default_rng(seed), 0.15)
        assert out["inputs"].tolist() == _sentinelize(tokens, mask, VOCAB_SIZE)
        assert out["targets"].tolist() == _sentinelize(tokens, ~mask, VOCAB_SIZE)
        assert _countdown(out["inputs"])[0] and _countdown(out["targets"])[0]


def test_drop_tokens_partitions_the_chunk():
    tokens = np.random.default_rng(3).integers(3, 32000, 511)
    out = objectives.drop_tokens(tokens, np.random.default_rng(4), vocab_size=VOCAB_SIZE)
    mask = objectives.iid_noise_mask(511, np.random.default_rng(4), 0.15)
    assert out["inputs"].tolist() == tokens[~mask].tolist()
    assert out["targets"].tolist() == tokens[mask].tolist()
    assert len(out["inputs"]) + len(out["targets"]) == 511


def test_deshuffle_is_a_permutation_with_original_targets():
    tokens = np.arange(3, 514)
    out = objectives.deshuffle(tokens, np.random.default_rng(5), vocab_size=VOCAB_SIZE)
    assert sorted(out["inputs"].tolist()) == tokens.tolist()
    assert out["targets"].tolist() == tokens.tolist()
    assert (out["inputs"] != tokens).mean() > 0.9


def test_prefix_lm_and_causal_lm_split_and_keep_the_chunk():
    tokens = np.arange(3, 13)
    seen = set()
    for seed in range(200):
        out = objectives.prefix_lm(tokens, np.random.default_rng(seed), vocab_size=VOCAB_SIZE)
        assert np.concatenate([out["inputs"], out["targets"]]).tolist() == tokens.tolist()
        seen.add(len(out["inputs"]))
    assert seen == set(range(1, 10))  # the split point is uniform over [1, length - 1]
    causal = objectives.causal_lm(tokens, None, vocab_size=VOCAB_SIZE)
    assert list(causal) == ["targets"] and causal["targets"].tolist() == tokens.tolist()


def test_mass_and_bert_t5_corrupt_at_the_density():
    tokens = np.random.default_rng(6).integers(3, 32000, 200_000)
    mass = objectives.mass(tokens, np.random.default_rng(7), vocab_size=VOCAB_SIZE)
    changed = mass["inputs"] != tokens
    assert set(mass["inputs"][changed].tolist()) == {SENTINEL_0}
    assert changed.mean() == pytest.approx(0.15, abs=0.005)
    bert = objectives.bert_t5(tokens, np.random.default_rng(8), vocab_size=VOCAB_SIZE)
    changed = bert["inputs"] != tokens
    assert changed.mean() == pytest.approx(0.15, abs=0.005)
    assert (bert["inputs"][changed] == SENTINEL_0).mean() == pytest.approx(0.9, abs=0.01)
    assert bert["inputs"].min() >= 3 and bert["inputs"].max() < VOCAB_SIZE
    assert bert["targets"].tolist() == tokens.tolist()


# ------------------------------------------------------------------ lengths and errors
def test_objective_lengths():
    span = objectives.get_objective("span_corruption")
    assert span.default_sequence_length() == {"inputs": 512, "targets": 114}
    assert span.raw_length({"inputs": 512, "targets": 114}) == 568
    assert objectives.get_objective("causal_lm").raw_length({"targets": 512}) == 511
    assert objectives.get_objective("prefix_lm").raw_length({"inputs": 512, "targets": 512}) == 511
    wide = objectives.get_objective("span_corruption", noise_density=0.5, mean_noise_span_length=3.0)
    assert wide.raw_length({"inputs": 512}) == objectives.random_spans_helper(512, 0.5, 3.0)[0]
    assert set(objectives.OBJECTIVES) == {"span_corruption", "iid_denoise", "drop_tokens", "bert_t5",
                                          "bert_mlm", "mass", "deshuffle", "prefix_lm", "causal_lm"}
    with pytest.raises(ValueError, match=r"unknown objective 'span'; known: bert_mlm, bert_t5"):
        objectives.get_objective("span")


def _task(objective, tmp_path):
    vocab = SentencePieceVocabulary(tmp_path / "never_loaded.model")
    features = {"targets": registry.Feature(vocab)}
    if objective != "causal_lm":
        features["inputs"] = registry.Feature(vocab)
    return registry.Task(f"tiny_{objective}", sources.InMemorySource({"train": [{"text": "a b c"}]}),
                         [registry.rekey({"targets": "text"}), registry.tokenize,
                          *objectives.preprocessors(objective)], features)


@pytest.mark.parametrize("objective,lengths,message", [
    ("span_corruption", {"inputs": 4, "targets": 2}, r"sequence lengths \{'inputs': 4, 'targets': 2\} are too "
                                                     r"short for objective 'span_corruption' \(raw chunk 4 tokens"),
    ("span_corruption", {"inputs": 512, "targets": 100},
     "span corruption with inputs 512 needs targets >= 114, got 100"),
    ("causal_lm", {"targets": 1}, "too short for objective 'causal_lm'"),
    ("prefix_lm", {"targets": 64}, "objective 'prefix_lm' needs a sequence length for 'inputs'"),
    ("deshuffle", {"inputs": 3, "targets": 3},
     "too short for objective 'deshuffle' \\(raw chunk 2 tokens; need >= 4\\)"),
])
def test_too_short_sequence_lengths_are_clear_errors(tmp_path, objective, lengths, message):
    with pytest.raises(ValueError, match=message):
        _task(objective, tmp_path).get_dataset("train", sequence_length=lengths)


# ------------------------------------------------------------------ statistics on real C4
@pytest.fixture(scope="module")
def c4(data_dir, t5_vocab_path):
    """The C4 sample's train split: documents, their tokens, and each objective's examples."""
    vocab = SentencePieceVocabulary(t5_vocab_path)
    docs = [d["text"] for d in sources.JsonlSource({"train": "c4/en/c4-train.*.json.gz"}).get("train", data_dir)]
    parts = vocab.encode_batch(docs)
    cache = {}

    def examples(objective):
        if objective not in cache:
            task = registry.get_task(f"c4_{objective}").with_vocabulary(vocab)
            cache[objective] = list(task.get_dataset("train", data_dir=data_dir))
        return cache[objective]
    return types.SimpleNamespace(vocab=vocab, docs=docs, parts=parts,
                                 stream=[t for p in parts for t in p], examples=examples)


def test_c4_span_corruption_matches_t5(c4):
    examples = c4.examples("span_corruption")
    assert len(examples) == 810
    noise = raw = spans = full = 0
    for ex in examples:
        inputs, targets = ex["inputs"].tolist(), ex["targets"].tolist()
        assert inputs[-1] == 1 and targets[-1] == 1
        in_order, n_spans = _countdown(inputs)
        assert in_order and _countdown(targets) == (True, n_spans)
        n_noise = len(targets) - 1 - n_spans
        noise, spans, raw = noise + n_noise, spans + n_spans, raw + n_noise + len(inputs) - 1 - n_spans
        if len(inputs) == 512:
            full += 1
            assert (n_spans, n_noise, len(targets)) == (28, 85, 114)
    assert full == 809  # all but the split's last, shorter chunk
    assert noise / raw == pytest.approx(0.15, abs=0.01)
    assert noise / spans == pytest.approx(3.0, abs=0.15)
    rebuilt = [t for ex in examples for t in _unspan(ex["inputs"][:-1], ex["targets"][:-1], c4.vocab.vocab_size)]
    assert rebuilt == c4.stream


def _normalized(text):
    """The text as T5's SentencePiece model normalizes it (NFKC, no zero-width spaces,
    U+FFFD as a space, whitespace runs as one space)."""
    text = unicodedata.normalize("NFKC", text).replace("\ufffd", " ").replace("\u200b", "")
    return " ".join(text.split())


def _assert_reassembles(c4, stream):
    """`stream` is C4's token stream, and each document's span decodes to its own text."""
    assert stream == c4.stream
    offsets = np.cumsum([0] + [len(p) for p in c4.parts])
    same = [c4.vocab.decode(stream[start:stop]) == _normalized(doc)
            for doc, start, stop in zip(c4.docs, offsets[:-1], offsets[1:])
            if 2 not in stream[start:stop]]  # a text with <unk> pieces cannot come back
    assert len(same) >= 800 and sum(same) >= 0.99 * len(same)


def test_c4_prefix_lm_reassembles_to_the_original_text(c4):
    examples = c4.examples("prefix_lm")
    stream = [t for ex in examples for t in ex["inputs"][:-1].tolist() + ex["targets"][:-1].tolist()]
    _assert_reassembles(c4, stream)
    fractions = [len(ex["inputs"]) / (len(ex["inputs"]) + len(ex["targets"])) for ex in examples[:-1]]
    assert np.mean(fractions) == pytest.approx(0.5, abs=0.05)


def test_c4_causal_lm_reassembles_to_the_original_text(c4):
    examples = c4.examples("causal_lm")
    assert {len(ex["targets"]) for ex in examples[:-1]} == {512}
    _assert_reassembles(c4, [t for ex in examples for t in ex["targets"][:-1].tolist()])


def test_c4_bert_mlm_80_10_10(c4):
    masked = kept = randomized = corrupted = total = 0
    for ex in c4.examples("bert_mlm"):
        loss = ex["loss_mask"].astype(bool)
        inputs, targets = ex["inputs"][:-1][loss], ex["targets"][:-1][loss]
        masked += (inputs == c4.vocab.vocab_size - 1).sum()
        kept += (inputs == targets).sum()
        randomized += ((inputs != targets) & (inputs != c4.vocab.vocab_size - 1)).sum()
        corrupted, total = corrupted + loss.sum(), total + len(loss)
    assert corrupted / total == pytest.approx(0.15, abs=0.01)
    assert masked / corrupted == pytest.approx(0.8, abs=0.02)
    assert randomized / corrupted == pytest.approx(0.1, abs=0.02)
    assert kept / corrupted == pytest.approx(0.1, abs=0.02)


def test_c4_bert_t5_90_10(c4):
    changed = sentinel = total = 0
    for ex in c4.examples("bert_t5"):
        assert ex["targets"][-1] == 1 and len(ex["inputs"]) == len(ex["targets"])
        diff = ex["inputs"] != ex["targets"]
        changed, total = changed + diff.sum(), total + len(diff) - 1
        sentinel += (ex["inputs"][diff] == c4.vocab.vocab_size - 1).sum()
    assert changed / total == pytest.approx(0.15, abs=0.01)
    assert sentinel / changed == pytest.approx(0.9, abs=0.02)


def test_more_spans_than_sentinels_is_an_error():
    from t2t.data import objectives, registry
    from t2t.data.vocab import SentencePieceVocabulary

    class Vocab(SentencePieceVocabulary):
        extra_ids = 100
        vocab_size = 32100

    objective = objectives.get_objective("span_corruption", noise_density=0.5,
                                         mean_noise_span_length=2.0)
    ctx = registry.Context(split="train", output_features={"targets": registry.Feature(Vocab("x"))},
                           sequence_length={"inputs": 512, "targets": 512})
    with pytest.raises(ValueError, match="makes 170 spans but the vocabulary has only 100 sentinels"):
        objectives.check_lengths(objective)(None, ctx)
