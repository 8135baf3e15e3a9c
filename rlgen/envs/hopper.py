"""Hopper, as Gymnasium's Hopper-v5 with default arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlgen.envs.mujoco_env import MujocoEnv


class Hopper(MujocoEnv):
    """Planar one-legged hopper. obs = qpos[1:], clip(qvel, -10, 10) (11 dims);
    reward = forward velocity + healthy reward (only while healthy) - ctrl cost;
    terminates when unhealthy (z, torso angle or state out of range): `terminated(obs)`."""

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

    def _is_healthy(self, z: jax.Array, angle: jax.Array, state: jax.Array) -> jax.Array:
        """Open intervals, as Gymnasium; `state` (..., n) is checked against
        `healthy_state_range` unless that is None."""
        healthy = _inside(z, self.healthy_z_range) & _inside(angle, self.healthy_angle_range)
        if self.healthy_state_range is not None:
            healthy &= jnp.all(_inside(state, self.healthy_state_range), axis=-1)
        return healthy

    def terminated(self, obs: jax.Array) -> jax.Array:
        """Termination of observations (..., observation_size), e.g. a world model's next
        states: obs[0] is z, obs[1] the torso angle, and the state range applies to obs[1:]
        (qpos[2:] and qvel). The env's step checks the true qvel, the observation holds it
        clipped to [-10, 10]: with the default range (-100, 100) the two disagree only where a
        joint speed is 100 or more."""
        healthy = self._is_healthy(obs[..., 0], obs[..., 1], obs[..., 1:])
        return ~healthy & self.terminate_when_unhealthy

    def _observe(self, ps) -> jax.Array:
        return jnp.concatenate([ps.qpos[1:], jnp.clip(ps.qvel, -10.0, 10.0)])

    def _rewards(self, before, after, action):
        x_velocity = (after.qpos[0] - before.qpos[0]) / self.dt
        state = jnp.concatenate([after.qpos[2:], after.qvel])  # Gymnasium's state_vector()[2:]
        healthy = self._is_healthy(after.qpos[1], after.qpos[2], state)
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
