"""SAC with a critic ensemble (REDQ-style subset-min targets), automatic temperature, any UTD.

``update`` takes a (U, B) stack of batches: U critic updates run as one ``lax.scan``, then one
actor + temperature update on the last batch. With ``num_critics=2, target_subset=2`` this is
plain SAC; ``num_critics=10, target_subset=2`` is the REDQ-style ensemble used at high UTD.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp

from rlgen import nets
from rlgen.agents.common import Agent, Optimized, adam_step, check_sizes, float_hparams, polyak
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
    actor, critic = networks(config)
    k_actor, k_critic = jax.random.split(key)
    obs = jnp.zeros((1, config.obs_dim))
    act = jnp.zeros((1, config.action_dim))
    actor_params = actor.init(k_actor, obs)
    critic_params = critic.init(k_critic, obs, act)
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
    actor, _ = networks(config)
    mean, log_std = actor.apply(actor_params, obs)
    return nets.tanh_gaussian_sample(key, mean, log_std)


def act(config: Config, state: State, obs: jax.Array, key: jax.Array, deterministic: bool = False):
    """Actions for a batch of observations: sampled, or tanh(mean) when ``deterministic``."""
    if deterministic:
        mean, _ = networks(config)[0].apply(state.actor.params, obs)
        return jnp.tanh(mean)
    return sample_action(config, state.actor.params, obs, key)[0]


def subset_min(q: jax.Array, key: jax.Array, subset: int) -> jax.Array:
    """Min over a random subset of ``subset`` ensemble members (axis 0) without replacement."""
    members = jax.random.permutation(key, q.shape[0])[:subset]
    return q[members].min(axis=0)


def td_target(config: Config, state: State, batch: Transition, key: jax.Array) -> jax.Array:
    """r + gamma (1 - terminal) (min_subset Q_target(s', a') - alpha log pi(a'|s')), a' ~ pi."""
    k_action, k_subset = jax.random.split(key)
    next_action, next_logp = sample_action(config, state.actor.params, batch.next_obs, k_action)
    _, critic = networks(config)
    next_q = critic.apply(state.target_critic, batch.next_obs, next_action)
    next_v = subset_min(next_q, k_subset, config.target_subset)
    next_v = next_v - jnp.exp(state.log_alpha.params) * next_logp
    return batch.reward + state.hp.gamma * (1.0 - batch.terminal) * next_v


def critic_loss(config: Config, critic_params, batch: Transition, target: jax.Array):
    """Sum over members of the mean squared TD error."""
    _, critic = networks(config)
    q = critic.apply(critic_params, batch.obs, batch.action)
    loss = ((q - target) ** 2).mean(axis=-1).sum()
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(config: Config, actor_params, critic_params, log_alpha, batch, key):
    """E[alpha log pi(a|s) - Q(s, a)], a ~ pi, Q aggregated over members by ``actor_q``."""
    action, logp = sample_action(config, actor_params, batch.obs, key)
    _, critic = networks(config)
    q = critic.apply(critic_params, batch.obs, action)
    q = q.min(axis=0) if config.actor_q == "min" else q.mean(axis=0)
    loss = (jnp.exp(log_alpha) * logp - q).mean()
    return loss, {"actor_loss": loss, "entropy": -logp.mean(), "logp": logp}


def update_critic(config: Config, state: State, batch: Transition, key: jax.Array):
    """One critic step on a (B,) batch, then a Polyak target update."""
    target = jax.lax.stop_gradient(td_target(config, state, batch, key))
    grads, metrics = jax.grad(lambda p: critic_loss(config, p, batch, target), has_aux=True)(
        state.critic.params
    )
    critic = adam_step(state.critic, grads, state.hp.critic_lr)
    return state.replace(
        critic=critic, target_critic=polyak(state.target_critic, critic.params, state.hp.tau)
    ), metrics


def update_actor(config: Config, state: State, batch: Transition, key: jax.Array):
    """One actor step and one temperature step on a (B,) batch."""
    grads, metrics = jax.grad(
        lambda p: actor_loss(config, p, state.critic.params, state.log_alpha.params, batch, key),
        has_aux=True,
    )(state.actor.params)
    actor = adam_step(state.actor, grads, state.hp.actor_lr)
    target_entropy = -state.hp.target_entropy_scale * config.action_dim
    logp = jax.lax.stop_gradient(metrics.pop("logp"))
    alpha_grad = jax.grad(lambda la: -(la * (logp + target_entropy)).mean())(state.log_alpha.params)
    log_alpha = adam_step(state.log_alpha, alpha_grad, state.hp.alpha_lr)
    metrics["alpha"] = jnp.exp(log_alpha.params)
    return state.replace(actor=actor, log_alpha=log_alpha), metrics


def update(config: Config, state: State, batches: Transition, key: jax.Array):
    """U critic updates (a scan over the leading axis of ``batches``), then one actor update.

    ``batches`` has shape (U, B, ...); returns the new state and metrics of the last steps.
    """
    k_critic, k_actor = jax.random.split(key)

    def critic_step(s, xs):
        batch, k = xs
        return update_critic(config, s, batch, k)

    num_updates = batches.reward.shape[0]
    state, critic_metrics = jax.lax.scan(
        critic_step, state, (batches, jax.random.split(k_critic, num_updates))
    )
    last = jax.tree.map(lambda x: x[-1], batches)
    state, actor_metrics = update_actor(config, state, last, k_actor)
    metrics = {**jax.tree.map(lambda x: x[-1], critic_metrics), **actor_metrics}
    return state.replace(step=state.step + 1), metrics


def make_agent(config: Config, hp: HParams | None = None) -> Agent:
    """SAC as an :class:`Agent` for the runners."""
    return Agent(
        name="sac",
        init=functools.partial(init, config=config, hp=hp),
        update=functools.partial(update, config),
        act=lambda state, obs, key, deterministic=False: act(
            config, state, obs, key, deterministic
        ),
        obs_dim=config.obs_dim,
        action_dim=config.action_dim,
    )
