"""Fixtures shared by the data-pipeline tests."""
import pytest


@pytest.fixture(scope="session")
def builtin_vocab(tmp_path_factory):
    """The built-in corpus's SentencePiece vocabulary, trained once per session into a tmp
    T2T_CACHE_DIR (about 2 s, plus about 4 s to read the corpus)."""
    from t2t.tasks import pretraining

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("T2T_CACHE_DIR", str(tmp_path_factory.mktemp("t2t_cache")))
        vocab = pretraining.BUILTIN_VOCAB
        assert vocab.path  # trains (or finds) the model now, inside the tmp cache
        yield vocab
