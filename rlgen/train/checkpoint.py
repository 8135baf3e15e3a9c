"""Orbax checkpoints of a whole run state (params, optimiser states, buffers, keys, counters).

PRNG keys are stored as their raw ``uint32`` data so checkpoints do not depend on orbax's
support for typed keys, and arrays with no elements (MJX's ``mjx.Data`` has some, e.g. ``act``
for tasks without actuator state, which orbax refuses to save) are left out and taken back from
the template. Restoring takes a template state (from a fresh ``init``) that says which leaves
are keys and how every leaf is shaped and sharded, so a checkpoint restores onto a different
device count (or process count). Orbax writes to a temporary directory and renames it
when complete, so an interrupted save never replaces the last good checkpoint.

In a multi-process run (:mod:`rlgen.train.distributed`) every process calls :func:`save` and
:func:`restore` with the same directory, which must be on a filesystem they all share: each
process writes and reads only the shards of its own devices, and process 0 finalises the save.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import orbax.checkpoint as ocp


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _storable(tree):
    """``tree`` with keys as their raw data and empty arrays as None (not saved)."""

    def leaf(x):
        if _is_key(x):
            return jax.random.key_data(x)
        return None if hasattr(x, "size") and x.size == 0 else x

    return jax.tree.map(leaf, tree)


def manager(directory: str | os.PathLike, max_to_keep: int = 2) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        os.path.abspath(directory), options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep)
    )


def will_resume(mngr: ocp.CheckpointManager, resume: bool) -> bool:
    """Whether a run continues from ``mngr``'s latest checkpoint: when ``resume`` is set and
    one exists. Starting over where a run's checkpoints are would overwrite that run, so it is
    refused."""
    latest = mngr.latest_step()
    if latest is not None and not resume:
        raise FileExistsError(
            f"{Path(mngr.directory).parent} already holds a run (checkpoint at step {latest}): "
            "pass --resume (resume=True) to continue it, or choose another run directory"
        )
    return latest is not None


def save(mngr: ocp.CheckpointManager, step: int, state) -> None:
    """Save ``state`` as checkpoint ``step`` and wait until it is on disk."""
    mngr.save(step, args=ocp.args.StandardSave(_storable(state)))
    mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, template, step: int | None = None):
    """Restore checkpoint ``step`` (default: the latest) into the structure of ``template``."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _storable(template))
    raw = mngr.restore(step, args=ocp.args.StandardRestore(abstract))

    def leaf(t, r):
        if r is None:  # an empty array: nothing was saved
            return t
        return jax.random.wrap_key_data(r, impl=jax.random.key_impl(t)) if _is_key(t) else r

    return jax.tree.map(leaf, template, raw, is_leaf=lambda x: x is None)
