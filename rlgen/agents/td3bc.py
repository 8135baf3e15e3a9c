"""TD3+BC (Fujimoto & Gu 2021), and plain TD3 with ``bc_weight = 0``.

Critic: Q_k(s, a) onto r + gamma (1 - terminal) min_k Q_target(s', a'), where a' is the target
actor's action plus clipped Gaussian noise (target policy smoothing). Every ``policy_freq``-th
critic step also updates the actor, with

    loss = -lambda * mean Q_1(s, pi(s)) + bc_weight * mean (pi(s) - a)^2,
    lambda = bc_alpha / mean |Q_1(s, pi(s))|  (detached),

and Polyak-updates both targets. With ``bc_weight = 0`` this is TD3 up to the positive
per-batch scale lambda, which Adam's normalisation nearly removes. The actor step is computed
on every critic step and kept only on actor steps (a mask, so seeds vmap without both-branch
``lax.cond``). The paper z-scores observations by the dataset's statistics: wrap the agent
with :func:`rlgen.agents.common.with_obs_normalizer` (``rlgen finetune td3bc`` does).

``update`` takes a (B,) batch or a (U, B) stack, scanning U critic steps; ``state.step``
counts critic steps, so the actor schedule carries over between calls.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp

from rlgen import nets
from rlgen.agents import core
from rlgen.agents.common import Agent, check_sizes, float_hparams, polyak
from rlgen.data.transition import Transition


@dataclasses.dataclass(frozen=True)
class Config:
    """Static TD3(+BC) settings (shapes, architecture, actor delay)."""

    obs_dim: int
    action_dim: int
    hidden: tuple[int, ...] = (256, 256)
    num_critics: int = 2
    critic_layer_norm: bool = False
    policy_freq: int = 2  # actor + target updates every this many critic steps
    # every layer's (nets.dense_init); the reference code's is PyTorch's ("torch")
    initializer: str = "lecun"

    def __post_init__(self):
        check_sizes(self, "num_critics", "policy_freq")
        nets.check_initializer(self.initializer)


@flax.struct.dataclass
class HParams:
    """Hyperparameters a sweep may vmap over (defaults: the TD3+BC paper)."""

    actor_lr: jax.Array = 3e-4
    critic_lr: jax.Array = 3e-4
    gamma: jax.Array = 0.99
    tau: jax.Array = 5e-3
    policy_noise: jax.Array = 0.2  # target smoothing noise std
    noise_clip: jax.Array = 0.5
    bc_alpha: jax.Array = 2.5
    bc_weight: jax.Array = 1.0  # 0: plain TD3 (online fine-tuning)
    expl_noise: jax.Array = 0.1  # exploration noise std in ``act``


State = core.DeterministicState


def networks(config: Config) -> tuple[nets.DeterministicPolicy, nets.QEnsemble]:
    actor = nets.DeterministicPolicy(
        config.action_dim, config.hidden, initializer=config.initializer
    )
    critic = nets.QEnsemble(
        config.hidden, config.num_critics, config.critic_layer_norm, initializer=config.initializer
    )
    return actor, critic


def init(key: jax.Array, config: Config, hp: HParams | None = None) -> State:
    actor_params, critic_params = core.actor_critic_params(
        key, *networks(config), config.obs_dim, config.action_dim
    )
    return State.create(actor_params, critic_params, float_hparams(HParams, hp))


def act(config: Config, state: State, obs: jax.Array, key: jax.Array, deterministic: bool = False):
    """pi(s), plus N(0, expl_noise^2) exploration noise clipped to [-1, 1] unless deterministic."""
    action = networks(config)[0].apply(state.actor.params, obs)
    if deterministic:
        return action
    noise = state.hp.expl_noise * jax.random.normal(key, action.shape)
    return jnp.clip(action + noise, -1.0, 1.0)


def smoothed_target_action(config: Config, state: State, next_obs: jax.Array, key: jax.Array):
    """clip(pi_target(s') + clip(N(0, policy_noise^2), -noise_clip, noise_clip), -1, 1)."""
    action = networks(config)[0].apply(state.target_actor, next_obs)
    noise = state.hp.policy_noise * jax.random.normal(key, action.shape)
    noise = jnp.clip(noise, -state.hp.noise_clip, state.hp.noise_clip)
    return jnp.clip(action + noise, -1.0, 1.0)


def td_target(config: Config, state: State, batch: Transition, key: jax.Array) -> jax.Array:
    """r + gamma (1 - terminal) min_k Q_target(s', a') with the smoothed target action a'."""
    next_action = smoothed_target_action(config, state, batch.next_obs, key)
    next_q = networks(config)[1].apply(state.target_critic, batch.next_obs, next_action)
    return batch.reward + state.hp.gamma * (1.0 - batch.terminal) * next_q.min(axis=0)


def critic_loss(config: Config, critic_params, batch: Transition, target: jax.Array):
    """Sum over critics of the mean squared TD error."""
    q = networks(config)[1].apply(critic_params, batch.obs, batch.action)
    loss = core.td_loss(q, target)
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(config: Config, actor_params, critic_params, hp: HParams, batch: Transition):
    """-lambda mean Q_1(s, pi(s)) + bc_weight mean (pi(s) - a)^2, lambda = bc_alpha / mean|Q_1|."""
    actor, critic = networks(config)
    action = actor.apply(actor_params, batch.obs)
    q = critic.apply(critic_params, batch.obs, action)[0]
    lam = hp.bc_alpha / jax.lax.stop_gradient(jnp.abs(q).mean())
    bc = ((action - batch.action) ** 2).mean()
    loss = -lam * q.mean() + hp.bc_weight * bc
    return loss, {"actor_loss": loss, "bc_loss": bc, "lambda": lam}


def update_step(config: Config, state: State, batch: Transition, key: jax.Array):
    """One critic step on a (B,) batch; every ``policy_freq``-th also the actor and targets."""
    target = jax.lax.stop_gradient(td_target(config, state, batch, key))
    critic, metrics = core.descend(
        state.critic, lambda p: critic_loss(config, p, batch, target), state.hp.critic_lr
    )
    step = state.step + 1

    actor, actor_metrics = core.descend(
        state.actor,
        lambda p: actor_loss(config, p, critic.params, state.hp, batch),
        state.hp.actor_lr,
    )
    delayed = (actor, polyak(state.target_actor, actor.params, state.hp.tau))
    delayed += (polyak(state.target_critic, critic.params, state.hp.tau),)
    unchanged = (state.actor, state.target_actor, state.target_critic)
    is_actor_step = step % config.policy_freq == 0
    actor, target_actor, target_critic = jax.tree.map(
        lambda new, old: jnp.where(is_actor_step, new, old), delayed, unchanged
    )
    state = state.replace(
        actor=actor,
        critic=critic,
        target_actor=target_actor,
        target_critic=target_critic,
        step=step,
    )
    return state, {**metrics, **actor_metrics, "actor_updated": is_actor_step}


def update(config: Config, state: State, batches: Transition, key: jax.Array):
    """TD3 steps over a (B,) batch or a (U, B) stack (scanned); metrics of the last step."""
    return core.scan(
        functools.partial(update_step, config), state, core.as_stack(config, batches), key
    )


def make_agent(config: Config, hp: HParams | None = None) -> Agent:
    """TD3+BC (or TD3 with ``bc_weight=0``) as an :class:`Agent` for the runners."""
    return core.agent("td3bc", config, hp, init, update, act)
