"""Base class of rlgen's MuJoCo locomotion envs, built from Gymnasium's v5 model files."""

from __future__ import annotations

import functools
from pathlib import Path

import gymnasium
import jax
import jax.numpy as jnp
import mujoco

from rlgen.envs.base import Env, State, reset_info, time_limit
from rlgen.envs.physics import make_physics, resolve_backend

ASSETS = Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets"


def load_model(xml_file: str) -> mujoco.MjModel:
    """Load one of the model files shipped with Gymnasium."""
    return mujoco.MjModel.from_xml_path(str(ASSETS / xml_file))


class MujocoEnv(Env):
    """Resets to `qpos0` plus noise, steps `frame_skip` MuJoCo steps per action, and ends
    episodes after `max_episode_steps` (truncation) unless a task terminates them first.

    Subclasses set `xml_file` and `frame_skip` and implement `_observe` and `_rewards`.
    """

    xml_file: str
    frame_skip: int
    contact_forces: bool = False  # whether `cfrc_ext` is computed after each step
    normal_qvel_noise: bool = False  # qvel reset noise: N(0, scale^2) instead of U(-scale, scale)

    def __init__(
        self,
        reset_noise_scale: float,
        backend: str = "auto",
        max_episode_steps: int = 1000,
        **solver,
    ):
        model = load_model(self.xml_file)
        self._configure(model)
        self.backend = resolve_backend(backend)
        self.physics = make_physics(
            model, self.frame_skip, self.backend, self.contact_forces, **solver
        )
        self.dt = float(model.opt.timestep * self.frame_skip)
        self.action_size = model.nu
        self.max_episode_steps = max_episode_steps
        self.reset_noise_scale = reset_noise_scale
        self._init_qpos = jnp.asarray(model.qpos0, jnp.float32)
        self._nv = model.nv

    def _configure(self, model: mujoco.MjModel) -> None:
        """Hook to change model options before the physics is built."""

    @functools.cached_property
    def observation_size(self) -> int:
        return jax.eval_shape(self.reset, jax.random.key(0)).obs.shape[-1]

    def reset(self, key: jax.Array) -> State:
        key, qpos_key, qvel_key = jax.random.split(key, 3)
        scale = self.reset_noise_scale
        qpos = self._init_qpos + jax.random.uniform(
            qpos_key, self._init_qpos.shape, minval=-scale, maxval=scale
        )
        if self.normal_qvel_noise:
            qvel = scale * jax.random.normal(qvel_key, (self._nv,))
        else:
            qvel = jax.random.uniform(qvel_key, (self._nv,), minval=-scale, maxval=scale)
        ps = self.physics.init(qpos, qvel)
        _, _, metrics = self._rewards(ps, ps, jnp.zeros(self.action_size))
        zero = jnp.zeros((), jnp.float32)
        return State(
            pipeline_state=ps,
            obs=self._observe(ps),
            reward=zero,
            done=zero,
            metrics=jax.tree.map(jnp.zeros_like, metrics),
            info=reset_info(key),
        )

    def step(self, state: State, action: jax.Array) -> State:
        ps = self.physics.step(state.pipeline_state, action)
        reward, terminated, metrics = self._rewards(state.pipeline_state, ps, action)
        done, info = time_limit(state.info, terminated, self.max_episode_steps)
        return state.replace(
            pipeline_state=ps,
            obs=self._observe(ps),
            reward=reward.astype(jnp.float32),
            done=done,
            metrics=metrics,
            info=info,
        )

    def _observe(self, ps) -> jax.Array:
        raise NotImplementedError

    def _rewards(self, before, after, action) -> tuple[jax.Array, jax.Array, dict]:
        """(reward, terminated, metrics) of the step from physics state `before` to `after`."""
        raise NotImplementedError
