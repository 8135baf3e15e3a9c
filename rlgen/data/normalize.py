"""Per-dimension z-score normaliser (fit / apply / invert) with optional pass-through dims."""

from __future__ import annotations

from collections.abc import Sequence

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Normalizer:
    """``apply(x) = (x - mean) / std`` on every dim except the skipped ones (mean 0, std 1)."""

    mean: jax.Array
    std: jax.Array


def fit(x: jax.Array, skip_dims: Sequence[int] = (), eps: float = 1e-6) -> Normalizer:
    """Fit on samples ``x`` of shape (N, D); ``skip_dims`` pass through unchanged.

    Dims with (near) zero spread get std 1 so nothing is divided by zero.
    """
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 2:
        raise ValueError(f"Normalizer.fit expects (N, D) samples, got shape {x.shape}")
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = jnp.where(std < eps, 1.0, std)
    skip = jnp.zeros(x.shape[1], bool).at[jnp.asarray(skip_dims, jnp.int32)].set(True)
    return Normalizer(mean=jnp.where(skip, 0.0, mean), std=jnp.where(skip, 1.0, std))


def apply(norm: Normalizer, x: jax.Array) -> jax.Array:
    return (x - norm.mean) / norm.std


def invert(norm: Normalizer, z: jax.Array) -> jax.Array:
    return z * norm.std + norm.mean
