"""Batched auto-reset: the usual way to run many envs for an off-policy learner."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlgen.branching import cond_any
from rlgen.envs.base import Env, State


class AutoReset:
    """Runs a batch of `env`s and resets each one as soon as it is done.

    `reset(keys)` takes one key per env and `step(states, actions)` batched states and actions.
    After a done step the returned state's `pipeline_state`, `obs` and `info["steps"]` belong to
    a fresh episode (reset with the key in `info["rng"]`), while `reward`, `done`, `metrics`,
    `info["terminated"]` and `info["truncation"]` describe the finished transition and
    `info["final_obs"]` holds its true last observation. A transition for a replay buffer is
    therefore (obs, action, reward, info["final_obs"], info["terminated"], info["truncation"]).
    """

    def __init__(self, env: Env):
        self.env = env

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, keys: jax.Array) -> State:
        state = jax.vmap(self.env.reset)(keys)
        return state.replace(info={**state.info, "final_obs": state.obs})

    def step(self, state: State, action: jax.Array) -> State:
        state = jax.vmap(self.env.step)(state, action)
        state = state.replace(info={**state.info, "final_obs": state.obs})
        # Resets cost a physics call, so skip them on steps where no env is done (also under
        # the runners' vmap over seeds, where lax.cond would reset at every step).
        return cond_any(jnp.any(state.done > 0), self._reset_done, lambda s: s, state)

    def _reset_done(self, state: State) -> State:
        fresh = jax.vmap(self.env.reset)(state.info["rng"])
        done = state.done > 0
        pick = lambda new, old: jnp.where(_expand(done, old.ndim), new, old)
        info = {
            **state.info,
            "steps": pick(fresh.info["steps"], state.info["steps"]),
            "rng": pick(fresh.info["rng"], state.info["rng"]),
        }
        return state.replace(
            pipeline_state=jax.tree.map(pick, fresh.pipeline_state, state.pipeline_state),
            obs=pick(fresh.obs, state.obs),
            info=info,
        )


def _expand(mask: jax.Array, ndim: int) -> jax.Array:
    """Append trailing axes to a per-env mask so it broadcasts against an `ndim` array."""
    return mask.reshape(mask.shape + (1,) * (ndim - mask.ndim))
