import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batch
from scipy.special import logsumexp

from rlgen.agents import cql
from rlgen.data.transition import Transition

OBS, ACT, B = 3, 2, 16
# Jitted once per static variant and shape: on a CPU, eager op-by-op dispatch compiles every op.
PENALTY = jax.jit(cql.cql_penalty, static_argnames=("calibrated", "action_dim"))


def _batch(seed, lead=(B,), mc_return=0.0):
    return random_batch(seed, OBS, ACT, lead, mc_return=mc_return)


def _np_penalty(q_data, q_u, q_pi, lp_pi, q_next, lp_next, mc, calibrated, d, temp=1.0):
    q_data, q_u, q_pi, lp_pi, q_next, lp_next, mc = (
        np.asarray(x, np.float64) for x in (q_data, q_u, q_pi, lp_pi, q_next, lp_next, mc)
    )
    if calibrated:
        q_pi, q_next = np.maximum(q_pi, mc[:, None]), np.maximum(q_next, mc[:, None])
    cat = np.concatenate([q_u - np.log(0.5**d), q_pi - lp_pi, q_next - lp_next], -1)
    return (temp * logsumexp(cat / temp, axis=-1) - q_data).mean(-1)


def _random_q(seed, k=2, n=5):
    rng = np.random.default_rng(seed)
    shapes = [(k, B), (k, B, n), (k, B, n), (B, n), (k, B, n), (B, n), (B,)]
    return tuple(rng.normal(size=shape).astype(np.float32) for shape in shapes)


def test_calibration_bound_applied_exactly_where_q_is_below_mc_return():
    q = jnp.array([[[1.0, -2.0, 0.5], [3.0, 4.0, -1.0]], [[0.0, 0.2, 9.0], [-5.0, 2.0, 2.5]]])
    mc_return = jnp.array([0.3, 2.5])
    bounded = cql.calibrate(q, mc_return)
    expected = np.array([[[1.0, 0.3, 0.5], [3.0, 4.0, 2.5]], [[0.3, 0.3, 9.0], [2.5, 2.5, 2.5]]])
    np.testing.assert_array_equal(bounded, expected.astype(np.float32))
    changed = np.asarray(bounded != q)
    np.testing.assert_array_equal(changed, np.asarray(q < mc_return[:, None]))


def test_penalty_bounds_policy_samples_only_and_matches_numpy():
    q_data = jnp.array([[1.0, 0.0]])
    q_uniform = jnp.array([[[-3.0, -2.0], [-4.0, 0.5]]])  # below mc_return: must stay unbounded
    q_pi = jnp.array([[[-1.0, 2.0], [0.0, -0.5]]])
    q_next = jnp.array([[[0.5, 0.1], [3.0, -2.0]]])
    logp_pi = jnp.array([[0.2, -0.3], [1.0, 0.0]])
    logp_next = jnp.array([[-1.0, 0.4], [0.3, 0.3]])
    mc_return = jnp.array([0.0, 1.0])
    args = (q_data, q_uniform, q_pi, logp_pi, q_next, logp_next, mc_return)
    penalty, rate = PENALTY(*args, calibrated=True, action_dim=ACT)
    np.testing.assert_allclose(penalty, _np_penalty(*args, True, ACT), rtol=1e-6)
    # Bounding the uniform samples too would change the result.
    raised = (q_data, cql.calibrate(q_uniform, mc_return), *args[2:])
    assert not np.allclose(penalty, _np_penalty(*raised, True, ACT))
    # Policy-sampled values below mc_return: -1 (row 0); 0, -0.5 (row 1); -2 (row 1, next).
    assert float(rate) == pytest.approx(4 / 8)


@pytest.mark.parametrize("temp", [1.0, 0.5])
def test_penalty_matches_numpy_on_random_values(temp):
    args = _random_q(0)
    for calibrated in (True, False):
        penalty, _ = PENALTY(*args, calibrated=calibrated, action_dim=ACT, temp=temp)
        assert penalty.shape == (2,)
        expected = _np_penalty(*args, calibrated, ACT, temp)
        np.testing.assert_allclose(penalty, expected, rtol=1e-5, atol=1e-5)


def test_uncalibrated_penalty_is_plain_cql():
    q_data, q_u, q_pi, lp_pi, q_next, lp_next, _ = _random_q(1)
    high = jnp.full((B,), 100.0)  # would dominate everything if it were applied
    plain, rate = PENALTY(q_data, q_u, q_pi, lp_pi, q_next, lp_next, high, False, ACT)
    direct = logsumexp(
        np.concatenate([q_u + ACT * math.log(2.0), q_pi - lp_pi, q_next - lp_next], -1), axis=-1
    )
    np.testing.assert_allclose(plain, (direct - np.asarray(q_data)).mean(-1), rtol=1e-5)
    assert float(rate) == 1.0  # reported, not applied
    calibrated, _ = PENALTY(q_data, q_u, q_pi, lp_pi, q_next, lp_next, high, True, ACT)
    assert np.all(np.asarray(calibrated) > 90.0)


def test_max_target_backup_on_hand_built_values():
    next_q = jnp.array(
        [[[1.0, 5.0, 3.0], [0.0, -1.0, 2.0]], [[2.0, 4.0, 6.0], [1.0, -3.0, 0.5]]]
    )  # (K=2, B=2, N=3): min over critics [[1, 4, 3], [0, -3, 0.5]]
    next_logp = jnp.array([[0.1, 0.2, 0.3], [1.0, 2.0, 3.0]])
    value = cql.backup_value(next_q, next_logp, 0.5, backup_entropy=False)
    np.testing.assert_allclose(value, [4.0, 0.5])
    value = cql.backup_value(next_q, next_logp, 0.5, backup_entropy=True)
    np.testing.assert_allclose(value, [4.0 - 0.5 * 0.2, 0.5 - 0.5 * 3.0])
    single = cql.backup_value(next_q[..., :1], next_logp[:, :1], 0.5, backup_entropy=False)
    np.testing.assert_allclose(single, [1.0, 0.0])  # N = 1: the plain SAC backup


# One config, one compiled init and one compiled (vmapped) update shared by the tests below: on
# a CPU compiling dominates. Two states per call; hyperparameters vary along the same axis.
CONFIG = cql.Config(OBS, ACT, hidden=(16, 16), num_samples=3, lagrange=True)
STATE = jax.jit(lambda key: cql.init(key, CONFIG))(jax.random.key(0))
UPDATE = jax.jit(jax.vmap(functools.partial(cql.update, CONFIG)))
KEYS = jax.random.split(jax.random.key(0), 2)


def _states(**hp):
    """Two copies of STATE with per-copy hyperparameters ``hp`` (pairs of values)."""
    states = jax.tree.map(lambda x: np.stack([x, x]), STATE)
    return states.replace(
        hp=states.hp.replace(**{k: np.asarray(v, np.float32) for k, v in hp.items()})
    )


def _stack(batch):
    return jax.tree.map(lambda x: np.stack([x, x]), batch)


def test_td_target_uses_max_backup_and_stops_at_terminal():
    batch = _batch(1).replace(terminal=np.arange(B) % 2 * np.float32(1.0))
    actions = np.random.default_rng(2).uniform(-1, 1, (B, 3, ACT)).astype(np.float32)
    single = dataclasses.replace(CONFIG, max_target_backup=False)

    @jax.jit
    def targets_and_q():
        logp = jnp.zeros((B, 3))
        next_q = cql.q_at(CONFIG, STATE.target_critic, batch.next_obs, actions).min(0)
        max_backup = cql.td_target(CONFIG, STATE, batch, actions, logp)
        return max_backup, cql.td_target(single, STATE, batch, actions, logp), next_q

    max_backup, first_action, next_q = targets_and_q()
    not_done = 0.99 * (1 - batch.terminal)
    np.testing.assert_allclose(max_backup, batch.reward + not_done * next_q.max(-1), rtol=1e-6)
    np.testing.assert_allclose(first_action, batch.reward + not_done * next_q[:, 0], rtol=1e-6)
    np.testing.assert_array_equal(max_backup[1::2], batch.reward[1::2])


def test_lagrange_alpha_prime_follows_the_gap():
    state = STATE.replace(hp=STATE.hp.replace(target_gap=jnp.float32(1.0)))
    step = jax.jit(cql.update_alpha_prime)
    up, down = step(state, jnp.array([3.0, 2.0])), step(state, jnp.array([0.5, 0.0]))
    assert float(cql.alpha_prime(up)) > float(cql.alpha_prime(state)) > float(cql.alpha_prime(down))
    # Through ``update``: the penalty at init (a few units) is far above -100 and below 100.
    states = _states(target_gap=[-100.0, 100.0])
    new, metrics = UPDATE(states, _stack(_batch(1, (2, B))), KEYS)
    change = np.asarray(new.log_alpha_prime.params) - np.asarray(states.log_alpha_prime.params)
    assert change[0] > 0 > change[1]


def test_calibration_rate_metric_and_bound_through_update():
    low = _batch(1, (2, B), mc_return=-1e3)
    high = low.replace(mc_return=-low.mc_return)
    _, metrics = UPDATE(_states(), jax.tree.map(lambda a, b: np.stack([a, b]), low, high), KEYS)
    np.testing.assert_array_equal(metrics["calibration_rate"], [0.0, 1.0])
    assert float(metrics["penalty"][1]) > 900.0 > float(metrics["penalty"][0])


def test_update_on_stacks_vmapped_over_seeds_and_hparams():
    states = _states(cql_alpha=[0.0, 5.0])
    batches = _stack(_batch(1, (2, B)))
    out, metrics = UPDATE(states, batches, KEYS)
    np.testing.assert_array_equal(out.step, [1, 1])
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    assert metrics["cql_weight"][0] == 0.0 and metrics["cql_weight"][1] > 4.9
    again, _ = UPDATE(states, batches, KEYS)
    same = jax.tree.map(np.array_equal, out.critic.params, again.critic.params)
    assert all(jax.tree.leaves(same)), "same key must give the same result"
    moved = jax.tree.map(np.array_equal, out.target_critic, states.target_critic)
    assert not any(jax.tree.leaves(moved)), "the target critic follows the critic"
    act = jax.jit(functools.partial(cql.act, CONFIG), static_argnames="deterministic")
    new = jax.tree.map(lambda x: np.asarray(x)[0], out)
    for obs in (jnp.zeros((5, OBS)), jnp.zeros(OBS)):
        action = act(new, obs, jax.random.key(0))
        assert action.shape == (*obs.shape[:-1], ACT) and float(jnp.abs(action).max()) <= 1.0
        assert act(new, obs, None, deterministic=True).shape == action.shape


def test_networks_start_as_cal_ql_code_q_near_zero_and_log_std_near_minus_one():
    """Cal-QL's code: orthogonal layers, output gain 1e-2, log-std = m * out + b from (1, -1)."""
    config = cql.Config(OBS, ACT, hidden=(256, 256))
    state = cql.init(jax.random.key(0), config)
    obs = jax.random.normal(jax.random.key(1), (64, OBS))
    actions = jax.random.uniform(jax.random.key(2), (64, 10, ACT), minval=-1, maxval=1)
    assert np.abs(cql.q_at(config, state.critic.params, obs, actions)).max() < 0.1
    mean, log_std = cql.networks(config)[0].apply(state.actor.params, obs)
    assert np.abs(mean).max() < 0.1 and np.abs(log_std + 1.0).max() < 0.1
    lecun = cql.Config(OBS, ACT, hidden=(256, 256), initializer="lecun", log_std_offset=None)
    state = cql.init(jax.random.key(0), lecun)
    assert np.abs(cql.q_at(lecun, state.critic.params, obs, actions)).max() > 0.3


def test_config_validation():
    with pytest.raises(ValueError, match="unknown initializer 'xavier'"):
        cql.Config(OBS, ACT, initializer="xavier")
    with pytest.raises(ValueError, match="num_samples"):
        cql.Config(OBS, ACT, num_samples=0)
    with pytest.raises(ValueError, match="do not match"):
        cql.update(CONFIG, None, Transition.zeros(OBS + 1, ACT, (B,)), None)


def test_plain_cql_backs_up_one_action_and_calql_the_max():
    from rlgen.train.finetune import FinetuneConfig

    spec = lambda **kw: FinetuneConfig(**kw).agent_spec(OBS, ACT)[1]  # noqa: E731
    assert not spec(algo="cql").max_target_backup  # CQL as published for MuJoCo
    assert spec(algo="calql").max_target_backup  # Cal-QL's official code
    assert spec(algo="cql", max_target_backup="on").max_target_backup
    assert not spec(algo="calql", max_target_backup="off").max_target_backup


def test_temperature_rates_follow_the_policy_and_critic_rates_and_alpha_prime_starts_at_e():
    hp = cql.resolve_hparams(cql.HParams(actor_lr=3e-5, critic_lr=2e-4))
    assert float(hp.alpha_lr) == pytest.approx(3e-5)
    assert float(hp.alpha_prime_lr) == pytest.approx(2e-4)
    assert float(cql.resolve_hparams(cql.HParams(alpha_lr=1e-2)).alpha_lr) == pytest.approx(1e-2)
    assert float(cql.alpha_prime(STATE)) == pytest.approx(math.e, rel=1e-6)


def test_penalty_and_backup_draw_separate_next_actions():
    batch = _batch(3)
    samples = jax.jit(lambda: cql.policy_samples(CONFIG, STATE, batch, jax.random.key(4)))()
    (a_pi, _), (a_next, _), (a_backup, _) = samples
    assert a_pi.shape == a_next.shape == a_backup.shape == (B, 3, ACT)
    assert not np.allclose(a_next, a_backup)
