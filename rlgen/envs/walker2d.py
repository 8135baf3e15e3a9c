"""Walker2d, as Gymnasium's Walker2d-v5 (model `walker2d_v5.xml`) with default arguments."""

from __future__ import annotations

from rlgen.envs.hopper import Hopper


class Walker2d(Hopper):
    """Planar biped. Same obs layout (17 dims), reward and `terminated(obs)` as Hopper; healthy
    means 0.8 < z < 2 and -1 < torso angle < 1 (no state-range check)."""

    xml_file = "walker2d_v5.xml"
    frame_skip = 4

    def __init__(
        self,
        forward_reward_weight: float = 1.0,
        ctrl_cost_weight: float = 1e-3,
        healthy_reward: float = 1.0,
        terminate_when_unhealthy: bool = True,
        healthy_z_range: tuple[float, float] = (0.8, 2.0),
        healthy_angle_range: tuple[float, float] = (-1.0, 1.0),
        reset_noise_scale: float = 5e-3,
        **kwargs,
    ):
        super().__init__(
            forward_reward_weight=forward_reward_weight,
            ctrl_cost_weight=ctrl_cost_weight,
            healthy_reward=healthy_reward,
            terminate_when_unhealthy=terminate_when_unhealthy,
            healthy_state_range=None,
            healthy_z_range=healthy_z_range,
            healthy_angle_range=healthy_angle_range,
            reset_noise_scale=reset_noise_scale,
            **kwargs,
        )
