"""Trajectory boundaries and Monte-Carlo returns-to-go (Cal-QL's V_mu) for flat datasets."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def episode_ends(
    terminals: jax.Array,
    timeouts: jax.Array,
    observations: jax.Array | None = None,
    next_observations: jax.Array | None = None,
    atol: float = 1e-6,
) -> jax.Array:
    """Boolean mask marking the last transition of every trajectory in a flat dataset.

    A trajectory ends at a terminal, at a timeout, where the next row does not continue it
    (``next_observations[t] != observations[t+1]``, when both are given), and at the last row.
    """
    ends = (jnp.asarray(terminals) > 0.5) | (jnp.asarray(timeouts) > 0.5)
    if observations is not None and next_observations is not None:
        obs = jnp.asarray(observations)
        jump = jnp.any(jnp.abs(jnp.asarray(next_observations)[:-1] - obs[1:]) > atol, axis=-1)
        ends = ends | jnp.concatenate([jump, jnp.zeros((1,), bool)])
    return ends.at[-1].set(True)


def trajectory_ids(ends: jax.Array) -> jax.Array:
    """Integer id (0, 1, ...) of the trajectory each row belongs to, given ``episode_ends``."""
    ends = jnp.asarray(ends).astype(jnp.int32)
    return jnp.cumsum(ends) - ends


@jax.jit(static_argnames=("failure_reward",))
def returns_to_go(
    rewards: jax.Array,
    terminals: jax.Array,
    ends: jax.Array,
    gamma: float,
    failure_reward: float | None = None,
) -> jax.Array:
    """Discounted return-to-go G_t = r_t + gamma * G_{t+1} * (1 - terminal_t) per trajectory.

    The recursion restarts at every trajectory end (``ends``, from :func:`episode_ends`); a
    trajectory cut by a timeout sums only the rewards it has. With ``failure_reward`` set
    (sparse-reward tasks), a trajectory whose rewards all equal it gets
    ``failure_reward / (1 - gamma)`` at every step, the value of failing forever.
    """
    rewards = jnp.asarray(rewards, jnp.float32)
    stop = (jnp.asarray(terminals) > 0.5) | (jnp.asarray(ends) > 0.5)
    discount = gamma * (1.0 - stop.astype(jnp.float32))

    def backward(next_return, step):
        reward, disc = step
        value = reward + disc * next_return
        return value, value

    _, rtg = jax.lax.scan(backward, jnp.zeros((), jnp.float32), (rewards, discount), reverse=True)
    if failure_reward is None:
        return rtg
    ids = trajectory_ids(ends)
    n = rewards.shape[0]
    is_fail = (rewards == failure_reward).astype(jnp.int32)
    all_fail = jax.ops.segment_min(is_fail, ids, num_segments=n)[ids] > 0
    return jnp.where(all_fail, failure_reward / (1.0 - gamma), rtg)
