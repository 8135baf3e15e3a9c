"""HalfCheetah, as Gymnasium's HalfCheetah-v5 with default arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlgen.envs.mujoco_env import MujocoEnv


class HalfCheetah(MujocoEnv):
    """Planar cheetah. obs = qpos[1:], qvel (17 dims); reward = forward velocity - ctrl cost;
    never terminates (`terminated(obs)` is False). Reset noise: uniform on qpos, normal on
    qvel."""

    xml_file = "half_cheetah.xml"
    frame_skip = 5
    normal_qvel_noise = True

    def __init__(
        self,
        forward_reward_weight: float = 1.0,
        ctrl_cost_weight: float = 0.1,
        reset_noise_scale: float = 0.1,
        **kwargs,
    ):
        super().__init__(reset_noise_scale, **kwargs)
        self.forward_reward_weight = forward_reward_weight
        self.ctrl_cost_weight = ctrl_cost_weight

    def _observe(self, ps) -> jax.Array:
        return jnp.concatenate([ps.qpos[1:], ps.qvel])

    def terminated(self, obs: jax.Array) -> jax.Array:
        """False for observations (..., 17): HalfCheetah never terminates."""
        return jnp.zeros(obs.shape[:-1], bool)

    def _rewards(self, before, after, action):
        x_velocity = (after.qpos[0] - before.qpos[0]) / self.dt
        forward = self.forward_reward_weight * x_velocity
        ctrl = self.ctrl_cost_weight * jnp.sum(jnp.square(action))
        metrics = {
            "x_position": after.qpos[0],
            "x_velocity": x_velocity,
            "reward_forward": forward,
            "reward_ctrl": -ctrl,
        }
        return forward - ctrl, jnp.zeros((), bool), metrics
