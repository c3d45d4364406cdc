"""Raw example sources: JSONL(.gz), GLUE-layout TSV, text lines, TFDS, built-in corpus.

A source maps split names to random-access sequences of example dicts, which
`grain.MapDataset.source` wraps directly. File patterns are globs relative to a
data directory (`--data_dir`, else `$T2T_DATA_DIR`); a split may list several
patterns (shards). JSON lines are parsed on access and errors name file:line.
"""
from __future__ import annotations

import abc
import ast
import bisect
import functools
import glob
import hashlib
import os
import pathlib
import re
import sysconfig
from typing import Callable, Iterable, Mapping, Sequence

from t2t import fileio

Example = dict
Patterns = str | Sequence[str]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> pathlib.Path | None:
    """`data_dir` if given, else `$T2T_DATA_DIR`, else None."""
    value = data_dir if data_dir is not None else os.environ.get("T2T_DATA_DIR")
    return pathlib.Path(value).expanduser() if value else None


def expand_patterns(patterns: Patterns, data_dir=None) -> list[str]:
    """Sorted files matching the glob(s); relative patterns are joined to `data_dir`."""
    patterns = [patterns] if isinstance(patterns, (str, os.PathLike)) else list(patterns)
    root = resolve_data_dir(data_dir)
    files = []
    for pattern in patterns:
        pattern = str(pattern)
        if not os.path.isabs(pattern):
            if root is None:
                raise FileNotFoundError(
                    f"relative file pattern {pattern!r} needs a data directory: "
                    "pass --data_dir or set T2T_DATA_DIR")
            pattern = str(root / pattern)
        matched = sorted(glob.glob(pattern))
        if not matched:
            raise FileNotFoundError(f"no file matches {pattern!r}")
        files.extend(matched)
    return files


def _open_text(path: str):
    """UTF-8 text; a leading byte-order mark (GLUE's MRPC files have one) is dropped."""
    return fileio.open_text(path)


class DataSource(abc.ABC):
    """Split name -> random-access sequence of example dicts."""

    splits: tuple[str, ...] = ()

    @abc.abstractmethod
    def get(self, split: str, data_dir=None) -> Sequence[Example]:
        """The examples of `split` (supports len() and integer indexing)."""

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; this source has {list(self.splits)}")


class InMemorySource(DataSource):
    """Examples held in memory (tests, TFDS-shaped fixtures, small tasks)."""

    def __init__(self, examples: Mapping[str, Sequence[Example]]):
        self._examples = {k: list(v) for k, v in examples.items()}
        self.splits = tuple(self._examples)

    def get(self, split, data_dir=None):
        self._check_split(split)
        return self._examples[split]


class _Records(Sequence):
    """Lazily parsed records over several files; `parse(line, where)` makes a record."""

    def __init__(self, files: Sequence[str], parse: Callable[[str, str], Example],
                 skip_header: bool = False):
        self._files, self._parse = list(files), parse
        self._lines: list[list[str]] = []
        self._offsets = [0]
        self._first_line = 2 if skip_header else 1
        for path in self._files:
            with _open_text(path) as f:
                lines = f.read().split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            if skip_header:
                lines = lines[1:]
            self._lines.append(lines)
            self._offsets.append(self._offsets[-1] + len(lines))

    def __len__(self) -> int:
        return self._offsets[-1]

    def __getitem__(self, index: int) -> Example:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        f = bisect.bisect_right(self._offsets, index) - 1
        i = index - self._offsets[f]
        return self._parse(self._lines[f][i], f"{self._files[f]}:{i + self._first_line}")


class FileSource(DataSource):
    """Base for sources that read one file pattern (or shard list) per split."""

    def __init__(self, split_files: Mapping[str, Patterns],
                 flatten: Callable[[Example], Iterable[Example]] | None = None):
        self._split_files = dict(split_files)
        self.splits = tuple(self._split_files)
        self._flatten = flatten

    def files(self, split: str, data_dir=None) -> list[str]:
        self._check_split(split)
        return expand_patterns(self._split_files[split], data_dir)

    def get(self, split, data_dir=None):
        records = self._records(self.files(split, data_dir))
        if self._flatten is None:
            return records
        return [out for record in records for out in self._flatten(record)]

    @abc.abstractmethod
    def _records(self, files: list[str]) -> Sequence[Example]:
        ...


class JsonlSource(FileSource):
    """JSON lines (optionally .gz), one object per line: C4's and SuperGLUE's layout.

    `required_keys` must be present in every record (C4 needs only `text`;
    other metadata keys such as url/timestamp/date vary between copies).
    """

    def __init__(self, split_files, required_keys: Sequence[str] = (), flatten=None):
        super().__init__(split_files, flatten)
        self._required = tuple(required_keys)

    def _parse(self, line: str, where: str) -> Example:
        return parse_json_object(line, where, self._required)

    def _records(self, files):
        return _Records(files, self._parse)


def parse_json_object(line: str, where: str, required_keys: Sequence[str] = ()) -> Example:
    """One JSON object from one line; errors name `where` (file:line) and what was expected."""
    return fileio.parse_json_object(line, where, required_keys)


def iter_jsonl(path: str, required_keys: Sequence[str] = ()) -> Iterable[Example]:
    """Streams the JSON objects of a .jsonl or .jsonl.gz file; blank lines are skipped."""
    return fileio.read_jsonl(path, required_keys)


class TsvSource(FileSource):
    """GLUE-layout TSV: tab-separated, no quoting, columns named by the header.

    Pass `columns` for header-less files (CoLA). Every row must have as many
    fields as there are columns; a row that does not names file:line.
    """

    def __init__(self, split_files, columns: Sequence[str] | None = None, flatten=None):
        super().__init__(split_files, flatten)
        self._columns = tuple(columns) if columns else None

    def _records(self, files):
        out = []
        for path in files:
            with _open_text(path) as f:
                lines = f.read().split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            columns, first = self._columns, 1
            if columns is None:
                if not lines:
                    raise ValueError(f"{path}: empty TSV file, expected a header line")
                columns, lines, first = tuple(lines[0].rstrip("\r").split("\t")), lines[1:], 2
            for i, line in enumerate(lines):
                fields = line.rstrip("\r").split("\t")
                if len(fields) != len(columns):
                    raise ValueError(
                        f"{path}:{i + first}: expected {len(columns)} tab-separated fields "
                        f"{list(columns)}, got {len(fields)}")
                out.append(dict(zip(columns, fields)))
        return out


class TextLineSource(FileSource):
    """Plain text, one example `{"text": line}` per non-empty line."""

    def _records(self, files):
        out = []
        for path in files:
            with _open_text(path) as f:
                out.extend({"text": line.rstrip("\r\n")} for line in f if line.strip())
        return out


class TfdsSource(DataSource):
    """A TFDS dataset by name, e.g. `c4/en:3.1.0` or `glue/cola`.

    Prepared datasets in array_record format are read with `tfds.data_source`
    (random access, no TensorFlow). Other formats need the `tfds` extra
    (TensorFlow) and are read through tf.data into memory.
    """

    def __init__(self, name: str, splits: Mapping[str, str] | Sequence[str] = ("train", "validation")):
        self.name = name
        self._split_map = dict(splits) if isinstance(splits, Mapping) else {s: s for s in splits}
        self.splits = tuple(self._split_map)

    def get(self, split, data_dir=None):
        self._check_split(split)
        import tensorflow_datasets as tfds

        tfds_split = self._split_map[split]
        tfds_dir = os.environ.get("TFDS_DATA_DIR")
        try:
            return _DecodedTfds(tfds.data_source(self.name, split=tfds_split, data_dir=tfds_dir))
        except Exception as first_error:  # not prepared as array_record, or not prepared at all
            try:
                import tensorflow  # noqa: F401
            except ImportError:
                raise RuntimeError(
                    f"TFDS dataset {self.name!r} split {tfds_split!r} cannot be read without "
                    f"TensorFlow ({type(first_error).__name__}: {first_error}). Prepare it in "
                    "array_record format, install t2t[tfds], or point --data_dir at local files."
                ) from None
            ds = tfds.load(self.name, split=tfds_split, data_dir=tfds_dir)
            return [_decode_bytes(x) for x in tfds.as_numpy(ds)]


def _decode_bytes(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict):
        return {k: _decode_bytes(v) for k, v in value.items()}
    if hasattr(value, "tolist") and getattr(value, "dtype", None) is not None and value.dtype == object:
        return [_decode_bytes(v) for v in value.tolist()]
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return value.item()
    return value


class _DecodedTfds(Sequence):
    def __init__(self, source):
        self._source = source

    def __len__(self):
        return len(self._source)

    def __getitem__(self, i):
        return _decode_bytes(self._source[i])


class FilesOrTfds(DataSource):
    """Local files when the data directory has them, else the TFDS dataset."""

    def __init__(self, files: FileSource, tfds_source: TfdsSource):
        self._files, self._tfds = files, tfds_source
        self.splits = files.splits

    def get(self, split, data_dir=None):
        try:
            files = self._files.files(split, data_dir)
        except FileNotFoundError as missing:
            try:
                return self._tfds.get(split, data_dir)
            except RuntimeError as e:
                raise FileNotFoundError(f"{missing}; and TFDS fallback failed: {e}") from None
        del files
        return self._files.get(split, data_dir)


# ----------------------------------------------------------------------------------------
# The built-in offline corpus: the Python standard library's own documentation.
# ----------------------------------------------------------------------------------------
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "__phello__"}


def _module_docs(path: pathlib.Path) -> str:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return ""
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc.split()) >= 5:
                docs.append(doc.strip())
    return "\n\n".join(docs)


@functools.lru_cache(maxsize=1)
def builtin_documents() -> tuple[Example, ...]:
    """Every document of the built-in corpus, in a fixed order.

    The Language Reference sections shipped as `pydoc_data.topics` plus, per
    standard-library module, its docstrings (module, classes, functions) in
    source order. About 2 MB of human-written English on CPython 3.11.
    """
    from pydoc_data import topics

    docs = [{"text": re.sub(r"\n{3,}", "\n\n", topics.topics[key]).strip(), "title": f"pydoc_topics/{key}"}
            for key in sorted(topics.topics)]
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if _SKIP_DIRS.intersection(path.relative_to(root).parts):
            continue
        text = _module_docs(path)
        if text:
            docs.append({"text": text, "title": str(path.relative_to(root))})
    return tuple(docs)


def _builtin_split(title: str) -> str:
    return "validation" if int(hashlib.sha1(title.encode()).hexdigest(), 16) % 20 == 0 else "train"


class BuiltinCorpusSource(DataSource):
    """The built-in offline corpus; about 5% of documents (by title hash) are validation."""

    splits = ("train", "validation")

    def get(self, split, data_dir=None):
        self._check_split(split)
        return [d for d in builtin_documents() if _builtin_split(d["title"]) == split]
