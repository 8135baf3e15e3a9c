"""Online episodes held back until they end, then added to the replay buffer with their
Monte-Carlo returns.

Cal-QL keeps calibration on during fine-tuning, so online rows need the discounted
return-to-go of their episode, which is known only once the episode ends. As in the official
Cal-QL code (which adds a trajectory to its replay buffer when it ends), an
:class:`EpisodeLog` holds, per env, the transitions of the episode in progress; when the
episode ends its returns are computed in one parallel scan and the whole episode is appended to
the buffer. No row with an unknown return ever reaches a batch. Logging a step
costs O(num_envs) and the write-back O(num_envs * max_steps), on the steps where an episode
ends.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from rlgen.branching import cond_any
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
    The write-back runs only on steps where an episode ends (also under a vmap over seeds).
    """
    num_envs, max_steps = log.length.shape[0], log.steps.reward.shape[1]
    t = jnp.minimum(log.length, max_steps - 1)
    env = jnp.arange(num_envs)
    steps = jax.tree.map(lambda s, x: s.at[env, t].set(x.astype(s.dtype)), log.steps, transition)
    length = log.length + 1
    done = done > 0
    log = log.replace(steps=steps, length=length)
    buffer = cond_any(jnp.any(done), _append_finished, lambda ops: ops[-1], (log, done, buffer))
    return log.replace(length=jnp.where(done, 0, length)), buffer


def _append_finished(operands) -> ReplayBuffer:
    """The buffer with the logged episodes of the envs that are ``done`` appended (the buffer
    unchanged where none is)."""
    log, done, buffer = operands
    max_steps = log.steps.reward.shape[1]
    counts = jnp.where(done, log.length, 0)
    offsets = jnp.cumsum(counts) - counts  # where each finished episode starts in the append
    slot = jnp.arange(max_steps)
    finished = slot < counts[:, None]
    capacity = buffer.capacity
    idx = jnp.where(finished, (buffer.insert_pos + offsets[:, None] + slot) % capacity, capacity)
    current = jnp.where(slot < log.length[:, None], log.steps.reward, 0.0)  # no stale rewards
    rows = log.steps.replace(mc_return=discounted_returns(current, log.gamma))
    data = jax.tree.map(
        lambda store, new: store.at[idx.ravel()].set(
            new.reshape(-1, *store.shape[1:]), mode="drop"
        ),
        buffer.data,
        rows,
    )
    added = counts.sum()
    return ReplayBuffer(
        data=data,
        insert_pos=(buffer.insert_pos + added) % capacity,
        size=jnp.minimum(buffer.size + added, capacity),
    )
