"""Small file helpers every layer shares: atomic writes, JSON and JSON-lines reading.

Atomic: the text goes to a temporary file in the target's folder, which is renamed over the
target (os.replace), so a reader sees the old file or the new one, never half of one. Read
errors name the file (and for JSON lines file:line) and what was expected. Imports nothing
from t2t, so any module may use it.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import pathlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

PathLike = str | os.PathLike


def open_text(path: PathLike, mode: str = "r"):
    """UTF-8 text, gzip for `.gz`; reading drops a leading byte-order mark (GLUE's MRPC has one)."""
    path = os.fspath(path)
    encoding = "utf-8-sig" if mode.startswith("r") else "utf-8"
    if path.endswith(".gz"):
        return gzip.open(path, mode + "t", encoding=encoding, newline="\n")
    return open(path, mode + "t", encoding=encoding, newline="\n")


@contextlib.contextmanager
def atomic_open(path: PathLike, *, make_parents: bool = True):
    """A text file (gzip for `.gz`) written to a temporary beside `path`, renamed into place
    when the block ends without an error; on an error the temporary is removed."""
    path = pathlib.Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: directory {path.parent} does not exist")
    # Unique per process and thread, so concurrent writers of one file never share a temporary.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    if path.name.endswith(".gz"):
        tmp = tmp.with_name(tmp.name + ".gz")
    try:
        with open_text(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """Writes `text` to `path` atomically, creating its parent folders."""
    with atomic_open(path) as f:
        f.write(text)


def atomic_write_json(path: PathLike, obj: Any, *, indent: int | None = 1, sort_keys: bool = False,
                      default=None) -> None:
    """Writes `obj` as JSON (plus a final newline) to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + "\n")


def read_json(path: PathLike, default: Any = None) -> Any:
    """The JSON value in `path`, or `default` when the file does not exist; malformed JSON
    raises ValueError naming the file."""
    try:
        with open_text(path) as f:
            text = f.read()
    except FileNotFoundError:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def parse_json_object(line: str, where: str, required_keys: Sequence[str] = ()) -> dict:
    """One JSON object from one line; errors name `where` (file:line) and what was expected."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: malformed JSON line ({e.msg} at column {e.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [k for k in required_keys if k not in record]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}; expected {list(required_keys)}")
    return record


def read_jsonl(path: PathLike, required_keys: Sequence[str] = (), *, skip_malformed: bool = False,
               line_numbers: bool = False) -> Iterator[Any]:
    """Streams the JSON objects of a .jsonl or .jsonl.gz file; blank lines are skipped.

    Errors name file:line. `skip_malformed` skips lines that are not JSON objects with the
    required keys (a writer killed mid-line) instead of raising. `line_numbers` yields
    (line number, object) pairs.
    """
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = parse_json_object(line, f"{path}:{n}", required_keys)
            except ValueError:
                if skip_malformed:
                    continue
                raise
            yield (n, record) if line_numbers else record


def load_python_file(path: PathLike, kind: str):
    """The module a Python file defines (a config file, a grid file), run under a private name;
    `kind` names it in the error when the file is missing."""
    import importlib.util

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"t2t_{kind.replace(' ', '_')}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
