"""SentencePiece vocabulary with T5's conventions.

PAD=0, EOS=1, UNK=2. `extra_ids` sentinel pieces are appended to the model in
reverse order, exactly as seqio does it, so `<extra_id_0>` is `vocab_size - 1`
and `<extra_id_k>` is `vocab_size - 1 - k`. The sentinels are real pieces:
`encode("<extra_id_0>")` gives the sentinel id and decoding a sentinel id gives
the string `<extra_id_N>`.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import pathlib
import tempfile
from typing import Iterable, Sequence

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2
DEFAULT_EXTRA_IDS = 100
# T5's public vocabulary; unreachable offline, so pass --vocab or a local path.
T5_DEFAULT_SPM_PATH = "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"


@functools.lru_cache(maxsize=16)
def _load_processor(path: str, extra_ids: int) -> tuple[spm.SentencePieceProcessor, int]:
    """Loads an SPM file, appends the extra-id pieces; returns (processor, base size)."""
    try:
        raw = pathlib.Path(path).read_bytes()
    except FileNotFoundError:
        hint = " (GCS paths cannot be read offline; pass a local --vocab)" if path.startswith("gs://") else ""
        raise FileNotFoundError(f"SentencePiece model not found: {path}{hint}") from None
    model = sentencepiece_model_pb2.ModelProto.FromString(raw)
    base_size = len(model.pieces)
    for i in reversed(range(extra_ids)):
        model.pieces.add(
            piece=f"▁<extra_id_{i}>", score=0.0,
            type=sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED)
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(model.SerializeToString())
    ids = (sp.pad_id(), sp.eos_id(), sp.unk_id())
    if ids != (PAD_ID, EOS_ID, UNK_ID):
        raise ValueError(f"{path}: expected pad/eos/unk ids (0, 1, 2) as in T5, got {ids}")
    return sp, base_size


class SentencePieceVocabulary:
    """A T5-style SentencePiece vocabulary (seqio-compatible ids and strings)."""

    pad_id = PAD_ID
    eos_id = EOS_ID
    unk_id = UNK_ID

    def __init__(self, path: str | os.PathLike, extra_ids: int = DEFAULT_EXTRA_IDS):
        self.path = str(path)
        self.extra_ids = int(extra_ids)

    @property
    def _sp(self) -> spm.SentencePieceProcessor:
        return _load_processor(self.path, self.extra_ids)[0]

    @property
    def base_vocab_size(self) -> int:
        """Pieces in the model file (PAD/EOS/UNK included, extra ids excluded)."""
        return _load_processor(self.path, self.extra_ids)[1]

    @property
    def vocab_size(self) -> int:
        """All ids, extra ids included (32100 for T5's cc_all.32000 + 100)."""
        return self.base_vocab_size + self.extra_ids

    def sentinel_id(self, k: int) -> int:
        """Id of `<extra_id_k>`: the last id counts down from vocab_size - 1."""
        if not 0 <= k < self.extra_ids:
            raise ValueError(f"sentinel index {k} outside [0, {self.extra_ids})")
        return self.vocab_size - 1 - k

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without EOS."""
        return self._sp.EncodeAsIds(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._sp.EncodeAsIds(list(texts))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids` up to and including the first EOS (as seqio); PAD and EOS vanish."""
        ids = [int(i) for i in ids]
        if EOS_ID in ids:
            ids = ids[: ids.index(EOS_ID) + 1]
        ids = [UNK_ID if not 0 <= i < self.vocab_size else i for i in ids]
        return self._sp.DecodeIds(ids)

    def decode_batch(self, batch: Iterable[Iterable[int]]) -> list[str]:
        return [self.decode(ids) for ids in np.asarray(batch).tolist()] if isinstance(
            batch, np.ndarray) else [self.decode(ids) for ids in batch]

    def id_to_piece(self, i: int) -> str:
        return self._sp.IdToPiece(int(i))

    def __eq__(self, other) -> bool:
        return isinstance(other, SentencePieceVocabulary) and (
            (self.path, self.extra_ids) == (other.path, other.extra_ids))

    def __hash__(self) -> int:
        return hash((self.path, self.extra_ids))

    def __repr__(self) -> str:
        return f"SentencePieceVocabulary({self.path!r}, extra_ids={self.extra_ids})"


def train(texts: Iterable[str], model_path: str | os.PathLike, vocab_size: int = 8000,
          *, model_type: str = "unigram", character_coverage: float = 1.0,
          max_sentence_length: int = 8192) -> pathlib.Path:
    """Trains a SentencePiece model with T5's special ids from an iterator of texts.

    Deterministic for the same texts (single thread, no input sampling). The
    file is written atomically to `model_path` (a `.model` file).
    """
    model_path = pathlib.Path(model_path)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    proto = io.BytesIO()
    lines = (line for text in texts for line in text.splitlines() if line.strip())
    spm.SentencePieceTrainer.Train(
        sentence_iterator=lines, model_writer=proto, vocab_size=vocab_size,
        model_type=model_type, character_coverage=character_coverage,
        pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        num_threads=1, input_sentence_size=0, shuffle_input_sentence=False,
        max_sentence_length=max_sentence_length, hard_vocab_limit=False,
        minloglevel=2)
    with tempfile.NamedTemporaryFile(dir=model_path.parent, delete=False) as tmp:
        tmp.write(proto.getvalue())
    os.replace(tmp.name, model_path)
    return model_path


def fingerprint(texts: Sequence[str]) -> str:
    """A short content hash, used to name cached vocabularies."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:12]


def cache_dir() -> pathlib.Path:
    """Where trained vocabularies are cached: `$T2T_CACHE_DIR` or ~/.cache/t2t."""
    return pathlib.Path(os.environ.get("T2T_CACHE_DIR", "~/.cache/t2t")).expanduser()


class TrainedVocabulary(SentencePieceVocabulary):
    """A vocabulary trained on first use from `texts_fn()` and cached on disk.

    The cache file name carries `name`, the size and a hash of the texts, so a
    different corpus never reuses a stale model.
    """

    def __init__(self, name: str, texts_fn, vocab_size: int = 8000,
                 extra_ids: int = DEFAULT_EXTRA_IDS):
        self.name, self._texts_fn, self.size = name, texts_fn, vocab_size
        self.extra_ids = int(extra_ids)
        self._path = None

    @property
    def path(self) -> str:
        if self._path is None:
            texts = list(self._texts_fn())
            if not texts:
                raise ValueError(f"vocabulary {self.name!r}: no text to train on")
            target = cache_dir() / "vocab" / f"{self.name}.{self.size}.{fingerprint(texts)}.model"
            if not target.exists():
                train(texts, target, self.size)
            self._path = str(target)
        return self._path

    @path.setter
    def path(self, value):  # the base class assigns it; a trained vocabulary derives it
        del value

    def __eq__(self, other):
        return isinstance(other, TrainedVocabulary) and (self.name, self.size, self.extra_ids) == (
            other.name, other.size, other.extra_ids)

    def __hash__(self):
        return hash((self.name, self.size, self.extra_ids))

    def __repr__(self):
        return f"TrainedVocabulary({self.name!r}, vocab_size={self.size}, extra_ids={self.extra_ids})"
