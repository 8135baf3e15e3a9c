import numpy as np
import pytest

from rlgen.data import episode_ends, returns_to_go, trajectory_ids

GAMMA = 0.9


def rtg(rewards, terminals, timeouts, failure_reward=None, gamma=GAMMA):
    ends = episode_ends(np.asarray(terminals), np.asarray(timeouts))
    out = returns_to_go(
        np.asarray(rewards, np.float32),
        np.asarray(terminals),
        ends,
        gamma,
        failure_reward=failure_reward,
    )
    return np.asarray(out)


def test_dense_single_trajectory_by_hand():
    # G2 = 3, G1 = 2 + 0.9*3 = 4.7, G0 = 1 + 0.9*4.7 = 5.23 (last row ends the data)
    np.testing.assert_allclose(rtg([1, 2, 3], [0, 0, 0], [0, 0, 0]), [5.23, 4.7, 3.0], rtol=1e-6)


def test_terminal_mid_data_stops_bootstrap_and_restarts():
    # trajectory A: [1, 1] ends terminal; trajectory B: [2, 4]
    out = rtg([1, 1, 2, 4], [0, 1, 0, 0], [0, 0, 0, 0])
    np.testing.assert_allclose(out, [1 + 0.9 * 1, 1, 2 + 0.9 * 4, 4], rtol=1e-6)


def test_timeout_cuts_the_sum_without_leaking_the_next_trajectory():
    out = rtg([1, 1, 10, 10], [0, 0, 0, 0], [0, 1, 0, 0])
    np.testing.assert_allclose(out, [1.9, 1.0, 19.0, 10.0], rtol=1e-6)


def test_sparse_failure_rule_only_for_all_failure_trajectories():
    # A: all -1 (failure) -> -1/(1-0.9) = -10 everywhere; B: reaches reward 0 -> plain sum.
    out = rtg([-1, -1, -1, -1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0], failure_reward=-1.0)
    np.testing.assert_allclose(out[:3], [-10.0, -10.0, -10.0], rtol=1e-6)
    np.testing.assert_allclose(out[3:], [-1 + 0.9 * 0, 0.0], rtol=1e-6)


def test_rtg_recursion_invariant_on_random_data():
    rng = np.random.default_rng(0)
    n = 300
    rewards = rng.normal(size=n).astype(np.float32)
    terminals = rng.random(n) < 0.02
    timeouts = (rng.random(n) < 0.02) & ~terminals
    ends = np.asarray(episode_ends(terminals, timeouts))
    g = np.asarray(returns_to_go(rewards, terminals, ends, 0.99))
    for t in range(n):
        nxt = 0.0 if ends[t] else g[t + 1]
        assert g[t] == pytest.approx(rewards[t] + 0.99 * nxt, rel=1e-5, abs=1e-5)


def test_episode_ends_from_observation_discontinuity():
    obs = np.array([[0.0], [1.0], [5.0], [6.0]])
    next_obs = np.array([[1.0], [2.0], [6.0], [7.0]])  # row 1's next (2) != row 2's obs (5)
    ends = np.asarray(episode_ends(np.zeros(4), np.zeros(4), obs, next_obs))
    np.testing.assert_array_equal(ends, [False, True, False, True])
    np.testing.assert_array_equal(np.asarray(trajectory_ids(ends)), [0, 0, 1, 1])
