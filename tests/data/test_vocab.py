"""SentencePiece vocabulary: T5's ids, sentinels, batch encode/decode, deterministic training."""
import pytest
import sentencepiece as spm
from pydoc_data import topics

from t2t.data import vocab as vocab_lib


@pytest.fixture(scope="module")
def t5(t5_vocab_path):
    return vocab_lib.SentencePieceVocabulary(t5_vocab_path)


def test_t5_model_sizes_and_special_ids(t5):
    assert t5.base_vocab_size == 32000
    assert t5.extra_ids == 100
    assert t5.vocab_size == 32100
    assert (t5.pad_id, t5.eos_id, t5.unk_id) == (0, 1, 2)
    assert [t5.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]


def test_t5_sentinels_count_down_from_the_last_id(t5):
    assert t5.sentinel_id(0) == 32099
    assert t5.sentinel_id(99) == 32000
    for k in (0, 1, 17, 99):
        assert t5.decode([t5.sentinel_id(k)]) == f"<extra_id_{k}>"
        assert t5.encode(f"<extra_id_{k}>") == [32099 - k]
    # seqio adds the pieces as "▁<extra_id_N>", so a sentinel decodes with a space before it.
    assert t5.decode([8774, 32099, 296, 32098]) == "Hello <extra_id_0> world <extra_id_1>"
    with pytest.raises(ValueError, match=r"sentinel index 100 outside \[0, 100\)"):
        t5.sentinel_id(100)


def test_t5_encode_matches_the_raw_model(t5, t5_vocab_path):
    raw = spm.SentencePieceProcessor(model_file=str(t5_vocab_path))
    texts = ["Hello world", "The cat sat on the mat.", "Ünïcödé — 3.14 déjà vu"]
    assert t5.encode("Hello world") == [8774, 296]
    assert t5.encode_batch(texts) == [raw.encode(t) for t in texts]
    assert t5.decode_batch(t5.encode_batch(texts)) == [raw.decode(raw.encode(t)) for t in texts]


def test_decode_stops_at_eos_and_maps_out_of_range_ids_to_unk(t5):
    assert t5.decode([8774, 296, 1, 8774, 8774]) == "Hello world"
    assert t5.decode([0, 8774, 296, 0, 0]) == "Hello world"
    assert t5.decode([8774, 40000]) == "Hello ⁇ "


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="SentencePiece model not found: .*nope.model"):
        vocab_lib.SentencePieceVocabulary(tmp_path / "nope.model").vocab_size  # noqa: B018  (the lazy read raises)
    with pytest.raises(FileNotFoundError, match="GCS paths cannot be read offline"):
        vocab_lib.SentencePieceVocabulary("gs://bucket/x.model").vocab_size  # noqa: B018  (the lazy read raises)


TEXTS = [topics.topics[k] for k in sorted(topics.topics)[:60]]


def test_train_is_deterministic_with_t5_special_ids(tmp_path):
    a = vocab_lib.train(TEXTS, tmp_path / "a.model", vocab_size=600)
    b = vocab_lib.train(TEXTS, tmp_path / "b.model", vocab_size=600)
    assert a.read_bytes() == b.read_bytes()
    trained = vocab_lib.SentencePieceVocabulary(a, extra_ids=10)
    assert trained.base_vocab_size == 600
    assert trained.vocab_size == 610
    assert [trained.id_to_piece(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
    assert trained.decode([trained.sentinel_id(0), trained.sentinel_id(9)]) == "<extra_id_0> <extra_id_9>"
    text = "The for statement is used to iterate over the elements of a sequence."
    assert trained.decode(trained.encode(text)) == text


def test_trained_vocabulary_caches_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("T2T_CACHE_DIR", str(tmp_path))
    calls = []

    def texts():
        calls.append(1)
        return TEXTS

    first = vocab_lib.TrainedVocabulary("demo", texts, vocab_size=500)
    second = vocab_lib.TrainedVocabulary("demo", texts, vocab_size=500)
    assert first.path == second.path
    assert first.path.startswith(str(tmp_path / "vocab" / "demo.500."))
    assert len(list((tmp_path / "vocab").iterdir())) == 1
    other = vocab_lib.TrainedVocabulary("demo", lambda: TEXTS[:30], vocab_size=500)
    assert other.path != first.path
    assert first.vocab_size == 600
    assert first == second and hash(first) == hash(second)
    with pytest.raises(ValueError, match="vocabulary 'empty': no text to train on"):
        vocab_lib.TrainedVocabulary("empty", lambda: []).path  # noqa: B018  (the lazy read raises)
