"""A fixed-capacity ring buffer of transitions that lives on the device.

All functions are pure and work under ``jit``, ``vmap`` (one buffer per seed) and buffer
donation. ``add`` writes only the new rows (a scatter of O(added) cost, never a roll of the
whole buffer); ``sample`` draws from the filled part only.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from rlgen.data.transition import Transition


@flax.struct.dataclass
class ReplayBuffer:
    """Ring-buffer state. ``data`` has leading axis ``capacity``; rows ``[0, size)`` are valid."""

    data: Transition
    insert_pos: jax.Array  # int32 scalar: where the next row goes
    size: jax.Array  # int32 scalar: number of valid rows

    @property
    def capacity(self) -> int:
        return self.data.reward.shape[-1]


def init(capacity: int, obs_dim: int, action_dim: int) -> ReplayBuffer:
    """An empty buffer holding up to ``capacity`` transitions."""
    if capacity <= 0:
        raise ValueError(f"capacity must be positive, got {capacity}")
    return ReplayBuffer(
        data=Transition.zeros(obs_dim, action_dim, (capacity,)),
        insert_pos=jnp.zeros((), jnp.int32),
        size=jnp.zeros((), jnp.int32),
    )


def from_transitions(data: Transition) -> ReplayBuffer:
    """A full buffer wrapping a fixed dataset (e.g. an offline dataset on the device)."""
    n = len(data)
    return ReplayBuffer(
        data=data,
        insert_pos=jnp.zeros((), jnp.int32),
        size=jnp.asarray(n, jnp.int32),
    )


def add(buffer: ReplayBuffer, batch: Transition) -> ReplayBuffer:
    """Append a batch of transitions (leading axis n), overwriting the oldest when full.

    If n exceeds the capacity only the newest ``capacity`` rows are kept.
    """
    capacity = buffer.capacity
    n = len(batch)
    if n > capacity:
        batch = jax.tree.map(lambda x: x[n - capacity :], batch)
        buffer = buffer.replace(insert_pos=buffer.insert_pos + (n - capacity))
        n = capacity
    idx = (buffer.insert_pos + jnp.arange(n, dtype=jnp.int32)) % capacity
    data = jax.tree.map(
        lambda store, new: store.at[idx].set(new.astype(store.dtype), unique_indices=True),
        buffer.data,
        batch,
    )
    return ReplayBuffer(
        data=data,
        insert_pos=(buffer.insert_pos + n) % capacity,
        size=jnp.minimum(buffer.size + n, capacity),
    )


def extend(buffer: ReplayBuffer, rows: ReplayBuffer) -> ReplayBuffer:
    """Append the filled rows of ``rows`` (``rows.size`` of them, traced) in order, overwriting
    the oldest when full. ``rows`` may not hold more than ``buffer``'s capacity."""
    capacity, n = buffer.capacity, rows.capacity
    if n > capacity:
        raise ValueError(f"cannot append up to {n} rows to a buffer of capacity {capacity}")
    slot = jnp.arange(n, dtype=jnp.int32)
    idx = jnp.where(slot < rows.size, (buffer.insert_pos + slot) % capacity, capacity)
    data = jax.tree.map(
        lambda store, new: store.at[idx].set(new.astype(store.dtype), mode="drop"),
        buffer.data,
        rows.data,
    )
    return ReplayBuffer(
        data=data,
        insert_pos=(buffer.insert_pos + rows.size) % capacity,
        size=jnp.minimum(buffer.size + rows.size, capacity),
    )


def sample_indices(key: jax.Array, size: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform indices into the filled rows ``[0, size)`` (0 when the buffer is empty)."""
    return jax.random.randint(key, shape, 0, jnp.maximum(size, 1))


def gather(buffer: ReplayBuffer, idx: jax.Array) -> Transition:
    """The rows at ``idx`` (any index shape)."""
    return jax.tree.map(lambda x: x[idx], buffer.data)


def sample(
    buffer: ReplayBuffer, key: jax.Array, batch_size: int, num_batches: int | None = None
) -> Transition:
    """A uniform batch (B, ...) or, with ``num_batches=U``, a (U, B, ...) stack for UTD scans."""
    shape = (batch_size,) if num_batches is None else (num_batches, batch_size)
    return gather(buffer, sample_indices(key, buffer.size, shape))
