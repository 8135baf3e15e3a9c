"""SAC with a critic ensemble (REDQ-style subset-min targets), automatic temperature, any UTD.

``update`` takes a (U, B) stack of batches: U critic updates run as one ``lax.scan``, then one
actor + temperature update on the last batch (:func:`rlgen.agents.core.critics_then_actor`).
With ``num_critics=2, target_subset=2`` this is plain SAC; ``num_critics=10, target_subset=2``
is the REDQ-style ensemble used at high UTD.
"""

from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

from rlgen import nets
from rlgen.agents import core
from rlgen.agents.common import Agent, Optimized, check_sizes, float_hparams
from rlgen.data.transition import Transition


@dataclasses.dataclass(frozen=True)
class Config:
    """Static SAC settings (shapes and architecture)."""

    obs_dim: int
    action_dim: int
    hidden: tuple[int, ...] = (256, 256)
    num_critics: int = 2
    target_subset: int = 2  # members in the random min for the target
    critic_layer_norm: bool = False
    actor_q: str = "min"  # how the actor aggregates the ensemble: "min" or "mean" (REDQ)

    def __post_init__(self):
        check_sizes(self)
        if not 1 <= self.target_subset <= self.num_critics:
            raise ValueError(
                f"target_subset must be in [1, num_critics={self.num_critics}], "
                f"got {self.target_subset}"
            )
        if self.actor_q not in ("min", "mean"):
            raise ValueError(f"actor_q must be 'min' or 'mean', got {self.actor_q!r}")


@flax.struct.dataclass
class HParams:
    """Hyperparameters a sweep may vmap over."""

    actor_lr: jax.Array = 3e-4
    critic_lr: jax.Array = 3e-4
    alpha_lr: jax.Array = 3e-4
    gamma: jax.Array = 0.99
    tau: jax.Array = 5e-3
    init_alpha: jax.Array = 1.0
    target_entropy_scale: jax.Array = 1.0  # target entropy = -scale * action_dim


@flax.struct.dataclass
class State:
    actor: Optimized
    critic: Optimized
    target_critic: dict
    log_alpha: Optimized
    hp: HParams
    step: jax.Array


def networks(config: Config) -> tuple[nets.TanhGaussianPolicy, nets.QEnsemble]:
    actor = nets.TanhGaussianPolicy(config.action_dim, config.hidden)
    critic = nets.QEnsemble(config.hidden, config.num_critics, config.critic_layer_norm)
    return actor, critic


def init(key: jax.Array, config: Config, hp: HParams | None = None) -> State:
    hp = float_hparams(HParams, hp)
    actor_params, critic_params = core.actor_critic_params(
        key, *networks(config), config.obs_dim, config.action_dim
    )
    return State(
        actor=Optimized.create(actor_params),
        critic=Optimized.create(critic_params),
        target_critic=critic_params,
        log_alpha=Optimized.create(jnp.log(hp.init_alpha)),
        hp=hp,
        step=jnp.zeros((), jnp.int32),
    )


def sample_action(config: Config, actor_params, obs: jax.Array, key: jax.Array):
    """(action, log pi(action|obs)) with the reparameterisation trick."""
    return core.sample_tanh_gaussian(networks(config)[0], actor_params, obs, key)


def act(config: Config, state: State, obs: jax.Array, key: jax.Array, deterministic: bool = False):
    """Actions for a batch of observations: sampled, or tanh(mean) when ``deterministic``."""
    return core.act_tanh_gaussian(networks(config)[0], state.actor.params, obs, key, deterministic)


def target_members(config: Config, target_critic, key: jax.Array):
    """The target critic restricted to a random subset of ``target_subset`` members (drawn
    without replacement), as (module, params); the whole ensemble when the subset is all of it,
    so the target evaluates only the members whose min it takes."""
    critic = networks(config)[1]
    if config.target_subset == config.num_critics:
        return critic, target_critic
    members = jax.random.permutation(key, config.num_critics)[: config.target_subset]
    subset = jax.tree.map(lambda p: p[members], target_critic)
    return critic.clone(num_members=config.target_subset), subset


def td_target(config: Config, state: State, batch: Transition, key: jax.Array) -> jax.Array:
    """r + gamma (1 - terminal) (min_subset Q_target(s', a') - alpha log pi(a'|s')), a' ~ pi."""
    k_action, k_subset = jax.random.split(key)
    next_action, next_logp = sample_action(config, state.actor.params, batch.next_obs, k_action)
    critic, params = target_members(config, state.target_critic, k_subset)
    next_v = critic.apply(params, batch.next_obs, next_action).min(axis=0)
    next_v = next_v - jnp.exp(state.log_alpha.params) * next_logp
    return batch.reward + state.hp.gamma * (1.0 - batch.terminal) * next_v


def critic_loss(config: Config, critic_params, batch: Transition, target: jax.Array):
    """Sum over members of the mean squared TD error."""
    q = networks(config)[1].apply(critic_params, batch.obs, batch.action)
    loss = core.td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(config: Config, actor_params, critic_params, log_alpha, batch, key):
    """E[alpha log pi(a|s) - Q(s, a)], a ~ pi, Q aggregated over members by ``actor_q``."""
    action, logp = sample_action(config, actor_params, batch.obs, key)
    q = networks(config)[1].apply(critic_params, batch.obs, action)
    q = q.min(axis=0) if config.actor_q == "min" else q.mean(axis=0)
    return core.max_entropy_actor_loss(log_alpha, logp, q)


def update_critic(config: Config, state: State, batch: Transition, key: jax.Array):
    """One critic step on a (B,) batch, then a Polyak target update."""
    target = jax.lax.stop_gradient(td_target(config, state, batch, key))
    return core.critic_step(state, lambda p: critic_loss(config, p, batch, target))


def update_actor(config: Config, state: State, batch: Transition, key: jax.Array):
    """One actor step and one temperature step on a (B,) batch."""
    critic, log_alpha = state.critic.params, state.log_alpha.params
    loss = lambda p: actor_loss(config, p, critic, log_alpha, batch, key)  # noqa: E731
    return core.actor_and_temperature_step(state, loss, config.action_dim)


def update(config: Config, state: State, batches: Transition, key: jax.Array):
    """U critic updates (a scan over the leading axis of a (U, B) stack; a (B,) batch is U = 1),
    then one actor update on the last batch; the new state and metrics of the last steps."""
    return core.critics_then_actor(config, update_critic, update_actor, state, batches, key)


def make_agent(config: Config, hp: HParams | None = None) -> Agent:
    """SAC as an :class:`Agent` for the runners."""
    return core.agent("sac", config, hp, init, update, act)
