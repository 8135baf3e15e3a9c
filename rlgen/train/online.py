"""Online training: ``jit(vmap(chunk))`` over seeds, each chunk a ``lax.scan`` over K blocks.

A block is one vectorised env step -> buffer add -> (U, B) sample -> agent update (U critic
updates then an actor update, inside the agent). The random-action warm-up is its own compiled
phase. Everything here is a pure function of a :class:`RunState`; the host loop lives in
:mod:`rlgen.train.runner`.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from rlgen.agents.common import Agent
from rlgen.data import replay
from rlgen.data.replay import ReplayBuffer
from rlgen.data.transition import Transition
from rlgen.envs import AutoReset
from rlgen.envs.base import State as EnvState


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """Static sizes of the online loop (per seed)."""

    num_envs: int = 1
    utd: int = 1
    batch_size: int = 256
    buffer_size: int = 1_000_000

    def __post_init__(self):
        for name in ("num_envs", "utd", "batch_size", "buffer_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@flax.struct.dataclass
class RunState:
    """Everything one seed's run carries: resuming from it reproduces the run exactly."""

    agent: object
    buffer: ReplayBuffer
    env: EnvState
    key: jax.Array
    env_steps: jax.Array  # transitions collected by this seed
    episode_return: jax.Array  # (num_envs,) return of the episode in progress
    finished_return_sum: jax.Array  # sum / count of episodes finished since the last log
    finished_count: jax.Array


def init_run_state(key: jax.Array, agent: Agent, env: AutoReset, config: LoopConfig) -> RunState:
    k_agent, k_env, k_run = jax.random.split(key, 3)
    return RunState(
        agent=agent.init(k_agent),
        buffer=replay.init(config.buffer_size, agent.obs_dim, agent.action_dim),
        env=env.reset(jax.random.split(k_env, config.num_envs)),
        key=k_run,
        env_steps=jnp.zeros((), jnp.int32),
        episode_return=jnp.zeros((config.num_envs,), jnp.float32),
        finished_return_sum=jnp.zeros((), jnp.float32),
        finished_count=jnp.zeros((), jnp.int32),
    )


def env_step(run: RunState, env: AutoReset, action: jax.Array) -> tuple[RunState, Transition]:
    """Step every env of one seed, record the transitions, track episode returns."""
    nxt = env.step(run.env, action)
    transition = Transition(
        obs=run.env.obs,
        action=action,
        reward=nxt.reward,
        next_obs=nxt.info["final_obs"],
        terminal=nxt.info["terminated"],
        truncated=nxt.info["truncation"],
        mc_return=jnp.zeros_like(nxt.reward),
    )
    ep_return = run.episode_return + nxt.reward
    done = nxt.done > 0
    run = run.replace(
        buffer=replay.add(run.buffer, transition),
        env=nxt,
        env_steps=run.env_steps + action.shape[0],
        episode_return=jnp.where(done, 0.0, ep_return),
        finished_return_sum=run.finished_return_sum + jnp.sum(jnp.where(done, ep_return, 0.0)),
        finished_count=run.finished_count + jnp.sum(done),
    )
    return run, transition


def warmup_chunk(run: RunState, env: AutoReset, num_blocks: int) -> RunState:
    """``num_blocks`` env steps with uniform random actions, no updates."""

    def block(run, _):
        key, k_act = jax.random.split(run.key)
        shape = (run.episode_return.shape[0], env.action_size)
        action = jax.random.uniform(k_act, shape, minval=-1.0, maxval=1.0)
        run, _ = env_step(run.replace(key=key), env, action)
        return run, None

    run, _ = jax.lax.scan(block, run, None, length=num_blocks)
    return run


def train_chunk(
    run: RunState, agent: Agent, env: AutoReset, config: LoopConfig, num_blocks: int
) -> tuple[RunState, dict]:
    """``num_blocks`` blocks of env step -> add -> sample (U, B) -> update; mean metrics."""

    def block(run, _):
        key, k_act, k_sample, k_update = jax.random.split(run.key, 4)
        action = agent.act(run.agent, run.env.obs, k_act, False)
        run, _ = env_step(run.replace(key=key), env, action)
        batches = replay.sample(run.buffer, k_sample, config.batch_size, config.utd)
        agent_state, metrics = agent.update(run.agent, batches, k_update)
        return run.replace(agent=agent_state), metrics

    run, metrics = jax.lax.scan(block, run, None, length=num_blocks)
    return run, jax.tree.map(jnp.mean, metrics)


def evaluate(
    agent: Agent, agent_state, env, key: jax.Array, num_episodes: int, max_steps: int
) -> jax.Array:
    """Mean undiscounted return of ``num_episodes`` deterministic-policy episodes (one seed)."""
    state = jax.vmap(env.reset)(jax.random.split(key, num_episodes))

    def cond(carry):
        _, alive, _, t = carry
        return jnp.any(alive) & (t < max_steps)

    def body(carry):
        state, alive, total, t = carry
        action = agent.act(agent_state, state.obs, key, True)
        state = jax.vmap(env.step)(state, action)
        total = total + jnp.where(alive, state.reward, 0.0)
        return state, alive & (state.done == 0), total, t + 1

    alive = jnp.ones((num_episodes,), bool)
    carry = (state, alive, jnp.zeros((num_episodes,), jnp.float32), 0)
    _, _, total, _ = jax.lax.while_loop(cond, body, carry)
    return total.mean()
