"""Device mesh and the ONE logical-axis rules table.

Mesh axes: `data` (pure data parallel), `fsdp` (data parallel whose params and
optimizer state are sharded too), `tensor` (model parallel over heads/mlp/vocab).
Model params carry logical axis names (t2t/models/layers.py); `RULES` maps them
to mesh axes. A logical axis maps to the first listed mesh axis not already used
by another dimension of the same array, else stays replicated. So data parallel,
FSDP and tensor parallel are mesh shapes, not code paths.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (first free one wins; unlisted or exhausted -> replicated)
RULES = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("joined_kv", "tensor"),
    ("embed", "fsdp"),
    ("kv", None),
    ("relpos_buckets", None),
    ("layers", None),
    ("length", None),
)


def make_mesh(shape: Mapping[str, int], devices=None) -> Mesh:
    """A mesh with axes (data, fsdp, tensor); one size may be -1 for 'the rest'."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = [int(shape.get(a, 1)) for a in MESH_AXES]
    unknown = [ax for ax, s in zip(MESH_AXES, sizes) if s == -1]
    if len(unknown) > 1:
        raise ValueError(f"mesh {dict(shape)}: at most one axis may be -1")
    known = math.prod(s for s in sizes if s != -1)
    if unknown:
        if len(devices) % known:
            raise ValueError(f"mesh {dict(shape)}: {len(devices)} devices not divisible by {known}")
        sizes[sizes.index(-1)] = len(devices) // known
    if not unknown and math.prod(sizes) < len(devices) and jax.process_count() == 1:
        devices = devices[: math.prod(sizes)]  # a smaller mesh on one host uses the first devices
    if math.prod(sizes) != len(devices):
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} devices, "
                         f"have {len(devices)}")
    try:
        arr = jax.experimental.mesh_utils.create_device_mesh(sizes, devices)
    except Exception:  # CPU / odd topologies: plain order is fine
        arr = np.asarray(devices).reshape(sizes)
    return Mesh(arr, MESH_AXES)


def logical_to_spec(names, rules=RULES) -> P:
    """PartitionSpec for one array's logical axis names (flax's first-free-axis resolution)."""
    return nn.logical_to_mesh_axes(tuple(names), rules)


def _fit(spec: P, shape, mesh: Mesh) -> P:
    """Drops mesh axes that do not divide the dimension they shard."""
    out = []
    for dim, axis in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        axes = axis if isinstance(axis, tuple) else (axis,) if axis else ()
        size = math.prod(mesh.shape[a] for a in axes) if axes else 1
        out.append(axis if axes and dim % size == 0 else None)
    return P(*out)


def param_specs(boxed_params) -> Any:
    """Tree of logical name tuples for (abstract) boxed params."""
    return jax.tree.map(lambda x: tuple(x.names) if isinstance(x, nn.Partitioned) else (None,) * len(x.shape),
                        boxed_params, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def param_shardings(boxed_params, mesh: Mesh, rules=RULES) -> Any:
    """NamedShardings (for the unboxed params tree) from logical annotations."""
    names = param_specs(boxed_params)
    shapes = jax.tree.map(lambda x: x, nn.unbox(boxed_params))
    return jax.tree.map(lambda n, s: NamedSharding(mesh, _fit(logical_to_spec(n, rules), s.shape, mesh)),
                        names, shapes, is_leaf=lambda x: isinstance(x, tuple))


def _path_key(path) -> tuple:
    return tuple(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path)


def state_shardings(abstract_tree, abstract_params, params_shardings, mesh: Mesh) -> Any:
    """Shardings for a tree holding param-shaped leaves (e.g. optimizer state).

    A leaf whose key path ends with a param's path takes that param's sharding
    when the shapes match, or that sharding minus one dimension when it is a
    factored moment (Adafactor's row/column statistics); anything else
    (counts, scalars) is replicated.
    """
    flat = jax.tree_util.tree_flatten_with_path
    shapes = {_path_key(p): x.shape for p, x in flat(abstract_params)[0]}
    specs = {_path_key(p): s.spec for p, s in flat(params_shardings)[0]}

    def one(path, leaf):
        key = _path_key(path)
        for start in range(len(key)):
            if key[start:] not in shapes:
                continue
            shape, spec = shapes[key[start:]], tuple(specs[key[start:]])
            spec = spec + (None,) * (len(shape) - len(spec))
            if tuple(leaf.shape) == tuple(shape):
                return NamedSharding(mesh, P(*spec))
            for d in range(len(shape)):
                if tuple(shape[:d] + shape[d + 1:]) == tuple(leaf.shape):
                    return NamedSharding(mesh, _fit(P(*(spec[:d] + spec[d + 1:])), leaf.shape, mesh))
            break
        return NamedSharding(mesh, P())
    return jax.tree_util.tree_map_with_path(one, abstract_tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(("data", "fsdp")))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def rules_context(mesh: Mesh):
    """Context in which `nn.with_logical_constraint` uses the rules table."""
    return nn.logical_axis_rules([(n, a) for n, a in RULES])
