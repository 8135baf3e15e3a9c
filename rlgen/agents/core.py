"""The actor-critic core the agents build on: what SAC, CQL / Cal-QL, TD3(+BC) and IQL share.

- batches: :func:`as_stack` checks a batch against the config and makes it a (U, B) stack;
  :func:`scan` runs one step per batch of the stack; :func:`critics_then_actor` is SAC's (and
  CQL's) update, U critic steps then one actor step on the last batch;
- gradient steps: :func:`descend` (one Adam step on a loss), :func:`critic_step` (that, then the
  Polyak target), :func:`td_loss` (the ensemble's squared TD error);
- the maximum-entropy actor of SAC and CQL: :func:`sample_tanh_gaussian`,
  :func:`act_tanh_gaussian`, :func:`max_entropy_actor_loss`, :func:`actor_and_temperature_step`;
- :func:`actor_critic_params` and :func:`agent` build an algorithm's state and its
  :class:`~rlgen.agents.common.Agent`; :class:`DeterministicState` is TD3's and DDPG's state.

An algorithm module keeps what defines it: its ``Config`` / ``HParams`` / ``State``, losses and
targets. ``rlgen/agents/ddpg.py`` is the smallest complete example.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp

from rlgen import nets
from rlgen.agents.common import Agent, Optimized, adam_step, polyak
from rlgen.data.transition import Transition


def as_stack(config, batches: Transition) -> Transition:
    """``batches`` as a (U, B) stack (a (B,) batch becomes U = 1), after checking its obs and
    action sizes against ``config.obs_dim`` / ``config.action_dim``."""
    if batches.obs.shape[-1] != config.obs_dim or batches.action.shape[-1] != config.action_dim:
        raise ValueError(
            f"batch obs/action dims {batches.obs.shape[-1]}/{batches.action.shape[-1]} do not "
            f"match config {config.obs_dim}/{config.action_dim}"
        )
    if batches.reward.ndim == 1:
        return jax.tree.map(lambda x: x[None], batches)
    return batches


def last(tree):
    """The last entry along the leading axis of every leaf."""
    return jax.tree.map(lambda x: x[-1], tree)


def scan(step: Callable, state, batches: Transition, key: jax.Array | None):
    """``step(state, batch, key) -> (state, metrics)`` over a (U, B) stack as one ``lax.scan``,
    with a key per batch (None without ``key``); the final state and the last step's metrics."""
    keys = None if key is None else jax.random.split(key, batches.reward.shape[0])
    state, metrics = jax.lax.scan(lambda s, xs: step(s, *xs), state, (batches, keys))
    return state, last(metrics)


def critics_then_actor(
    config, update_critic: Callable, update_actor: Callable, state, batches, key
):
    """SAC's update: ``update_critic(config, state, batch, key)`` over a (B,) batch or a (U, B)
    stack (scanned), then one ``update_actor(config, state, batch, key)`` on the last batch;
    ``state.step`` counts these calls. Metrics: the last critic step's and the actor step's."""
    batches = as_stack(config, batches)
    k_critic, k_actor = jax.random.split(key)
    state, critic_metrics = scan(functools.partial(update_critic, config), state, batches, k_critic)
    state, actor_metrics = update_actor(config, state, last(batches), k_actor)
    return state.replace(step=state.step + 1), {**critic_metrics, **actor_metrics}


def descend(opt: Optimized, loss: Callable, learning_rate: jax.Array):
    """One Adam step on ``loss(params) -> (value, aux)``; the stepped ``Optimized`` and ``aux``."""
    grads, aux = jax.grad(loss, has_aux=True)(opt.params)
    return adam_step(opt, grads, learning_rate), aux


def critic_step(state, loss: Callable):
    """One step of ``state.critic`` on ``loss`` at ``hp.critic_lr``, then the Polyak update of
    ``state.target_critic`` at ``hp.tau``; the new state and the loss's aux."""
    critic, aux = descend(state.critic, loss, state.hp.critic_lr)
    target = polyak(state.target_critic, critic.params, state.hp.tau)
    return state.replace(critic=critic, target_critic=target), aux


def td_loss(q: jax.Array, target: jax.Array) -> jax.Array:
    """Sum over the ensemble's members (axis 0) of the mean squared error to ``target``."""
    return ((q - target) ** 2).mean(axis=-1).sum()


def actor_critic_params(key: jax.Array, actor, critic, obs_dim: int, action_dim: int):
    """Initial (actor, critic) parameters of flax modules taking (obs) and (obs, action)."""
    k_actor, k_critic = jax.random.split(key)
    obs = jnp.zeros((1, obs_dim))
    return actor.init(k_actor, obs), critic.init(k_critic, obs, jnp.zeros((1, action_dim)))


@flax.struct.dataclass
class DeterministicState:
    """A deterministic actor and a critic with their Adam moments and Polyak targets."""

    actor: Optimized
    critic: Optimized
    target_actor: dict
    target_critic: dict
    hp: object  # the algorithm's HParams
    step: jax.Array  # critic steps taken

    @classmethod
    def create(cls, actor_params, critic_params, hp) -> DeterministicState:
        actor, critic = Optimized.create(actor_params), Optimized.create(critic_params)
        return cls(actor, critic, actor_params, critic_params, hp, jnp.zeros((), jnp.int32))


def sample_tanh_gaussian(actor, params, obs: jax.Array, key: jax.Array, num: int | None = None):
    """Reparameterised actions of a tanh-Gaussian ``actor`` and their log pi: (B, d) and (B,),
    or with ``num``, ``num`` per observation as (B, num, d) and (B, num)."""
    mean, log_std = actor.apply(params, obs)
    if num is not None:
        shape = (*mean.shape[:-1], num, mean.shape[-1])
        mean = jnp.broadcast_to(mean[..., None, :], shape)
        log_std = jnp.broadcast_to(log_std[..., None, :], shape)
    return nets.tanh_gaussian_sample(key, mean, log_std)


def act_tanh_gaussian(actor, params, obs: jax.Array, key: jax.Array, deterministic: bool):
    """A sampled action, or tanh(mean) when ``deterministic``."""
    if deterministic:
        return jnp.tanh(actor.apply(params, obs)[0])
    return sample_tanh_gaussian(actor, params, obs, key)[0]


def max_entropy_actor_loss(log_alpha: jax.Array, logp: jax.Array, q: jax.Array):
    """E[alpha log pi(a|s) - Q(s, a)] for a ~ pi; metrics carry ``logp`` for the temperature."""
    loss = (jnp.exp(log_alpha) * logp - q).mean()
    return loss, {"actor_loss": loss, "entropy": -logp.mean(), "logp": logp}


def actor_and_temperature_step(state, loss: Callable, action_dim: int):
    """One step of ``state.actor`` on ``loss`` (a :func:`max_entropy_actor_loss`) at
    ``hp.actor_lr``, then one of ``state.log_alpha`` at ``hp.alpha_lr`` towards the entropy
    ``-hp.target_entropy_scale * action_dim`` (SAC's automatic temperature)."""
    actor, metrics = descend(state.actor, loss, state.hp.actor_lr)
    logp = jax.lax.stop_gradient(metrics.pop("logp"))
    target_entropy = -state.hp.target_entropy_scale * action_dim
    alpha_loss, alpha_grad = jax.value_and_grad(lambda la: -(la * (logp + target_entropy)).mean())(
        state.log_alpha.params
    )
    log_alpha = adam_step(state.log_alpha, alpha_grad, state.hp.alpha_lr)
    metrics.update(alpha_loss=alpha_loss, alpha=jnp.exp(log_alpha.params))
    return state.replace(actor=actor, log_alpha=log_alpha), metrics


def agent(name: str, config, hp, init: Callable, update: Callable, act: Callable) -> Agent:
    """The :class:`Agent` of an algorithm's ``init(key, config, hp)``,
    ``update(config, state, batches, key)`` and ``act(config, state, obs, key, deterministic)``
    with ``config`` and ``hp`` (None: the algorithm's defaults) bound."""
    return Agent(
        name=name,
        init=functools.partial(init, config=config, hp=hp),
        update=functools.partial(update, config),
        act=functools.partial(act, config),
        obs_dim=config.obs_dim,
        action_dim=config.action_dim,
    )
