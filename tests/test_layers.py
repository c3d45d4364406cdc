"""The package layers (README "Code layout"), checked from the import graph of t2t/.

A module may import only from its own layer or lower ones; models and data never import
each other; eval and sweep never import train; the package-level graph has no cycle. Every
import counts: module level, inside functions, `import t2t.x` and `from t2t.x import y`.
"""
from __future__ import annotations

import ast
import collections
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "t2t"

# First name after `t2t.` -> layer. A new top-level module or package must be added here.
LAYERS = {
    "batch_spec": 0, "fileio": 0, "allocator": 0,
    "models": 1, "data": 1, "sharding": 1,
    "tasks": 2,
    "pairing": 3, "workdir": 3, "config_file": 3,
    "eval": 4,
    "train": 5,
    "sweep": 6,
    "evaluate": 7, "inspect": 7, "score": 7, "convert": 7, "clean_c4": 7, "results": 7,
}
NEVER = [("models", "data"), ("data", "models"), ("eval", "train"), ("sweep", "train")]

Edge = collections.namedtuple("Edge", "src dst where")  # components; "file:line"


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool):
    """(line, imported t2t module) for every import anywhere in `tree` (relative ones resolved)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from t2t import x`: x is a module of the package
                yield node.lineno, f"{base}.{alias.name}" if base == "t2t" else base


def component(module: str) -> str | None:
    """`models` for t2t.models.layers; None for the bare package or non-t2t modules."""
    parts = module.split(".")
    return parts[1] if parts[0] == "t2t" and len(parts) > 1 else None


def import_edges(source: str, path: pathlib.Path) -> list[Edge]:
    module = module_name(path)
    src = component(module)
    edges = []
    for line, target in imported_modules(ast.parse(source, str(path)), module,
                                         path.name == "__init__.py"):
        dst = component(target)
        if dst is not None:
            edges.append(Edge(src, dst, f"{path.relative_to(PACKAGE.parent)}:{line}"))
    return edges


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        out += import_edges(path.read_text(encoding="utf-8"), path)
    return out


def _report(bad: list[Edge]) -> str:
    return "\n".join(f"  {e.where}: t2t.{e.src} (layer {LAYERS.get(e.src)}) imports t2t.{e.dst} "
                     f"(layer {LAYERS.get(e.dst)})" for e in bad)


def test_every_module_has_a_layer():
    found = {component(module_name(p)) for p in PACKAGE.rglob("*.py")} - {None}
    missing = sorted(found - set(LAYERS))
    assert not missing, f"add these t2t modules/packages to LAYERS in {__file__}: {missing}"


def test_no_module_imports_from_a_higher_layer(edges):
    bad = [e for e in edges if e.src in LAYERS and e.dst in LAYERS and LAYERS[e.dst] > LAYERS[e.src]]
    assert not bad, "imports from a higher layer:\n" + _report(bad)


@pytest.mark.parametrize("src,dst", NEVER, ids=[f"{s}-{d}" for s, d in NEVER])
def test_forbidden_pairs(edges, src, dst):
    bad = [e for e in edges if (e.src, e.dst) == (src, dst)]
    assert not bad, f"t2t.{src} must not import t2t.{dst}:\n" + _report(bad)


def test_no_cycles_between_packages(edges):
    graph = collections.defaultdict(set)
    for e in edges:
        if e.src is not None and e.src != e.dst:
            graph[e.src].add(e.dst)
    cycles = [scc for scc in _strongly_connected(graph) if len(scc) > 1]
    bad = [e for scc in cycles for e in edges if e.src in scc and e.dst in scc and e.src != e.dst]
    assert not cycles, (f"import cycles between packages {[sorted(c) for c in cycles]}:\n"
                        + _report(bad))


def _strongly_connected(graph) -> list[set[str]]:
    """Tarjan's strongly connected components of {node: successors}."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.add(w)
                if w == v:
                    break
            out.append(scc)

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_every_kind_of_import():
    source = ("import t2t.train.loop\nfrom t2t import sweep\nfrom t2t.models.model import build_model\n"
              "def f():\n    from t2t.eval import run\n    import t2t.data as d\n"
              "from . import grid\nfrom ..tasks import glue\n")
    got = [(e.dst, e.where.rsplit(":", 1)[1])
           for e in import_edges(source, PACKAGE / "sweep" / "fake.py")]
    assert sorted(got, key=lambda x: int(x[1])) == [
        ("train", "1"), ("sweep", "2"), ("models", "3"), ("eval", "5"), ("data", "6"),
        ("sweep", "7"), ("tasks", "8")]
    cyclic = _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert {"a", "b", "c"} in cyclic and {"d"} in cyclic


def test_the_graph_holds_known_edges(edges):
    pairs = {(e.src, e.dst) for e in edges}
    assert {("train", "workdir"), ("eval", "workdir"), ("eval", "sharding"),
            ("workdir", "models")} <= pairs
