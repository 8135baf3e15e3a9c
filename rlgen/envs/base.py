"""Env state and interface shared by rlgen's envs and adapters (brax conventions)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class State:
    """One env's state. `done` = terminated or truncated (float32).

    `info` holds `steps` (int32, steps since reset), `terminated` and `truncation` (float32;
    truncation is 1 only when the time limit ended a non-terminal episode) and `rng` (the key
    the next automatic reset uses).
    """

    pipeline_state: Any
    obs: jax.Array
    reward: jax.Array
    done: jax.Array
    metrics: dict[str, jax.Array] = struct.field(default_factory=dict)
    info: dict[str, Any] = struct.field(default_factory=dict)


class Env:
    """Interface: `reset(key) -> State`, `step(state, action) -> State`, both jittable and
    vmappable, plus `observation_size`, `action_size` and `dt` (seconds per env step), and
    optionally `terminated(obs)` (the task's termination as a function of the observation)."""

    observation_size: int
    action_size: int
    dt: float

    def reset(self, key: jax.Array) -> State:
        raise NotImplementedError

    def step(self, state: State, action: jax.Array) -> State:
        raise NotImplementedError

    def terminated(self, obs: jax.Array) -> jax.Array:
        """Whether observations (..., observation_size) end the episode, computed from the
        observation alone (bool of shape obs.shape[:-1]): what a world model needs."""
        raise NotImplementedError(f"{type(self).__name__} has no termination function of obs")


def reset_info(key: jax.Array) -> dict[str, jax.Array]:
    """`info` entries of a freshly reset env."""
    zero = jnp.zeros((), jnp.float32)
    return {"steps": jnp.zeros((), jnp.int32), "terminated": zero, "truncation": zero, "rng": key}


def time_limit(
    info: dict[str, Any], terminated: jax.Array, max_episode_steps: int
) -> tuple[jax.Array, dict[str, Any]]:
    """Count a step; returns `done` and the updated `info` (termination wins over truncation)."""
    steps = info["steps"] + 1
    terminated = terminated.astype(jnp.float32)
    truncation = jnp.where(steps >= max_episode_steps, 1.0 - terminated, 0.0)
    info = {**info, "steps": steps, "terminated": terminated, "truncation": truncation}
    return jnp.maximum(terminated, truncation), info
