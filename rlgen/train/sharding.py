"""The seed axis sharded over devices (of every process) with a 1-D ``NamedSharding`` mesh."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rlgen.train.distributed import put


def seed_sharding(num_seeds: int, devices=None) -> NamedSharding:
    """Shard a leading seed axis over ``devices`` (default: all devices of all processes).

    Each process contributes the same number of its devices, the most that makes the total
    divide ``num_seeds`` evenly; with several processes, ``num_seeds`` must be a multiple of the
    process count. Seeds are laid out in process order (process 0 holds the first ones).
    """
    devices = jax.devices() if devices is None else list(devices)
    processes = sorted({d.process_index for d in devices})
    if len(processes) != jax.process_count():
        raise ValueError(
            f"the seed mesh needs devices of all {jax.process_count()} processes, got devices of "
            f"processes {processes}"
        )
    if num_seeds % len(processes):
        raise ValueError(
            f"seeds ({num_seeds}) must be divisible by the number of processes "
            f"({len(processes)}) so that every process runs the same number of seeds"
        )
    local = [[d for d in devices if d.process_index == p] for p in processes]
    most = min(len(ds) for ds in local)
    per_process = max(k for k in range(1, most + 1) if num_seeds % (k * len(processes)) == 0)
    mesh = Mesh(np.asarray([d for ds in local for d in ds[:per_process]]), ("seeds",))
    return NamedSharding(mesh, PartitionSpec("seeds"))


def seed_keys(
    seed: int, num_seeds: int, sharding: NamedSharding, salt: int = 0, repeats: int = 1
) -> jax.Array:
    """Key i = fold_in(fold_in(key(seed), salt), i), placed along the sharded seed axis;
    ``repeats`` times over (the lanes of a sweep: every point's seed i gets seed i's key)."""
    base = jax.random.fold_in(jax.random.key(seed), salt)
    seeds = np.tile(np.arange(num_seeds), repeats)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(seeds)
    return put(keys, sharding)


def replicated(sharding: NamedSharding) -> NamedSharding:
    """The same mesh with every array copied whole to each device (shared data)."""
    return NamedSharding(sharding.mesh, PartitionSpec())


def seed_map(fn, sharding: NamedSharding, in_axes=0):
    """``vmap(fn, in_axes)`` (:func:`lane_map`) over the seed axis sharded like ``sharding``.

    ``in_axes``: 0 for per-seed arguments, None for shared ones; all outputs are per-seed. When
    the mesh spans several processes, the batch runs as one program per device on that device's
    seeds (``shard_map``): seeds are independent, so nothing crosses processes, whereas XLA's
    automatic partitioning gathers the operands of host callbacks (C MuJoCo physics) onto one
    device at every env step. Within one process the plain ``vmap`` is kept: there the gather
    is a local copy, and one batched callback steps all seeds on the physics thread pool (faster
    than a callback per device, measured with 4 forced CPU devices).
    """
    batched = lane_map(fn, in_axes)
    if sharding.is_fully_addressable:
        return batched
    spec = sharding.spec
    in_specs = spec if in_axes == 0 else tuple(spec if a == 0 else PartitionSpec() for a in in_axes)
    # check_vma off: the body has no collectives to check, and the check rejects per-seed code
    # that mixes seed-invariant and per-seed values (e.g. the two branches of auto-reset's cond)
    return jax.shard_map(
        batched, mesh=sharding.mesh, in_specs=in_specs, out_specs=spec, check_vma=False
    )


def lane_map(fn, in_axes=0):
    """``vmap(fn, in_axes)`` over a leading lane axis, except that a single lane runs ``fn``
    on the lane itself and gets the axis back on its outputs: XLA:CPU runs some programs on
    arrays with a leading axis of size 1 several times slower (a LayerNorm-ed critic update of
    10 critics at batch 256: 23 vs 11 ms on 2 cores), and one seed is a common run."""
    batched = jax.vmap(fn, in_axes=in_axes)

    def call(*args):
        axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
        mapped = [a for a, axis in zip(args, axes, strict=True) if axis == 0]
        if {leaf.shape[0] for a in mapped for leaf in jax.tree.leaves(a)} != {1}:
            return batched(*args)
        lane = [
            jax.tree.map(lambda x: x[0], a) if axis == 0 else a
            for a, axis in zip(args, axes, strict=True)
        ]
        return jax.tree.map(lambda x: x[None], fn(*lane))

    return call
