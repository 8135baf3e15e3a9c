"""Pieces every agent shares: parameters with their optimiser state, Adam steps, Polyak targets.

Learning rates are passed in at update time (from an agent's ``HParams`` pytree) rather than
baked into the optimiser, so seeds *and* learning rates can be vmapped without recompiling.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

_ADAM = optax.scale_by_adam()


@flax.struct.dataclass
class Optimized:
    """A parameter tree and its Adam moments."""

    params: dict
    opt_state: optax.OptState

    @classmethod
    def create(cls, params) -> Optimized:
        return cls(params=params, opt_state=_ADAM.init(params))


def adam_step(opt: Optimized, grads, learning_rate: jax.Array) -> Optimized:
    """One Adam step with the given (possibly traced, per-seed) learning rate."""
    updates, opt_state = _ADAM.update(grads, opt.opt_state, opt.params)
    params = jax.tree.map(lambda p, u: p - learning_rate * u, opt.params, updates)
    return Optimized(params=params, opt_state=opt_state)


def polyak(target, online, tau: jax.Array):
    """target <- (1 - tau) * target + tau * online."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


@dataclasses.dataclass(frozen=True)
class Agent:
    """An agent's pure functions with its static config bound, as the runners consume them.

    - ``init(key) -> state``
    - ``update(state, batches, key) -> (state, metrics)`` with ``batches`` of shape (U, B, ...)
    - ``act(state, obs, key, deterministic) -> action`` (``deterministic`` is static)
    """

    name: str
    init: Callable
    update: Callable
    act: Callable
    obs_dim: int
    action_dim: int


def with_hparams(agent: Agent, hp) -> Agent:
    """``agent`` whose ``init`` starts from hyperparameters ``hp`` (None: its own), e.g. one
    lane of a vmapped sweep."""
    if hp is None:
        return agent
    return dataclasses.replace(agent, init=functools.partial(agent.init, hp=hp))


def with_obs_normalizer(agent: Agent, mean: jax.Array, std: jax.Array) -> Agent:
    """``agent`` fed z-scored observations, ``(obs - mean) / std``: in ``act`` and in the
    ``obs`` / ``next_obs`` of every update batch (TD3+BC's state normalisation). Callers keep
    passing raw observations."""
    if jnp.shape(mean) != (agent.obs_dim,) or jnp.shape(std) != (agent.obs_dim,):
        raise ValueError(
            f"mean and std must have shape ({agent.obs_dim},), got "
            f"{jnp.shape(mean)} and {jnp.shape(std)}"
        )
    if not bool(jnp.all(std > 0)):
        raise ValueError("std must be positive in every dimension")

    def normalize(obs):
        return (obs - mean) / std

    def act(state, obs, key, deterministic=False):
        return agent.act(state, normalize(obs), key, deterministic)

    def update(state, batches, key):
        batches = batches.replace(obs=normalize(batches.obs), next_obs=normalize(batches.next_obs))
        return agent.update(state, batches, key)

    return dataclasses.replace(agent, act=act, update=update)


def check_sizes(config, *at_least_one: str) -> None:
    """Raise ValueError naming the field unless obs/action dims are positive and each named
    field is >= 1."""
    if config.obs_dim <= 0 or config.action_dim <= 0:
        raise ValueError(f"obs_dim and action_dim must be positive, got {config}")
    for name in at_least_one:
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")


def float_hparams(hp_class: type, hp=None):
    """``hp`` (default: ``hp_class()``) with every leaf a float32 array, ready to vmap."""
    hp = hp_class() if hp is None else hp
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), hp)
