"""The actor-critic core through the smallest algorithm built on it (agents/ddpg.py)."""

import chex
import jax
import numpy as np
import pytest

from rlgen.agents import core, ddpg
from rlgen.data.transition import Transition

OBS, ACT = 2, 1


def bandit(rng, n):
    """One-step episodes with reward -(a - a*(s))^2, a*(s) = 0.6 tanh(s_0), random actions."""
    obs = rng.normal(size=(n, OBS)).astype(np.float32)
    action = rng.uniform(-1, 1, (n, ACT)).astype(np.float32)
    reward = -((action[:, 0] - best_action(obs)) ** 2)
    ones = np.ones(n, np.float32)
    return Transition(obs, action, reward, obs, ones, 0 * ones, reward)


def best_action(obs):
    return 0.6 * np.tanh(obs[:, 0])


def train(hp, seed=0, updates=1_500, utd=50, batch=64):
    """DDPG's mean deterministic action error after ``updates`` steps on a contextual bandit."""
    config = ddpg.Config(OBS, ACT, hidden=(32, 32))
    agent = ddpg.make_agent(config, hp)
    rng = np.random.default_rng(seed)
    data = bandit(rng, 4096)
    state = agent.init(jax.random.key(seed))
    update = jax.jit(agent.update)
    for _ in range(updates // utd):
        rows = rng.integers(0, 4096, (utd, batch))
        batches = jax.tree.map(lambda x, rows=rows: x[rows], data)
        state, metrics = update(state, batches, jax.random.key(1))
    test_obs = rng.normal(size=(256, OBS)).astype(np.float32)
    action = np.asarray(agent.act(state, test_obs, jax.random.key(2), True))[:, 0]
    return np.abs(action - best_action(test_obs)).mean(), metrics


def test_ddpg_through_the_core_finds_the_best_action_of_a_bandit():
    """Seeds 0-9 (init and data), mean |action error|: min / median / max 0.040 / 0.052 / 0.074;
    with the actor's learning rate at zero (the update broken) 0.23 / 0.41 / 0.63."""
    error, metrics = train(ddpg.HParams())
    assert error < 0.12, error
    assert set(metrics) == {"td_loss", "q_pi"} and np.isfinite(float(metrics["td_loss"]))


def test_stack_checks_sizes_and_lifts_a_single_batch():
    batch = bandit(np.random.default_rng(1), 8)
    config = ddpg.Config(OBS, ACT)
    assert core.as_stack(config, batch).obs.shape == (1, 8, OBS)
    with pytest.raises(ValueError, match="obs/action dims 2/1 do not match config 3/1"):
        core.as_stack(ddpg.Config(3, ACT), batch)


def test_ddpg_step_bootstraps_from_the_targets_and_polyak_averages_them():
    """One step on a batch with terminal = 0 and 1: the reported TD loss is the hand-computed
    one against r + gamma (1 - terminal) Q_target(s', pi_target(s')), with targets that differ
    from the online nets, and both targets move by tau towards the stepped nets."""
    config = ddpg.Config(OBS, ACT, hidden=(8, 8))
    rng = np.random.default_rng(3)
    batch = bandit(rng, 16)
    batch = batch.replace(
        next_obs=rng.normal(size=(16, OBS)).astype(np.float32),
        terminal=(np.arange(16) % 2).astype(np.float32),
    )
    state = ddpg.init(jax.random.key(0), config)
    other = ddpg.init(jax.random.key(1), config)  # targets unlike the online nets
    state = state.replace(target_actor=other.actor.params, target_critic=other.critic.params)
    hp = state.hp.replace(gamma=np.float32(0.9), tau=np.float32(0.25))
    state = state.replace(hp=hp)
    new, metrics = jax.jit(lambda s, b: ddpg.update_step(config, s, b))(state, batch)

    actor, critic = ddpg.networks(config)
    next_a = actor.apply(state.target_actor, batch.next_obs)
    next_q = np.asarray(critic.apply(state.target_critic, batch.next_obs, next_a)[0])
    target = batch.reward + 0.9 * (1 - batch.terminal) * next_q
    q = np.asarray(critic.apply(state.critic.params, batch.obs, batch.action)[0])
    np.testing.assert_allclose(float(metrics["td_loss"]), np.mean((q - target) ** 2), rtol=1e-5)
    for old, online, moved in (
        (state.target_actor, new.actor.params, new.target_actor),
        (state.target_critic, new.critic.params, new.target_critic),
    ):
        expected = jax.tree.map(lambda t, o: 0.75 * t + 0.25 * o, old, online)
        chex.assert_trees_all_close(moved, expected, rtol=1e-6)
    assert int(new.step) == 1
