"""The seed axis sharded over local devices with a 1-D ``NamedSharding`` mesh."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def seed_sharding(num_seeds: int, devices=None) -> NamedSharding:
    """Shard a leading seed axis over as many devices as evenly divide ``num_seeds``."""
    devices = jax.devices() if devices is None else devices
    count = max(d for d in range(1, len(devices) + 1) if num_seeds % d == 0)
    mesh = Mesh(np.asarray(devices[:count]), ("seeds",))
    return NamedSharding(mesh, PartitionSpec("seeds"))
