"""Compare an rlgen env with its Gymnasium v5 original, one step at a time.

Along a trajectory of our env, before every step Gymnasium's simulator is set to our physics
state (qpos, qvel, solver warmstart, and body positions, which Ant's forward reward reads
before stepping), both take the same action and the outputs are compared. Resetting every step
keeps chaotic envs (HalfCheetah) comparable over long horizons.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium
import jax
import numpy as np

from rlgen.envs.base import State
from rlgen.envs.mujoco_env import MujocoEnv

GYMNASIUM_IDS = {
    "hopper": "Hopper-v5",
    "halfcheetah": "HalfCheetah-v5",
    "walker2d": "Walker2d-v5",
    "ant": "Ant-v5",
}


def reference_env(name: str, env: MujocoEnv):
    """Gymnasium's env for `name` (unwrapped: no time limit), with our env's friction cone
    (rlgen's Ant uses the elliptic cone)."""
    ref = gymnasium.make(GYMNASIUM_IDS[name]).unwrapped
    ref.model.opt.cone = env.physics.model.opt.cone
    return ref


def compare_with_gymnasium(
    ref,
    reset: Callable[[jax.Array], State],
    step: Callable[[State, jax.Array], State],
    key: jax.Array,
    actions: np.ndarray,
) -> dict[str, np.ndarray]:
    """Run our (jitted) `reset`/`step` with `actions`; Gymnasium's `ref` redoes each step from
    our state. Returns per-step max |obs error|, |reward error|, both termination flags, our
    observations, and the reset-observation error."""
    state = reset(key)
    ps = state.pipeline_state
    ref.reset(seed=0)
    ref.set_state(np.asarray(ps.qpos, np.float64), np.asarray(ps.qvel, np.float64))
    reset_err = np.abs(ref._get_obs() - np.asarray(state.obs)).max()
    out = {k: [] for k in ("obs_err", "reward_err", "terminated", "ref_terminated", "obs")}
    for action in actions:
        ps = state.pipeline_state
        data = ref.data
        data.qpos[:], data.qvel[:] = ps.qpos, ps.qvel
        data.qacc_warmstart[:], data.xpos[:] = ps.qacc_warmstart, ps.xpos
        ref_obs, ref_reward, ref_terminated, _, _ = ref.step(np.asarray(action, np.float64))
        state = step(state, action)
        out["obs_err"].append(np.abs(ref_obs - np.asarray(state.obs)).max())
        out["reward_err"].append(abs(ref_reward - float(state.reward)))
        out["terminated"].append(bool(state.info["terminated"]))
        out["ref_terminated"].append(bool(ref_terminated))
        out["obs"].append(np.asarray(state.obs))
    return {**{k: np.array(v) for k, v in out.items()}, "reset_err": reset_err}
