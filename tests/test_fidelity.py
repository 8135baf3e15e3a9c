"""Fidelity metrics: simulator consistency of transitions, marginal moments and MMD."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlgen.envs as E
from rlgen.data import Transition
from rlgen.gen import fidelity as F


def collect(name: str, num_envs: int, steps: int, seed: int = 0) -> Transition:
    """Random-action transitions from rlgen's C-MuJoCo env, (num_envs * steps,) rows."""
    env = E.AutoReset(E.make(name, backend="mujoco"))

    def body(state, key):
        action = jax.random.uniform(key, (num_envs, env.action_size), minval=-1, maxval=1)
        new = env.step(state, action)
        zero = jnp.zeros(num_envs)
        row = Transition(
            obs=state.obs,
            action=action,
            reward=new.reward,
            next_obs=new.info["final_obs"],
            terminal=new.info["terminated"].astype(jnp.float32),
            truncated=zero,
            mc_return=zero,
        )
        return new, row

    k_reset, k_run = jax.random.split(jax.random.key(seed))
    state = env.reset(jax.random.split(k_reset, num_envs))
    run = jax.jit(lambda s, k: jax.lax.scan(body, s, jax.random.split(k, steps))[1])
    return jax.tree.map(lambda x: np.asarray(x).reshape(-1, *x.shape[2:]), run(state, k_run))


@pytest.fixture(scope="module")
def hopper():
    return collect("hopper", num_envs=8, steps=40)


def test_real_transitions_match_the_simulator(hopper):
    assert hopper.terminal.sum() > 0  # terminations are exercised
    err = F.dynamics_error("hopper", hopper)
    assert err["next_obs_mse"] < 1e-12 and err["next_obs_mae"] < 1e-6
    assert err["reward_mae"] < 1e-5
    assert err["terminal_agreement"] == 1.0
    assert err["unstable_rate"] == 0.0 and err["clipped_rate"] == 0.0
    assert err["num"] == len(hopper)


def test_ant_compares_all_105_dims():
    """Ant's contact forces are outputs of the step and match; its reward has a small floor
    (stale xpos, see the module docstring)."""
    real = collect("ant", num_envs=4, steps=20)
    assert np.abs(real.next_obs[:, 27:]).max() > 0.1  # contact forces present
    err = F.dynamics_error("ant", real)
    assert err["next_obs_mse"] < 1e-9
    assert err["reward_mae"] < 0.05
    assert err["terminal_agreement"] == 1.0


def test_shuffled_baseline_is_far(hopper):
    real = F.dynamics_error("hopper", hopper)
    shuffled = F.dynamics_error("hopper", F.shuffle_outcomes(hopper))
    assert shuffled["next_obs_mse"] > 1e8 * real["next_obs_mse"]
    assert shuffled["next_obs_mse"] > 0.1 and shuffled["reward_mae"] > 0.1


def test_known_perturbation_gives_known_error(hopper):
    n, dim = hopper.next_obs.shape
    shift = np.zeros(dim, np.float32)
    shift[3] = 0.5
    flip = np.zeros(n, bool)
    flip[:8] = True
    perturbed = hopper.replace(
        next_obs=hopper.next_obs + shift,
        reward=hopper.reward - 0.25,
        terminal=np.where(flip, 1.0 - hopper.terminal, hopper.terminal),
    )
    err = F.dynamics_error("hopper", perturbed)
    assert err["next_obs_mse"] == pytest.approx(0.25 / dim, rel=1e-4)
    assert err["next_obs_mae_median"] == pytest.approx(0.5 / dim, rel=1e-4)
    assert err["reward_mae"] == pytest.approx(0.25, rel=1e-4)
    assert err["terminal_agreement"] == pytest.approx(1 - 8 / n)


def test_clipped_velocities_are_flagged_and_can_be_excluded(hopper):
    """An obs velocity at the clip bound (10) does not give the true state back."""
    obs = hopper.obs.copy()
    obs[:20, 8] = 10.0
    err = F.dynamics_error("hopper", hopper.replace(obs=obs))
    assert err["clipped_rate"] == pytest.approx(20 / len(obs))
    assert err["next_obs_mse"] > 1e-6
    kept = F.dynamics_error("hopper", hopper.replace(obs=obs), exclude_clipped=True)
    assert kept["num"] == len(obs) - 20 and kept["next_obs_mse"] < 1e-12


def test_bad_inputs_are_named(hopper):
    with pytest.raises(ValueError, match="next_obs"):
        F.dynamics_error("hopper", hopper.replace(next_obs=hopper.next_obs * np.nan))
    with pytest.raises(ValueError, match="expected obs"):
        F.dynamics_error("hopper", hopper.replace(obs=hopper.obs[:, :10]))
    with pytest.raises(ValueError, match="unknown env"):
        F.dynamics_error("pong", hopper)


def test_fidelity_report(hopper):
    gen = hopper.replace(next_obs=hopper.next_obs + 0.1)
    report = F.fidelity_report("hopper", gen, hopper, num=100)
    assert report["real"]["next_obs_mse"] < 1e-12
    assert report["generated"]["next_obs_mse"] == pytest.approx(0.01, rel=1e-3)
    assert report["shuffled"]["next_obs_mse"] > report["generated"]["next_obs_mse"]
    assert report["generated"]["num"] == report["real"]["num"] == 100
    assert report["marginals"]["max_abs_smd"] > 0  # next_obs moved
    assert abs(report["state_mmd"]) < 0.05  # same obs distribution


def test_marginal_stats_known_values():
    y = np.random.default_rng(0).normal(size=(1000, 3))
    y = (y - y.mean(0)) / y.std(0)
    y[:, 2] = 1.0  # constant: left out
    x = 2.0 * y + 0.5
    stats = F.marginal_stats(x, y)
    assert stats["abs_smd"] == pytest.approx(0.5) and stats["max_abs_smd"] == pytest.approx(0.5)
    assert stats["std_ratio"] == pytest.approx(2.0)
    assert stats["max_abs_log_std_ratio"] == pytest.approx(math.log(2.0))
    assert stats["constant_dims"] == 1 and np.isnan(stats["per_dim_smd"][2])


def test_mmd_hand_computed():
    """x = {0, 1, 2}, y = {1, 1, 3}, bandwidth 1/sqrt(2) so k = exp(-d^2)."""
    x, y = jnp.array([[0.0], [1.0], [2.0]]), jnp.array([[1.0], [1.0], [3.0]])
    e = math.exp
    kxx = 2 * (2 * e(-1) + e(-4)) / 6
    kyy = 2 * (1 + 2 * e(-4)) / 6
    kxy = (2 * e(-1) + e(-9) + 2 + e(-4) + 3 * e(-1)) / 9
    expected = kxx + kyy - 2 * kxy
    assert float(F.mmd(x, y, 1 / math.sqrt(2))) == pytest.approx(expected, rel=1e-5)


def test_mmd_chunks_and_median_bandwidth():
    k1, k2 = jax.random.split(jax.random.key(0))
    x, y = jax.random.normal(k1, (37, 4)), jax.random.normal(k2, (29, 4)) + 0.3
    # MMD^2 is a difference of O(1) kernel means: float32 rounding leaves ~1e-7 absolute error
    np.testing.assert_allclose(F.mmd(x, y, block=5), F.mmd(x, y), rtol=0, atol=1e-6)
    pooled = np.concatenate([x, y]).astype(np.float64)
    d = np.sqrt(((pooled[:, None] - pooled[None]) ** 2).sum(-1))
    median = np.median(d[np.triu_indices(len(pooled), 1)])
    np.testing.assert_allclose(F.mmd(x, y), F.mmd(x, y, median), rtol=1e-4)


def test_mmd_gaussians_match_closed_form():
    """N(0, I) vs N(delta, I) in d dims, bandwidth s: MMD^2 =
    2 (s^2 / (s^2 + 2))^(d/2) (1 - exp(-|delta|^2 / (2 (s^2 + 2))))."""
    d, s, n = 2, 1.0, 1000
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    x, same = jax.random.normal(k1, (n, d)), jax.random.normal(k2, (n, d))
    shifted = jax.random.normal(k3, (n, d)) + jnp.array([1.0, 0.0])
    expected = 2 * (s**2 / (s**2 + 2)) ** (d / 2) * (1 - math.exp(-1 / (2 * (s**2 + 2))))
    assert abs(float(F.mmd(x, same, s))) < 0.01
    assert float(F.mmd(x, shifted, s)) == pytest.approx(expected, rel=0.15)
    assert float(F.mmd(x, shifted)) > 10 * abs(float(F.mmd(x, same)))
