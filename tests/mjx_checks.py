"""rlgen.envs on the MJX backend (default solver settings): parity with Gymnasium, vmap, auto-reset.
Run by test_envs_mjx.py in a child process with XLA's default optimisation.

Marked slow: compiling one MJX env step takes 20-60 s on a 2-core CPU, so this file needs a few
minutes there (seconds per env on a GPU). test_envs.py covers the same API on C MuJoCo.

Parity design as in test_envs.py: before every step Gymnasium's simulator is set to our state
(qpos, qvel, warmstart, xpos) and both take the same action, along 150 random-action steps.
MJX computes in float32 with a capped solver, so the tolerances are MJX's float32 floor,
measured with the XML's converged solver (100 iterations) and unchanged by the default cap:
- Hopper, Walker2d, HalfCheetah: obs within 1e-3 (measured max 4e-6, 9e-5, 4e-4; HalfCheetah's
  unbounded joint velocities reach ~20 and its float32 error is largest).
- Ant: velocities within 1e-2 but the contact-force part of obs within 0.2 (measured 0.06-0.13
  at some steps): a float32 elliptic-cone solve of a stiff contact moves individual clipped
  contact forces by a few percent; with float64 MJX the error falls below 1e-3.
- reward within 1e-3 (Ant 2e-3: its reward includes the contact cost).
Termination must match Gymnasium at every step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlgen.envs as E
from rlgen.envs.parity import compare_with_gymnasium, reference_env

pytestmark = pytest.mark.slow

NAMES = ["hopper", "halfcheetah", "walker2d", "ant"]
OBS_TOL = {"hopper": 1e-3, "halfcheetah": 1e-3, "walker2d": 1e-3, "ant": 0.2}
REWARD_TOL = {"hopper": 1e-3, "halfcheetah": 1e-3, "walker2d": 1e-3, "ant": 2e-3}


def _actions(env, n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, env.action_size)).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_parity_with_gymnasium(name):
    env = E.make(name, backend="mjx")
    ref = reference_env(name, env)
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    out = compare_with_gymnasium(ref, reset, step, jax.random.key(1), _actions(env, 150))
    assert out["reset_err"] < 1e-6
    obs_err = out["obs_err"]
    assert obs_err.max() < OBS_TOL[name]
    assert np.median(obs_err) < 1e-4
    assert out["reward_err"].max() < REWARD_TOL[name]
    np.testing.assert_array_equal(out["terminated"], out["ref_terminated"])
    if name != "halfcheetah":
        assert out["terminated"].any()


def test_vmap_and_auto_reset():
    """AutoReset over mjx.Data states: matches per-env steps and resets the finished env."""
    env = E.make("hopper", backend="mjx", max_episode_steps=2)
    batched = E.AutoReset(env)
    state = batched.reset(jax.random.split(jax.random.key(0), 3))
    state = state.replace(info={**state.info, "steps": jnp.array([0, 1, 0], jnp.int32)})
    actions = jnp.asarray(_actions(env, 3))
    out = jax.jit(batched.step)(state, actions)
    step = jax.jit(env.step)
    singles = [step(jax.tree.map(lambda x, i=i: x[i], state), actions[i]) for i in range(3)]
    np.testing.assert_array_equal(out.done, [0, 1, 0])
    for i, single in enumerate(singles):
        np.testing.assert_allclose(out.info["final_obs"][i], single.obs, atol=1e-5)
    fresh = env.reset(state.info["rng"][1])
    np.testing.assert_allclose(out.obs[1], fresh.obs, atol=1e-6)
    assert out.info["steps"][1] == 0
