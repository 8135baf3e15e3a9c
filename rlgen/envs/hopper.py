"""Hopper, as Gymnasium's Hopper-v5 with default arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlgen.envs.mujoco_env import MujocoEnv


class Hopper(MujocoEnv):
    """Planar one-legged hopper. obs = qpos[1:], clip(qvel, -10, 10) (11 dims);
    reward = forward velocity + healthy reward (only while healthy) - ctrl cost;
    terminates when unhealthy (z, torso angle or state out of range)."""

    xml_file = "hopper.xml"
    frame_skip = 4

    def __init__(
        self,
        forward_reward_weight: float = 1.0,
        ctrl_cost_weight: float = 1e-3,
        healthy_reward: float = 1.0,
        terminate_when_unhealthy: bool = True,
        healthy_state_range: tuple[float, float] | None = (-100.0, 100.0),
        healthy_z_range: tuple[float, float] = (0.7, float("inf")),
        healthy_angle_range: tuple[float, float] = (-0.2, 0.2),
        reset_noise_scale: float = 5e-3,
        **kwargs,
    ):
        super().__init__(reset_noise_scale, **kwargs)
        self.forward_reward_weight = forward_reward_weight
        self.ctrl_cost_weight = ctrl_cost_weight
        self.healthy_reward = healthy_reward
        self.terminate_when_unhealthy = terminate_when_unhealthy
        self.healthy_state_range = healthy_state_range
        self.healthy_z_range = healthy_z_range
        self.healthy_angle_range = healthy_angle_range

    def _is_healthy(self, ps) -> jax.Array:
        """Open intervals, as Gymnasium; `healthy_state_range=None` skips the state check."""
        z, angle = ps.qpos[1], ps.qpos[2]
        healthy = _inside(z, self.healthy_z_range) & _inside(angle, self.healthy_angle_range)
        if self.healthy_state_range is not None:
            state = jnp.concatenate([ps.qpos, ps.qvel])[2:]
            healthy &= jnp.all(_inside(state, self.healthy_state_range))
        return healthy

    def _observe(self, ps) -> jax.Array:
        return jnp.concatenate([ps.qpos[1:], jnp.clip(ps.qvel, -10.0, 10.0)])

    def _rewards(self, before, after, action):
        x_velocity = (after.qpos[0] - before.qpos[0]) / self.dt
        healthy = self._is_healthy(after)
        forward = self.forward_reward_weight * x_velocity
        survive = self.healthy_reward * healthy
        ctrl = self.ctrl_cost_weight * jnp.sum(jnp.square(action))
        terminated = ~healthy & self.terminate_when_unhealthy
        metrics = {
            "x_position": after.qpos[0],
            "x_velocity": x_velocity,
            "reward_forward": forward,
            "reward_ctrl": -ctrl,
            "reward_survive": survive,
        }
        return forward + survive - ctrl, terminated, metrics


def _inside(x: jax.Array, bounds: tuple[float, float]) -> jax.Array:
    low, high = bounds
    return (low < x) & (x < high)
