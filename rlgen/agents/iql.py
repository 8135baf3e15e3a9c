"""IQL (implicit Q-learning, Kostrikov et al. 2022).

Three losses, applied in this order on each batch (as the reference code):
- value: expectile regression of V(s) onto min_k Q_target(s, a) with expectile ``expectile``;
- actor: advantage-weighted regression, -E[min(exp(beta (min_k Q_target(s, a) - V(s))), 100)
  log pi(a|s)] over dataset actions;
- critic: Q_k(s, a) onto r + gamma (1 - terminal) V(s'), then a Polyak target update.

The policy is the reference's (``nets.GaussianPolicy``): a Gaussian with mean tanh(MLP(s)) and
a learned state-independent log-std, so log pi(a|s) is of the raw dataset action (finite at the
bounds +-1). The greedy action is the mean; sampled actions are clipped to [-1, 1], as the
reference does before stepping the env and storing the transition.

The actor lr can cosine-decay to 0 over ``Config.actor_decay_steps`` updates (the reference's
offline default); setting ``HParams.actor_lr_decay`` to 0 restores the base lr, e.g. online
after pretraining with the decay.

``update`` takes a (B,) batch or a (U, B) stack, scanning U full IQL steps.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import flax.struct
import jax
import jax.numpy as jnp

from rlgen import nets
from rlgen.agents import core
from rlgen.agents.common import Agent, Optimized, check_sizes, float_hparams
from rlgen.data.transition import Transition


@dataclasses.dataclass(frozen=True)
class Config:
    """Static IQL settings (shapes and architecture)."""

    obs_dim: int
    action_dim: int
    hidden: tuple[int, ...] = (256, 256)
    num_critics: int = 2
    layer_norm: bool = False  # on critic and value hidden layers
    actor_decay_steps: int = 0  # > 0: cosine-decay the actor lr to 0 over this many updates
    # the policy's initial log-std: 0 as the reference; d3rlpy's sigmoid-bounded one starts at -1.5
    log_std_init: float = 0.0
    initializer: str = "orthogonal"  # every layer's (nets.dense_init): the reference code's

    def __post_init__(self):
        check_sizes(self, "num_critics")
        nets.check_initializer(self.initializer)
        if self.actor_decay_steps < 0:
            raise ValueError(f"actor_decay_steps must be >= 0, got {self.actor_decay_steps}")


@flax.struct.dataclass
class HParams:
    """Hyperparameters a sweep may vmap over (defaults: the IQL paper, locomotion)."""

    actor_lr: jax.Array = 3e-4
    critic_lr: jax.Array = 3e-4
    value_lr: jax.Array = 3e-4
    gamma: jax.Array = 0.99
    tau: jax.Array = 5e-3
    expectile: jax.Array = 0.7  # AntMaze: 0.9
    beta: jax.Array = 3.0  # inverse temperature of the advantage weights; AntMaze: 10
    max_weight: jax.Array = 100.0
    actor_lr_decay: jax.Array = 1.0  # 1: apply Config.actor_decay_steps; 0: the base actor lr


@flax.struct.dataclass
class State:
    actor: Optimized
    critic: Optimized
    target_critic: dict
    value: Optimized
    hp: HParams
    step: jax.Array


def networks(config: Config) -> tuple[nets.GaussianPolicy, nets.QEnsemble, nets.ValueNet]:
    actor = nets.GaussianPolicy(
        config.action_dim,
        config.hidden,
        log_std_init=config.log_std_init,
        initializer=config.initializer,
    )
    critic = nets.QEnsemble(
        config.hidden, config.num_critics, config.layer_norm, initializer=config.initializer
    )
    value = nets.ValueNet(config.hidden, config.layer_norm, initializer=config.initializer)
    return actor, critic, value


def init(key: jax.Array, config: Config, hp: HParams | None = None) -> State:
    hp = float_hparams(HParams, hp)
    actor, critic, value = networks(config)
    k_actor_critic, k_value = jax.random.split(key)
    actor_params, critic_params = core.actor_critic_params(
        k_actor_critic, actor, critic, config.obs_dim, config.action_dim
    )
    return State(
        actor=Optimized.create(actor_params),
        critic=Optimized.create(critic_params),
        target_critic=critic_params,
        value=Optimized.create(value.init(k_value, jnp.zeros((1, config.obs_dim)))),
        hp=hp,
        step=jnp.zeros((), jnp.int32),
    )


def act(config: Config, state: State, obs: jax.Array, key: jax.Array, deterministic: bool = False):
    """Actions for a batch of observations: the mean when ``deterministic``, else a Gaussian
    sample clipped to [-1, 1]."""
    mean, log_std = networks(config)[0].apply(state.actor.params, obs)
    if deterministic:
        return mean
    noise = jax.random.normal(key, mean.shape, mean.dtype)
    return jnp.clip(mean + jnp.exp(log_std) * noise, -1.0, 1.0)


def expectile_loss(diff: jax.Array, expectile: jax.Array) -> jax.Array:
    """mean |expectile - 1(diff < 0)| diff^2, with diff = Q - V."""
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff**2).mean()


def advantage_weights(adv: jax.Array, beta: jax.Array, max_weight: jax.Array) -> jax.Array:
    """min(exp(beta * A), max_weight) (an overflow to inf is clipped too)."""
    return jnp.minimum(jnp.exp(beta * adv), max_weight)


def value_loss(config: Config, value_params, state: State, batch: Transition):
    """Expectile regression of V(s) onto min_k Q_target(s, a)."""
    _, critic, value = networks(config)
    q = critic.apply(state.target_critic, batch.obs, batch.action).min(axis=0)
    v = value.apply(value_params, batch.obs)
    loss = expectile_loss(q - v, state.hp.expectile)
    return loss, {"value_loss": loss, "v_mean": v.mean()}


def actor_lr(config: Config, state: State) -> jax.Array:
    """The actor lr at ``state.step``: cosine-decayed to 0 over ``actor_decay_steps`` updates
    (then 0) while ``hp.actor_lr_decay`` is 1; the base lr when it is 0 or there is no decay."""
    if config.actor_decay_steps == 0:
        return state.hp.actor_lr
    progress = jnp.minimum(state.step / config.actor_decay_steps, 1.0)
    cosine = 0.5 * (1.0 + jnp.cos(math.pi * progress))
    return state.hp.actor_lr * jnp.where(state.hp.actor_lr_decay > 0, cosine, 1.0)


def actor_loss(config: Config, actor_params, state: State, batch: Transition):
    """-E[w(s, a) log pi(a|s)] with clipped weights w = min(exp(beta A(s, a)), max_weight),
    log pi of the raw dataset actions."""
    actor, critic, value = networks(config)
    q = critic.apply(state.target_critic, batch.obs, batch.action).min(axis=0)
    adv = q - value.apply(state.value.params, batch.obs)
    weights = advantage_weights(adv, state.hp.beta, state.hp.max_weight)
    mean, log_std = actor.apply(actor_params, batch.obs)
    logp = nets.gaussian_log_prob(mean, log_std, batch.action)
    loss = -(weights * logp).mean()
    return loss, {"actor_loss": loss, "adv_mean": adv.mean(), "weight_mean": weights.mean()}


def q_target(config: Config, state: State, batch: Transition) -> jax.Array:
    """r + gamma (1 - terminal) V(s')."""
    next_v = networks(config)[2].apply(state.value.params, batch.next_obs)
    return batch.reward + state.hp.gamma * (1.0 - batch.terminal) * next_v


def critic_loss(config: Config, critic_params, batch: Transition, target: jax.Array):
    """Sum over critics of the mean squared error to ``target``."""
    q = networks(config)[1].apply(critic_params, batch.obs, batch.action)
    loss = core.td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def update_step(config: Config, state: State, batch: Transition, key=None):
    """One IQL step on a (B,) batch: value, actor, critic, then the target critic."""
    del key  # IQL is deterministic given the data
    value, v_metrics = core.descend(
        state.value, lambda p: value_loss(config, p, state, batch), state.hp.value_lr
    )
    state = state.replace(value=value)
    actor, a_metrics = core.descend(
        state.actor, lambda p: actor_loss(config, p, state, batch), actor_lr(config, state)
    )
    state = state.replace(actor=actor)
    target = q_target(config, state, batch)
    state, c_metrics = core.critic_step(state, lambda p: critic_loss(config, p, batch, target))
    return state.replace(step=state.step + 1), {**v_metrics, **a_metrics, **c_metrics}


def update(config: Config, state: State, batches: Transition, key: jax.Array | None = None):
    """IQL steps over a (B,) batch or a (U, B) stack (scanned); metrics of the last step.

    IQL is deterministic given the data; ``key`` is accepted for the common agent signature.
    """
    del key
    return core.scan(
        functools.partial(update_step, config), state, core.as_stack(config, batches), None
    )


def make_agent(config: Config, hp: HParams | None = None) -> Agent:
    """IQL as an :class:`Agent` for the runners."""
    return core.agent("iql", config, hp, init, update, act)
