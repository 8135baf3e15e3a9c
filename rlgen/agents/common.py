"""Pieces every agent shares: parameters with their optimiser state, Adam steps, Polyak targets.

Learning rates are passed in at update time (from an agent's ``HParams`` pytree) rather than
baked into the optimiser, so seeds *and* learning rates can be vmapped without recompiling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.struct
import jax
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
