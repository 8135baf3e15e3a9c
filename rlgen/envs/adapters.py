"""Use brax.envs and MuJoCo Playground envs through rlgen's env interface.

Their states have obs/reward/done/metrics/info like ours; the physics state is called
`pipeline_state` in brax and `data` in Playground. The adapter keeps their `info` under
`info["inner"]`, treats their `done` as termination and adds rlgen's own time limit.
"""

from __future__ import annotations

import functools
from typing import Any

import jax

from rlgen.envs.base import Env, State, reset_info, time_limit


class BraxAdapter(Env):
    """Wraps an env with `reset(key)` and `step(state, action)` returning brax-like states.

    Pass the bare env (not one wrapped with brax's episode/auto-reset wrappers)."""

    def __init__(self, env: Any, max_episode_steps: int = 1000):
        self.env = env
        self.max_episode_steps = max_episode_steps
        self.action_size = env.action_size
        self.dt = float(env.dt)
        self._state_cls = None  # their State class, known after the first reset

    def reset(self, key: jax.Array) -> State:
        key, env_key = jax.random.split(key)
        inner = self.env.reset(env_key)
        self._state_cls = type(inner)
        return self._wrap(inner, reset_info(key))

    def step(self, state: State, action: jax.Array) -> State:
        if self._state_cls is None:
            raise RuntimeError("call reset once before step: it tells the adapter the State type")
        inner = self._state_cls(
            **{self._physics_field: state.pipeline_state},
            obs=state.obs,
            reward=state.reward,
            done=state.done,
            metrics=state.metrics,
            info=state.info["inner"],
        )
        inner = self.env.step(inner, action)
        done, info = time_limit(state.info, inner.done, self.max_episode_steps)
        return self._wrap(inner, info).replace(done=done)

    @functools.cached_property
    def observation_size(self) -> int:
        return jax.eval_shape(self.reset, jax.random.PRNGKey(0)).obs.shape[-1]

    @property
    def _physics_field(self) -> str:
        fields = self._state_cls.__dataclass_fields__
        return "pipeline_state" if "pipeline_state" in fields else "data"

    def _wrap(self, inner: Any, info: dict) -> State:
        return State(
            pipeline_state=getattr(inner, self._physics_field),
            obs=inner.obs,
            reward=inner.reward,
            done=inner.done,
            metrics=inner.metrics,
            info={**info, "inner": inner.info},
        )


def from_brax(env: Any, max_episode_steps: int = 1000) -> BraxAdapter:
    """rlgen view of a `brax.envs` env or a MuJoCo Playground env."""
    return BraxAdapter(env, max_episode_steps)
