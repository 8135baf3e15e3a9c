"""Online episodes held back until they end, then added to the replay buffer with their
Monte-Carlo returns.

Cal-QL keeps calibration on during fine-tuning, so online rows need the discounted
return-to-go of their episode, which is known only once the episode ends. As in the official
Cal-QL code (which adds a trajectory to its replay buffer when it ends), an
:class:`EpisodeLog` holds, per env, the transitions of the episode in progress; when the
episode ends its returns are computed in one parallel scan and the whole episode is appended to
the buffer. No row with an unknown return ever reaches a batch. The cost per step is
O(num_envs * max_steps) elementwise work, with no Python control flow.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from rlgen.data.replay import ReplayBuffer
from rlgen.data.transition import Transition

UNKNOWN_RETURN = -jnp.inf  # mc_return of generated rows: the bound max(Q, -inf) leaves Q alone


@flax.struct.dataclass
class EpisodeLog:
    """Per env, the transitions of the episode in progress."""

    steps: Transition  # (num_envs, max_steps, ...); rows past ``length`` are stale
    length: jax.Array  # (num_envs,) int32 steps so far
    gamma: jax.Array  # float32 scalar discount of the returns


def init(num_envs: int, max_steps: int, gamma: float, obs_dim: int, action_dim: int) -> EpisodeLog:
    """An empty log for ``num_envs`` envs whose episodes last at most ``max_steps`` steps."""
    if num_envs <= 0 or max_steps <= 0:
        raise ValueError(f"num_envs and max_steps must be positive, got {num_envs}, {max_steps}")
    return EpisodeLog(
        steps=Transition.zeros(obs_dim, action_dim, (num_envs, max_steps)),
        length=jnp.zeros((num_envs,), jnp.int32),
        gamma=jnp.asarray(gamma, jnp.float32),
    )


def discounted_returns(rewards: jax.Array, gamma: jax.Array) -> jax.Array:
    """G_t = sum_{k >= t} gamma^(k-t) r_k along the last axis, as a parallel (log-depth) scan.

    Each step is the affine map G -> r_t + gamma G; composing them from the end gives G_t.
    """
    scale = jnp.broadcast_to(jnp.asarray(gamma, rewards.dtype), rewards.shape)

    def compose(later, earlier):  # earlier ∘ later
        a_later, b_later = later
        a_earlier, b_earlier = earlier
        return a_earlier * a_later, b_earlier + a_earlier * b_later

    _, returns = jax.lax.associative_scan(
        compose, (scale, rewards), reverse=True, axis=rewards.ndim - 1
    )
    return returns


def record(
    log: EpisodeLog, buffer: ReplayBuffer, transition: Transition, done: jax.Array
) -> tuple[EpisodeLog, ReplayBuffer]:
    """Log one (num_envs,) step; append every episode that ends with it (``done``) to the buffer,
    each contiguous, with its discounted returns as ``mc_return``, and start those envs afresh.

    The buffer must hold ``num_envs * max_steps`` rows (a step can end every env's episode).
    """
    num_envs, max_steps = log.length.shape[0], log.steps.reward.shape[1]
    env = jnp.arange(num_envs)
    t = jnp.minimum(log.length, max_steps - 1)
    steps = jax.tree.map(lambda s, x: s.at[env, t].set(x.astype(s.dtype)), log.steps, transition)
    length = log.length + 1
    done = done > 0
    counts = jnp.where(done, length, 0)
    offsets = jnp.cumsum(counts) - counts  # where each finished episode starts in the append
    slot = jnp.arange(max_steps)
    finished = slot < counts[:, None]
    capacity = buffer.capacity
    idx = jnp.where(finished, (buffer.insert_pos + offsets[:, None] + slot) % capacity, capacity)
    current = jnp.where(slot < length[:, None], steps.reward, 0.0)  # no stale rewards
    rows = steps.replace(mc_return=discounted_returns(current, log.gamma))
    data = jax.tree.map(
        lambda store, new: store.at[idx.ravel()].set(
            new.reshape(-1, *store.shape[1:]), mode="drop"
        ),
        buffer.data,
        rows,
    )
    added = counts.sum()
    buffer = ReplayBuffer(
        data=data,
        insert_pos=(buffer.insert_pos + added) % capacity,
        size=jnp.minimum(buffer.size + added, capacity),
    )
    log = log.replace(steps=steps, length=jnp.where(done, 0, length))
    return log, buffer
