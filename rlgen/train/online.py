"""Online training: ``jit(vmap(chunk))`` over seeds, each chunk a ``lax.scan`` over K blocks.

A block is one vectorised env step -> buffer add -> (U, B) sample -> agent update (U critic
updates then an actor update, inside the agent). Within a chunk the seed's replay buffer is only
read: new rows go to a small staging buffer that batches sample together with it (uniformly over
both) and that is appended to the replay buffer once, at the chunk's end. Writing each row into
the big buffer inside the loop made XLA:CPU copy it at every block (14.8 vs 7.0 ms per SAC block
with a 1M-row buffer on 2 cores), since it fuses the write into the read of the same step.
Batches come from the seed's own rows or, for fine-tuning and generative replay, from extra
sources (an offline dataset shared by all seeds, a synthetic buffer) mixed at fixed per-batch
counts. The warm-up (random or
policy-driven collection) is its own compiled phase. Everything here is a pure function of a
:class:`RunState`; the host loops live in :mod:`rlgen.train.runner` and
:mod:`rlgen.train.finetune`.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from rlgen.agents.common import Agent
from rlgen.data import episodes, replay
from rlgen.data.episodes import EpisodeLog
from rlgen.data.mixer import sample_mixed, sample_union
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
    reward_scale: float = 1.0  # stored reward = reward_scale * env reward
    mc_returns: bool = False  # add whole episodes with their MC returns (Cal-QL fine-tuning)
    gamma: float = 0.99  # discount of those returns
    max_episode_steps: int = 1000

    def __post_init__(self):
        for name in ("num_envs", "utd", "batch_size", "buffer_size", "max_episode_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.mc_returns and self.buffer_size < self.num_envs * self.max_episode_steps:
            raise ValueError(
                f"buffer_size ({self.buffer_size}) must hold a whole episode of every env "
                f"(num_envs * max_episode_steps = {self.num_envs * self.max_episode_steps}) "
                "for MC returns"
            )


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
    episodes: EpisodeLog | None = None  # with ``LoopConfig.mc_returns``
    synthetic: ReplayBuffer | None = None  # generated transitions (SynthER, EDIS), per seed
    energies: object | None = None  # EDIS energy models, trained on across refits
    updates: jax.Array | None = None  # offline (pretraining) updates done


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
        episodes=(
            episodes.init(
                config.num_envs,
                config.max_episode_steps,
                config.gamma,
                agent.obs_dim,
                agent.action_dim,
            )
            if config.mc_returns
            else None
        ),
        updates=jnp.zeros((), jnp.int32),
    )


def staging_buffer(run: RunState, num_blocks: int) -> ReplayBuffer:
    """An empty buffer for the rows ``num_blocks`` env steps of ``run`` add (with an episode log,
    also those of the episodes in progress when they start, which may end inside them)."""
    num_envs = run.episode_return.shape[0]
    rows = num_blocks * num_envs
    if run.episodes is not None:
        rows += run.episodes.steps.reward.size
    obs_dim, action_dim = run.buffer.data.obs.shape[-1], run.buffer.data.action.shape[-1]
    return replay.init(rows, obs_dim, action_dim)


def collecting(run: RunState, num_blocks: int, body):
    """Scan ``body(run, staging) -> (run, staging, out)`` over ``num_blocks`` blocks with a fresh
    staging buffer, then append the staged rows to ``run.buffer``. Returns (run, stacked out)."""
    staging = staging_buffer(run, num_blocks)
    if staging.capacity > run.buffer.capacity:
        raise ValueError(
            f"a chunk adds up to {staging.capacity} rows but the replay buffer holds "
            f"{run.buffer.capacity}: raise buffer_size or lower chunk"
        )

    def step(carry, _):
        run, staging, out = body(*carry)
        return (run, staging), out

    (run, staging), out = jax.lax.scan(step, (run, staging), None, length=num_blocks)
    return run.replace(buffer=replay.extend(run.buffer, staging)), out


def env_step(
    run: RunState,
    staging: ReplayBuffer,
    env: AutoReset,
    action: jax.Array,
    reward_scale: float = 1.0,
) -> tuple[RunState, ReplayBuffer, Transition]:
    """Step every env of one seed, stage the transitions, track episode returns.

    With an episode log in ``run``, transitions are staged when their episode ends, with its
    Monte-Carlo returns; otherwise at once.
    """
    nxt = env.step(run.env, action)
    reward = reward_scale * nxt.reward
    transition = Transition(
        obs=run.env.obs,
        action=action,
        reward=reward,
        next_obs=nxt.info["final_obs"],
        terminal=nxt.info["terminated"],
        truncated=nxt.info["truncation"],
        mc_return=jnp.zeros_like(reward),
    )
    ep_return = run.episode_return + nxt.reward
    done = nxt.done > 0
    if run.episodes is None:
        staging, log = replay.add(staging, transition), None
    else:
        log, staging = episodes.record(run.episodes, staging, transition, nxt.done)
    run = run.replace(
        episodes=log,
        env=nxt,
        env_steps=run.env_steps + action.shape[0],
        episode_return=jnp.where(done, 0.0, ep_return),
        finished_return_sum=run.finished_return_sum + jnp.sum(jnp.where(done, ep_return, 0.0)),
        finished_count=run.finished_count + jnp.sum(done),
    )
    return run, staging, transition


def warmup_chunk(
    run: RunState,
    env: AutoReset,
    num_blocks: int,
    agent: Agent | None = None,
    reward_scale: float = 1.0,
) -> RunState:
    """``num_blocks`` env steps without updates: uniform random actions, or the ``agent``'s
    sampled actions (collection with a pretrained policy before fine-tuning)."""

    def block(run, staging):
        key, k_act = jax.random.split(run.key)
        if agent is None:
            shape = (run.episode_return.shape[0], env.action_size)
            action = jax.random.uniform(k_act, shape, minval=-1.0, maxval=1.0)
        else:
            action = agent.act(run.agent, run.env.obs, k_act, False)
        run, staging, _ = env_step(run.replace(key=key), staging, env, action, reward_scale)
        return run, staging, None

    return collecting(run, num_blocks, block)[0]


def train_chunk(
    run: RunState,
    agent: Agent,
    env: AutoReset,
    config: LoopConfig,
    num_blocks: int,
    sources: tuple[ReplayBuffer, ...] = (),
    counts: tuple[int, ...] = (),
) -> tuple[RunState, dict]:
    """``num_blocks`` blocks of env step -> add -> sample (U, B) -> update; mean metrics.

    Batches are uniform over the seed's own rows (its buffer and this chunk's staged rows)
    unless there are extra sources: the shared ``sources`` and then the seed's ``run.synthetic``
    buffer when it has one. Then each batch holds ``counts[i]`` rows of source i, in that order,
    and ``counts[-1]`` of the seed's own rows; while the synthetic buffer is empty (before the
    generator's first fit) its share comes from the seed's own rows too, as SynthER's code
    trains on real data until then. With no ``counts`` (and no synthetic buffer),
    batches are uniform over the union of ``sources`` and the seed's own rows (IQL's
    fine-tuning, which appends online rows to the offline dataset).
    """
    num_sources = len(sources) + (run.synthetic is not None)
    union = bool(sources) and not counts and run.synthetic is None
    if num_sources and not union and len(counts) != num_sources + 1:
        raise ValueError(
            f"need one count per source ({num_sources}) plus the online buffer, got {counts}"
        )

    def block(run, staging):
        key, k_act, k_sample, k_update = jax.random.split(run.key, 4)
        action = agent.act(run.agent, run.env.obs, k_act, False)
        run, staging, _ = env_step(run.replace(key=key), staging, env, action, config.reward_scale)
        own = (run.buffer, staging)
        if union:
            batches = sample_union((*sources, *own), k_sample, config.batch_size, config.utd)
        elif num_sources:
            synthetic = () if run.synthetic is None else (run.synthetic,)
            mix = (*sources, *synthetic, own)
            batches = sample_mixed(mix, counts, k_sample, config.utd)
            if run.synthetic is not None:
                batches = own_rows_while_empty(batches, run.synthetic, own, counts, k_sample)
        else:
            batches = sample_union(own, k_sample, config.batch_size, config.utd)
        agent_state, metrics = agent.update(run.agent, batches, k_update)
        return run.replace(agent=agent_state), staging, metrics

    run, metrics = collecting(run, num_blocks, block)
    return run, jax.tree.map(jnp.mean, metrics)


def own_rows_while_empty(
    batches: Transition,
    synthetic: ReplayBuffer,
    own: tuple[ReplayBuffer, ...],
    counts: tuple[int, ...],
    key: jax.Array,
) -> Transition:
    """(U, B) ``batches`` whose synthetic slice (the second-to-last source's rows) is redrawn
    from the seed's ``own`` rows while the ``synthetic`` buffer holds none."""
    start, count = sum(counts[:-2]), counts[-2]
    if count == 0:
        return batches
    num_batches = batches.reward.shape[0]
    real = sample_union(own, jax.random.fold_in(key, 1), count, num_batches)
    empty = synthetic.size == 0

    def place(x, r):
        rows = slice(start, start + count)
        return x.at[:, rows].set(jnp.where(empty, r, x[:, rows]))

    return jax.tree.map(place, batches, real)


def episode_metrics(run: RunState, metrics: dict) -> tuple[RunState, dict]:
    """Add the mean return and count of episodes finished since the last call; reset them."""
    count = run.finished_count
    metrics = {
        **metrics,
        "train_return": run.finished_return_sum / jnp.maximum(count, 1),
        "episodes": count.astype(jnp.float32),
    }
    run = run.replace(
        finished_return_sum=jnp.zeros_like(run.finished_return_sum),
        finished_count=jnp.zeros_like(count),
    )
    return run, metrics


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
