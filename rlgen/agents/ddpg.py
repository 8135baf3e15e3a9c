"""DDPG (Lillicrap et al. 2016), the smallest complete algorithm on :mod:`rlgen.agents.core`:
Q(s, a) regresses onto r + gamma (1 - terminal) Q_target(s', pi_target(s')), the actor ascends
Q(s, pi(s)), both targets follow by Polyak averaging; acting adds N(0, expl_noise^2) noise."""

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp

from rlgen import nets
from rlgen.agents import core
from rlgen.agents.common import Agent, check_sizes, float_hparams, polyak


@dataclasses.dataclass(frozen=True)
class Config:
    obs_dim: int
    action_dim: int
    hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self):
        check_sizes(self)


@flax.struct.dataclass
class HParams:
    actor_lr: jax.Array = 1e-4
    critic_lr: jax.Array = 1e-3
    gamma: jax.Array = 0.99
    tau: jax.Array = 5e-3
    expl_noise: jax.Array = 0.1


def networks(config: Config) -> tuple[nets.DeterministicPolicy, nets.QEnsemble]:
    hidden = config.hidden
    return nets.DeterministicPolicy(config.action_dim, hidden), nets.QEnsemble(hidden, 1)


def init(key: jax.Array, config: Config, hp: HParams | None = None) -> core.DeterministicState:
    pi, q = core.actor_critic_params(key, *networks(config), config.obs_dim, config.action_dim)
    return core.DeterministicState.create(pi, q, float_hparams(HParams, hp))


def act(config: Config, state, obs: jax.Array, key: jax.Array, deterministic=False):
    action = networks(config)[0].apply(state.actor.params, obs)
    noise = 0.0 if deterministic else state.hp.expl_noise * jax.random.normal(key, action.shape)
    return jnp.clip(action + noise, -1.0, 1.0)


def update_step(config: Config, state, batch, key=None):
    actor, critic = networks(config)
    next_action = actor.apply(state.target_actor, batch.next_obs)
    next_q = critic.apply(state.target_critic, batch.next_obs, next_action)[0]
    target = batch.reward + state.hp.gamma * (1.0 - batch.terminal) * next_q

    def critic_loss(params):
        loss = core.td_loss(critic.apply(params, batch.obs, batch.action), target)
        return loss, {"td_loss": loss}

    def actor_loss(params, critic_params):
        q = critic.apply(critic_params, batch.obs, actor.apply(params, batch.obs))[0]
        return -q.mean(), {"q_pi": q.mean()}

    state, critic_metrics = core.critic_step(state, critic_loss)
    on_new_critic = functools.partial(actor_loss, critic_params=state.critic.params)  # as TD3
    pi, actor_metrics = core.descend(state.actor, on_new_critic, state.hp.actor_lr)
    target_actor = polyak(state.target_actor, pi.params, state.hp.tau)
    state = state.replace(actor=pi, target_actor=target_actor, step=state.step + 1)
    return state, {**critic_metrics, **actor_metrics}


def update(config: Config, state, batches, key: jax.Array | None = None):
    step = functools.partial(update_step, config)
    return core.scan(step, state, core.as_stack(config, batches), None)


def make_agent(config: Config, hp: HParams | None = None) -> Agent:
    return core.agent("ddpg", config, hp, init, update, act)
