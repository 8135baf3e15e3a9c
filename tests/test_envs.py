"""rlgen.envs on the C MuJoCo backend (fast on CPU); MJX is covered in test_envs_mjx.py.

Parity design: along a 150-step random-action trajectory of our env, Gymnasium's simulator is
set to our state before every step and both take the same action (`rlgen.envs.parity`), so
chaotic envs stay comparable. Our state is float32 and Gymnasium computes in float64 from the
same (float32-representable) inputs, so the only differences are the final float32 roundings:
obs within 1e-5 (|obs| <= ~10, relative eps 6e-8) and reward within 1e-4 (x velocity is a
difference of float32 positions divided by dt >= 0.008, ~1e-5). Termination must match at
every step, on trajectories that do terminate for Hopper, Walker2d and Ant. Warmstart: our state
carries MuJoCo's `qacc_warmstart` and the reference is given it too, so both solvers start from
the same guess (C MuJoCo converges either way; MJX's capped solver would notice).
"""

from typing import Any

import brax.envs
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from flax import struct

import rlgen.envs as E
from rlgen.envs.parity import compare_with_gymnasium, reference_env

NAMES = ["hopper", "halfcheetah", "walker2d", "ant"]
OBS_SIZE = {"hopper": 11, "halfcheetah": 17, "walker2d": 17, "ant": 105}
STEPS = 150


@pytest.fixture(scope="module", params=NAMES)
def compiled(request):
    """One env per name with its jitted reset/step, compiled once for this module."""
    env = E.make(request.param, backend="mujoco")
    return request.param, env, jax.jit(env.reset), jax.jit(env.step)


def _actions(env, n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, env.action_size)).astype(np.float32)


def test_parity_with_gymnasium(compiled):
    name, env, reset, step = compiled
    ref = reference_env(name, env)
    out = compare_with_gymnasium(ref, reset, step, jax.random.key(1), _actions(env, STEPS))
    assert out["reset_err"] < 1e-6
    assert out["obs_err"].max() < 1e-5
    assert out["reward_err"].max() < 1e-4
    np.testing.assert_array_equal(out["terminated"], out["ref_terminated"])
    if name != "halfcheetah":
        assert out["terminated"].any() and not out["terminated"][0]
    if name == "ant":  # the 78 contact-force entries must be exercised, not all zero
        assert np.abs(out["obs"][:, 27:]).max() > 0.1


def test_open_loop_termination_step_matches_gymnasium(compiled):
    """Without per-step syncing, our float32 state drifts by rounding only, so the hopper and
    walker (not chaotic before they fall) terminate on exactly Gymnasium's step."""
    name, env, reset, step = compiled
    if name not in ("hopper", "walker2d"):
        pytest.skip("open-loop check for the planar walkers")
    ref = reference_env(name, env)
    state = reset(jax.random.key(2))
    ref.reset(seed=0)
    ps = state.pipeline_state
    ref.set_state(np.asarray(ps.qpos, np.float64), np.asarray(ps.qvel, np.float64))
    ours, theirs = None, None
    for t, a in enumerate(_actions(env, 300, seed=3)):
        state = step(state, a)
        _, _, terminated, _, _ = ref.step(a.astype(np.float64))
        ours = ours if ours is not None or not state.info["terminated"] else t
        theirs = theirs if theirs is not None or not terminated else t
        if ours is not None and theirs is not None:
            break
    assert ours is not None and ours == theirs


BOUNDARIES = {  # qpos index -> the edges of its healthy range, to sample states around
    "hopper": {1: (0.7,), 2: (-0.2, 0.2)},
    "walker2d": {1: (0.8, 2.0), 2: (-1.0, 1.0)},
    "ant": {2: (0.2, 1.0)},
    "halfcheetah": {},
}


def test_terminated_from_obs_matches_gymnasium(compiled):
    """`env.terminated(obs)`, what a world model applies to its next states, against
    Gymnasium's termination of the state behind `obs`: z and torso angle within 0.05 of a
    healthy-range edge, speeds up to 20 (past the observation's clip at 10), and every 8th state
    with a NaN speed. States are float32-representable, as our env's."""
    name, env, _, _ = compiled
    ref = reference_env(name, env)
    ref.reset(seed=0)
    rng = np.random.default_rng(6)
    obs, expected = [], []
    for i in range(256):
        qpos = ref.init_qpos + rng.uniform(-0.1, 0.1, ref.model.nq)
        for index, edges in BOUNDARIES[name].items():
            qpos[index] = rng.choice(edges) + rng.uniform(-0.05, 0.05)
        qvel = rng.uniform(-20, 20, ref.model.nv)
        ref.set_state(qpos.astype(np.float32), qvel.astype(np.float32))
        if i % 8 == 0:
            ref.data.qvel[i % ref.model.nv] = np.nan
        obs.append(ref._get_obs())
        expected.append(name != "halfcheetah" and not ref.is_healthy)
    terminated = np.asarray(jax.jit(env.terminated)(jnp.asarray(np.array(obs), jnp.float32)))
    np.testing.assert_array_equal(terminated, expected)
    if name != "halfcheetah":
        assert 0.1 < np.mean(expected) < 0.9  # both outcomes, many of each


def test_reset_distribution(compiled):
    name, env, reset, _ = compiled
    states = jax.vmap(reset)(jax.random.split(jax.random.key(3), 512))
    model = mujoco.MjModel.from_xml_path(str(E.mujoco_env.ASSETS / env.xml_file))
    scale = env.reset_noise_scale
    dq = np.asarray(states.pipeline_state.qpos) - model.qpos0
    qvel = np.asarray(states.pipeline_state.qvel)
    assert np.abs(dq).max() <= scale and np.abs(dq).max() > 0.9 * scale
    assert abs(dq.mean()) < 0.1 * scale
    if env.normal_qvel_noise:  # HalfCheetah, Ant: N(0, scale^2)
        assert np.std(qvel) == pytest.approx(scale, rel=0.05)
        assert np.abs(qvel).max() > 2 * scale
    else:  # Hopper, Walker2d: U(-scale, scale)
        assert np.abs(qvel).max() <= scale and np.std(qvel) == pytest.approx(scale / 3**0.5, 0.05)
    assert env.observation_size == OBS_SIZE[name]
    assert states.obs.shape == (512, OBS_SIZE[name]) and states.obs.dtype == jnp.float32
    assert not np.asarray(states.done).any() and not np.asarray(states.info["steps"]).any()
    assert env.max_episode_steps == 1000
    if name == "ant":  # Gymnasium's reset computes no contact forces
        assert not np.asarray(states.obs[:, 27:]).any()


def test_vmap_matches_single_env(compiled):
    _, env, reset, step = compiled
    keys = jax.random.split(jax.random.key(4), 3)
    actions = jnp.asarray(_actions(env, 3, seed=5))
    batched = jax.jit(jax.vmap(env.step))(jax.vmap(reset)(keys), actions)
    for i in range(3):
        single = step(reset(keys[i]), actions[i])
        np.testing.assert_array_equal(batched.obs[i], single.obs)
        np.testing.assert_allclose(batched.reward[i], single.reward, rtol=1e-6)
        np.testing.assert_array_equal(batched.done[i], single.done)


def test_time_limit_truncates():
    env = E.make("halfcheetah", backend="mujoco", max_episode_steps=3)
    state, step = env.reset(jax.random.key(0)), jax.jit(env.step)
    flags = []
    for _ in range(3):
        state = step(state, jnp.zeros(env.action_size))
        flags.append((state.done, state.info["truncation"], state.info["terminated"]))
    np.testing.assert_array_equal(flags, [(0, 0, 0), (0, 0, 0), (1, 1, 0)])
    assert state.info["steps"] == 3


def test_termination_wins_over_truncation():
    env = E.make("hopper", backend="mujoco", max_episode_steps=1, healthy_z_range=(9.0, 10.0))
    state = env.step(env.reset(jax.random.key(0)), jnp.zeros(env.action_size))
    assert (state.done, state.info["terminated"], state.info["truncation"]) == (1, 1, 0)
    assert state.metrics["reward_survive"] == 0  # healthy reward only while healthy


def test_auto_reset():
    env = E.make("hopper", backend="mujoco", max_episode_steps=3)
    batched = E.AutoReset(env)
    state = batched.reset(jax.random.split(jax.random.key(0), 4))
    state = state.replace(info={**state.info, "steps": jnp.array([0, 1, 2, 0], jnp.int32)})
    actions = jnp.asarray(_actions(env, 4))
    plain = jax.vmap(env.step)(state, actions)  # what the envs would do without resets
    out = jax.jit(batched.step)(state, actions)
    fresh = jax.vmap(env.reset)(state.info["rng"])
    np.testing.assert_array_equal(out.done, [0, 0, 1, 0])
    np.testing.assert_array_equal(out.info["truncation"], [0, 0, 1, 0])
    np.testing.assert_array_equal(out.info["final_obs"], plain.obs)  # true last obs
    np.testing.assert_allclose(out.reward, plain.reward, rtol=1e-6)
    np.testing.assert_array_equal(out.obs[2], fresh.obs[2])  # reset with the carried key
    keep = np.array([0, 1, 3])  # envs that were not done
    np.testing.assert_array_equal(out.obs[keep], plain.obs[keep])
    np.testing.assert_array_equal(out.info["steps"], [1, 2, 0, 1])
    new_keys, old_keys = (jax.random.key_data(s.info["rng"]) for s in (out, state))
    assert not np.array_equal(new_keys[2], old_keys[2])
    np.testing.assert_array_equal(new_keys[keep], old_keys[keep])
    again = jax.jit(batched.step)(out, actions)  # the reset env runs on from its new episode
    np.testing.assert_array_equal(again.done, [0, 1, 0, 0])


def test_make_options():
    assert jax.default_backend() != "cpu" or E.resolve_backend("auto") == "mujoco"
    with pytest.raises(ValueError):
        E.make("pong")
    with pytest.raises(TypeError, match="unknown solver settings"):
        E.make("hopper", backend="mujoco", iterationz=3)
    mjx_env = E.make("hopper", backend="mjx", iterations=2, ls_iterations=3, solver="cg")
    opt = mjx_env.physics.model.opt
    assert (opt.iterations, opt.ls_iterations, opt.solver) == (2, 3, mujoco.mjtSolver.mjSOL_CG)
    assert opt.integrator == mujoco.mjtIntegrator.mjINT_RK4  # the model file's
    euler = E.make("hopper", backend="mjx", integrator="euler").physics.model.opt.integrator
    assert euler == mujoco.mjtIntegrator.mjINT_EULER
    with pytest.raises(ValueError, match="integrator must be None or one of"):
        E.make("hopper", backend="mjx", integrator="rk5")
    assert E.make("ant", backend="mujoco").physics.model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    pyramidal = E.make("ant", backend="mujoco", elliptic_cone=False)
    assert pyramidal.physics.model.opt.cone == mujoco.mjtCone.mjCONE_PYRAMIDAL
    assert E.make("ant", backend="mujoco").dt == pytest.approx(0.05)
    assert E.make("hopper", backend="mujoco").dt == pytest.approx(0.008)


def test_brax_adapter():
    """A brax env (spring backend: the quickest to compile) behind rlgen's interface."""
    env = E.from_brax(brax.envs.get_environment("inverted_pendulum", backend="spring"), 3)
    state = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), 2))
    assert state.obs.shape == (2, env.observation_size) and env.action_size == 1
    step = jax.jit(jax.vmap(env.step))
    dones = []
    for _ in range(3):
        state = step(state, jnp.zeros((2, env.action_size)))
        dones.append(state.done)
    np.testing.assert_array_equal(dones, [[0, 0], [0, 0], [1, 1]])
    np.testing.assert_array_equal(state.info["truncation"], [1, 1])
    np.testing.assert_array_equal(state.info["terminated"], [0, 0])
    assert state.reward.shape == (2,) and np.all(np.asarray(state.reward) == 1.0)
    assert "inner" in state.info


@struct.dataclass
class PlaygroundState:
    """MuJoCo Playground's State layout: the physics state is called `data`."""

    data: Any
    obs: jax.Array
    reward: jax.Array
    done: jax.Array
    metrics: dict
    info: dict


class PointMass:
    """Tiny Playground-shaped env: done (terminated) once |x| > 1."""

    action_size, observation_size, dt = 1, 1, 0.5

    def reset(self, key):
        x = jax.random.uniform(key, (1,), minval=-0.1, maxval=0.1)
        zero = jnp.zeros(())
        return PlaygroundState({"x": x}, x, zero, zero, {"speed": zero}, {"last_action": zero})

    def step(self, state, action):
        x = state.data["x"] + action * self.dt
        done = (jnp.abs(x[0]) > 1).astype(jnp.float32)
        metrics = {"speed": jnp.abs(action[0])}
        info = {"last_action": action[0]}
        return PlaygroundState({"x": x}, x, -jnp.abs(x[0]), done, metrics, info)


def test_playground_adapter_maps_data_and_termination():
    env = E.from_brax(PointMass(), max_episode_steps=10)
    state = jax.jit(env.reset)(jax.random.key(0))
    step = jax.jit(env.step)
    state = step(state, jnp.array([1.5]))  # x ~ 0.75
    assert state.done == 0 and state.info["inner"]["last_action"] == 1.5
    np.testing.assert_allclose(state.pipeline_state["x"], state.obs)
    state = step(state, jnp.array([1.0]))  # x ~ 1.25
    assert (state.done, state.info["terminated"], state.info["truncation"]) == (1, 1, 0)
    assert state.metrics["speed"] == 1.0 and state.info["steps"] == 2
    assert env.observation_size == 1
