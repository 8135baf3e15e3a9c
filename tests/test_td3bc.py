import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batch

from rlgen.agents import td3bc
from rlgen.agents.common import with_obs_normalizer
from rlgen.data.transition import Transition

OBS, ACT, B = 3, 2, 16
CONFIG = td3bc.Config(OBS, ACT, hidden=(16, 16))
STATE = jax.jit(lambda key: td3bc.init(key, CONFIG))(jax.random.key(0))


def _batch(seed, lead=(B,)):
    return random_batch(seed, OBS, ACT, lead)


def test_actor_loss_matches_the_formula():
    batch = _batch(1)
    actor, critic = td3bc.networks(CONFIG)
    pi = np.asarray(actor.apply(STATE.actor.params, batch.obs), np.float64)
    q1 = np.asarray(critic.apply(STATE.critic.params, batch.obs, pi.astype(np.float32))[0])
    for bc_weight in (1.0, 0.0):
        hp = STATE.hp.replace(bc_weight=jnp.float32(bc_weight))
        loss, metrics = td3bc.actor_loss(CONFIG, STATE.actor.params, STATE.critic.params, hp, batch)
        lam = 2.5 / np.abs(q1).mean()
        expected = -lam * q1.mean() + bc_weight * ((pi - batch.action) ** 2).mean()
        assert float(loss) == pytest.approx(expected, rel=1e-5)
        assert float(metrics["lambda"]) == pytest.approx(lam, rel=1e-5)
    # lambda is a constant: the gradient is that of -lambda Q1 + BC with lambda held fixed.
    fixed = lambda p: (
        -lam * critic.apply(STATE.critic.params, batch.obs, actor.apply(p, batch.obs))[0].mean()
        + ((actor.apply(p, batch.obs) - batch.action) ** 2).mean()
    )
    grads = jax.grad(
        lambda p: td3bc.actor_loss(CONFIG, p, STATE.critic.params, STATE.hp, batch)[0]
    )(STATE.actor.params)
    for g, e in zip(jax.tree.leaves(grads), jax.tree.leaves(jax.grad(fixed)(STATE.actor.params)),
                    strict=True):  # fmt: skip
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)


def test_target_policy_smoothing_noise_is_clipped():
    state = STATE.replace(hp=STATE.hp.replace(policy_noise=jnp.float32(10.0)))
    next_obs = np.random.default_rng(0).normal(size=(4096, OBS)).astype(np.float32)
    smoothed = td3bc.smoothed_target_action(CONFIG, state, next_obs, jax.random.key(1))
    base = td3bc.networks(CONFIG)[0].apply(state.target_actor, next_obs)
    shift = np.asarray(smoothed - base)
    assert np.abs(shift).max() <= 0.5 + 1e-6  # noise_clip
    assert np.isclose(np.abs(shift), 0.5, atol=1e-6).mean() > 0.8  # std 10: most noise clipped
    assert np.abs(np.asarray(smoothed)).max() <= 1.0


def test_delayed_actor_update_and_vmap():
    update = jax.jit(jax.vmap(functools.partial(td3bc.update, CONFIG)))
    states = jax.tree.map(lambda x: np.stack([x, x]), STATE)
    states = states.replace(hp=states.hp.replace(bc_weight=np.array([1.0, 0.0], np.float32)))
    keys = jax.random.split(jax.random.key(0), 2)
    batches = jax.tree.map(lambda x: np.stack([x, x]), _batch(2, (1, B)))
    equal = lambda a, b: all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))

    first, metrics = update(states, batches, keys)  # critic step 1: no actor step
    np.testing.assert_array_equal(first.step, [1, 1])
    np.testing.assert_array_equal(metrics["actor_updated"], [False, False])
    assert not equal(first.critic.params, states.critic.params)
    assert equal(first.actor, states.actor)
    assert equal(first.target_actor, states.target_actor)
    assert equal(first.target_critic, states.target_critic)

    second, metrics = update(first, batches, keys)  # critic step 2: actor and targets move
    np.testing.assert_array_equal(metrics["actor_updated"], [True, True])
    for new, old in (
        (second.actor.params, first.actor.params),
        (second.target_actor, first.target_actor),
        (second.target_critic, first.target_critic),
    ):
        changed = jax.tree.map(lambda a, b: np.any(a != b, axis=tuple(range(1, a.ndim))), new, old)
        assert np.all(np.any(jax.tree.leaves(changed), axis=0)), "each seed's tree moves"
    # bc_weight differs per seed, so the actors differ after their first step.
    assert not all(np.array_equal(x[0], x[1]) for x in jax.tree.leaves(second.actor.params))


def test_act_noise_and_bounds():
    obs = np.zeros((512, OBS), np.float32)
    greedy = td3bc.act(CONFIG, STATE, obs, None, deterministic=True)
    explore = td3bc.act(CONFIG, STATE, obs, jax.random.key(0))
    spread = np.asarray(explore - greedy).std()
    assert 0.07 < spread < 0.13  # expl_noise 0.1
    loud = STATE.replace(hp=STATE.hp.replace(expl_noise=jnp.float32(5.0)))
    assert np.abs(np.asarray(td3bc.act(CONFIG, loud, obs, jax.random.key(0)))).max() == 1.0


def test_validation():
    with pytest.raises(ValueError, match="policy_freq"):
        td3bc.Config(OBS, ACT, policy_freq=0)
    with pytest.raises(ValueError, match="do not match"):
        td3bc.update(CONFIG, STATE, Transition.zeros(OBS + 2, ACT, (B,)), None)


def test_obs_normalizer_wrapper_feeds_z_scored_observations():
    agent = td3bc.make_agent(CONFIG)
    mean, std = jnp.array([1.0, -2.0, 0.5]), jnp.array([2.0, 0.5, 4.0])
    wrapped = with_obs_normalizer(agent, mean, std)
    batch, key = _batch(3, lead=(2, B)), jax.random.key(1)
    z = batch.replace(obs=(batch.obs - mean) / std, next_obs=(batch.next_obs - mean) / std)
    got, _ = wrapped.update(STATE, batch, key)
    want, _ = agent.update(STATE, z, key)
    chex.assert_trees_all_close(got, want)
    obs = batch.obs[0]
    np.testing.assert_array_equal(
        wrapped.act(STATE, obs, key, deterministic=True),
        agent.act(STATE, (obs - mean) / std, key, deterministic=True),
    )
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        with_obs_normalizer(agent, mean[:2], std)
    with pytest.raises(ValueError, match="std must be positive"):
        with_obs_normalizer(agent, mean, std.at[1].set(0.0))
