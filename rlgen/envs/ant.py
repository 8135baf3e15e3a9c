"""Ant, as Gymnasium's Ant-v5 with default arguments, except for the friction cone.

rlgen's Ant uses MuJoCo's elliptic friction cone instead of the XML's pyramidal one, in both
backends. Under the pyramidal cone C MuJoCo and MJX build different contact tangent frames,
and Ant's contact margin makes contacts frequent, so the two backends' velocities differ by up
to ~0.85 after a single step; with the elliptic cone they agree to ~5e-6. This changes Ant's
friction model (a round cone instead of its 4-sided approximation), so compare returns with
published Ant-v5 numbers with that in mind. `elliptic_cone=False` restores the XML's cone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco

from rlgen.envs.mujoco_env import MujocoEnv


class Ant(MujocoEnv):
    """Quadruped. obs = qpos[2:], qvel, clip(cfrc_ext[1:], -1, 1) (13 + 14 + 78 = 105 dims).
    reward = forward velocity + healthy reward (only while healthy) - ctrl cost - contact cost;
    terminates when unhealthy (state not finite or torso z out of range): `terminated(obs)`.

    The forward velocity is taken from the torso's `xpos`, as Gymnasium does: after a step that
    holds the kinematics MuJoCo last computed inside it, not those of the final `qpos`.
    """

    xml_file = "ant.xml"
    frame_skip = 5
    contact_forces = True
    normal_qvel_noise = True
    main_body = 1  # torso

    def __init__(
        self,
        forward_reward_weight: float = 1.0,
        ctrl_cost_weight: float = 0.5,
        contact_cost_weight: float = 5e-4,
        healthy_reward: float = 1.0,
        terminate_when_unhealthy: bool = True,
        healthy_z_range: tuple[float, float] = (0.2, 1.0),
        contact_force_range: tuple[float, float] = (-1.0, 1.0),
        reset_noise_scale: float = 0.1,
        elliptic_cone: bool = True,
        **kwargs,
    ):
        self.elliptic_cone = elliptic_cone
        super().__init__(reset_noise_scale, **kwargs)
        self.forward_reward_weight = forward_reward_weight
        self.ctrl_cost_weight = ctrl_cost_weight
        self.contact_cost_weight = contact_cost_weight
        self.healthy_reward = healthy_reward
        self.terminate_when_unhealthy = terminate_when_unhealthy
        self.healthy_z_range = healthy_z_range
        self.contact_force_range = contact_force_range

    def _configure(self, model: mujoco.MjModel) -> None:
        if self.elliptic_cone:
            model.opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC

    def _contact_forces(self, ps) -> jax.Array:
        return jnp.clip(self.physics.cfrc_ext(ps), *self.contact_force_range)

    def _observe(self, ps) -> jax.Array:
        forces = self._contact_forces(ps)[1:].ravel()
        return jnp.concatenate([ps.qpos[2:], ps.qvel, forces])

    def _is_healthy(self, z: jax.Array, state: jax.Array) -> jax.Array:
        """`state` (..., n) finite and z in the closed `healthy_z_range`, as Gymnasium."""
        low, high = self.healthy_z_range
        return jnp.all(jnp.isfinite(state), axis=-1) & (low <= z) & (z <= high)

    def terminated(self, obs: jax.Array) -> jax.Array:
        """Termination of observations (..., 105), e.g. a world model's next states: obs[0] is
        the torso z and obs[:27] (qpos[2:], qvel) must be finite. The env's step also checks
        the x, y position, which the observation leaves out."""
        state = obs[..., : self._init_qpos.shape[0] - 2 + self._nv]
        return ~self._is_healthy(obs[..., 0], state) & self.terminate_when_unhealthy

    def _rewards(self, before, after, action):
        xy_velocity = (after.xpos[self.main_body, :2] - before.xpos[self.main_body, :2]) / self.dt
        healthy = self._is_healthy(after.qpos[2], jnp.concatenate([after.qpos, after.qvel]))
        forward = self.forward_reward_weight * xy_velocity[0]
        survive = self.healthy_reward * healthy
        ctrl = self.ctrl_cost_weight * jnp.sum(jnp.square(action))
        contact = self.contact_cost_weight * jnp.sum(jnp.square(self._contact_forces(after)))
        terminated = ~healthy & self.terminate_when_unhealthy
        metrics = {
            "x_position": after.qpos[0],
            "x_velocity": xy_velocity[0],
            "y_velocity": xy_velocity[1],
            "reward_forward": forward,
            "reward_ctrl": -ctrl,
            "reward_contact": -contact,
            "reward_survive": survive,
        }
        return forward + survive - ctrl - contact, terminated, metrics
