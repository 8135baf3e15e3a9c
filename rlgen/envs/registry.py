"""`make(name)`: rlgen's Gymnasium-v5 locomotion envs by name."""

from __future__ import annotations

from rlgen.envs.ant import Ant
from rlgen.envs.half_cheetah import HalfCheetah
from rlgen.envs.hopper import Hopper
from rlgen.envs.mujoco_env import MujocoEnv
from rlgen.envs.walker2d import Walker2d

ENVS: dict[str, type[MujocoEnv]] = {
    "hopper": Hopper,
    "halfcheetah": HalfCheetah,
    "walker2d": Walker2d,
    "ant": Ant,
}


def make(name: str, backend: str = "auto", **kwargs) -> MujocoEnv:
    """Env `name` (one of `ENVS`) on `backend` ("auto", "mjx" or "mujoco").

    kwargs: the Gymnasium-v5 constructor arguments of that env (reward weights, healthy ranges,
    `reset_noise_scale`, ...), `max_episode_steps` (default 1000) and the MJX solver settings
    `iterations`, `ls_iterations`, `solver` ("newton" or "cg") and `integrator` (None: the model
    file's; "euler" or "rk4"), all ignored by the C backend.
    """
    if name not in ENVS:
        raise ValueError(f"unknown env {name!r}; choose from {sorted(ENVS)}")
    return ENVS[name](backend=backend, **kwargs)
