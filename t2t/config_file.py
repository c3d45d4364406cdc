"""Config files and `--config.a.b=value` overrides outside absl (for `t2t.inspect`).

`python -m t2t.train` reads its config with ml_collections' absl flags and its model overrides
with `parse_model_override`; tools that take the same flags next to their own arguments use
`load(path, overrides)`: the file's
`get_config()` (a `FILE.py:ARG` spec is passed to `get_config(ARG)`, as ml_collections
does), then every override parsed to the type of the field it replaces.
"""
from __future__ import annotations

import ast
from typing import Sequence

import ml_collections

from t2t import fileio

PREFIX = "--config."


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(argv without `--config.a.b=v` flags, ["a.b=v", ...])."""
    rest, overrides = [], []
    for arg in argv:
        if arg.startswith(PREFIX):
            if "=" not in arg:
                raise ValueError(f"{arg}: expected {PREFIX}a.b=value")
            overrides.append(arg[len(PREFIX):])
        else:
            rest.append(arg)
    return rest, overrides


def load(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """The config of `FILE.py[:ARG]` with `overrides` ("a.b=value") applied."""
    path, _, arg = spec.partition(":")
    module = fileio.load_python_file(path, "config")
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path}: a config file defines get_config()")
    cfg = module.get_config(arg) if arg else module.get_config()
    for override in overrides:
        apply_override(cfg, override)
    return cfg


def apply_override(cfg: ml_collections.ConfigDict, override: str) -> None:
    """Sets `a.b.c=value`, the value parsed as the field's type; unknown keys list the fields.
    Fields under `model.overrides` take any model field (t2t.models.variants.base_config)."""
    key, _, text = override.partition("=")
    *parents, leaf = key.split(".")
    node = cfg
    for i, part in enumerate(parents):
        if part not in node:
            raise ValueError(f"{PREFIX}{key}: the config has no {'.'.join(parents[:i + 1])!r}")
        node = node[part]
    if parents == ["model", "overrides"]:
        value = parse_model_override(leaf, text)
    elif leaf in node:
        value = parse_value(text, node.get_type(leaf), f"{PREFIX}{key}")
    else:
        raise ValueError(f"{PREFIX}{key}: no field {leaf!r} under "
                         f"{'.'.join(parents) or 'the top level'}; fields: {sorted(node.keys())}")
    with node.unlocked():
        node[leaf] = value


def parse_model_override(field: str, text: str):
    """`--config.model.overrides.FIELD=text`: the value as the type of model field `field`
    (t2t.models.variants.base_config), also for a field the config file does not list."""
    from t2t.models import variants
    defaults = variants.base_config()
    flag = f"{PREFIX}model.overrides.{field}"
    if field not in defaults:
        raise ValueError(f"{flag}: unknown model field; fields are {sorted(defaults.keys())}")
    return parse_value(text, type(defaults[field]), flag)


def parse_value(text: str, kind: type, where: str):
    """`text` as a value of `kind` (bool, int, float, str, or a literal for the rest)."""
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{where}={text}: expected true or false")
        return text.lower() in ("true", "1")
    if kind in (int, float, str):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{where}={text}: expected {kind.__name__}") from None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"{where}={text}: expected a Python literal") from None

