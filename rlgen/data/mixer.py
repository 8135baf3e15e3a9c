"""Batches drawn from several sources (offline, online, synthetic data) at set ratios."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from rlgen.data import replay
from rlgen.data.replay import ReplayBuffer
from rlgen.data.transition import Transition, concat


def split_counts(batch_size: int, ratios: Sequence[float]) -> tuple[int, ...]:
    """Exact per-source row counts summing to ``batch_size`` (largest-remainder rounding)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not ratios or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f"ratios must be non-negative with a positive sum, got {tuple(ratios)}")
    total = float(sum(ratios))
    exact = [batch_size * r / total for r in ratios]
    counts = [int(e) for e in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[: batch_size - sum(counts)]:
        counts[i] += 1
    return tuple(counts)


def sample_mixed(
    sources: Sequence[ReplayBuffer | tuple[ReplayBuffer, ...]],
    counts: Sequence[int],
    key: jax.Array,
    num_batches: int | None = None,
) -> Transition:
    """One batch holding exactly ``counts[i]`` rows from ``sources[i]``, in source order.

    Each source is sampled uniformly over its filled rows only, so partly filled buffers are
    fine; a source given as a tuple of buffers is sampled uniformly over their union. Rows of
    source i occupy the slice ``[sum(counts[:i]), sum(counts[:i+1]))`` of the batch axis (the
    last axis before the feature axes), which doubles as the source tag.
    """
    if len(sources) != len(counts):
        raise ValueError(f"got {len(sources)} sources but {len(counts)} counts")
    keys = jax.random.split(key, len(sources))

    def draw(src, k, n):
        if isinstance(src, tuple):
            return sample_union(src, k, n, num_batches)
        return replay.sample(src, k, n, num_batches)

    parts = [draw(src, k, n) for src, k, n in zip(sources, keys, counts, strict=True) if n > 0]
    return concat(parts, axis=0 if num_batches is None else 1)


def sample_union(
    sources: Sequence[ReplayBuffer],
    key: jax.Array,
    batch_size: int,
    num_batches: int | None = None,
) -> Transition:
    """A (B,) batch, or a (U, B) stack with ``num_batches=U``, uniform over the filled rows of
    all ``sources`` together, as if they were one buffer. Sizes may be traced, so growing
    buffers need no recompiling."""
    shape = (batch_size,) if num_batches is None else (num_batches, batch_size)
    sizes = jnp.stack([src.size for src in sources])
    ends = jnp.cumsum(sizes)
    idx = replay.sample_indices(key, ends[-1], shape)
    which = jnp.sum(idx[..., None] >= ends, axis=-1)  # the source holding each row
    parts = [
        replay.gather(src, jnp.clip(idx - (end - size), 0, src.capacity - 1))
        for src, end, size in zip(sources, ends, sizes, strict=True)
    ]

    def pick(*xs):
        source = which.reshape(which.shape + (1,) * (xs[0].ndim - which.ndim))
        out = xs[0]
        for i, x in enumerate(xs[1:], start=1):
            out = jnp.where(source == i, x, out)
        return out

    return jax.tree.map(pick, *parts)
