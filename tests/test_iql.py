import functools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_batch

from rlgen import nets
from rlgen.agents import core, iql
from rlgen.agents.common import Optimized
from rlgen.data.transition import Transition

OBS, ACT, B = 3, 2, 16
CONFIG = iql.Config(OBS, ACT, hidden=(16, 16))
STATE = jax.jit(lambda key: iql.init(key, CONFIG))(jax.random.key(0))


def _batch(seed, lead=(B,)):
    return random_batch(seed, OBS, ACT, lead, random_terminals=True)


def test_expectile_loss_on_known_values():
    diff = jnp.array([-1.0, 2.0])  # Q - V
    # Weights 1 - 0.7 = 0.3 below, 0.7 above: (0.3 * 1 + 0.7 * 4) / 2.
    assert float(iql.expectile_loss(diff, 0.7)) == pytest.approx(1.55)
    assert float(iql.expectile_loss(diff, 0.5)) == pytest.approx(0.5 * float((diff**2).mean()))
    # V below Q is penalised more with expectile > 0.5, so V is pushed up towards max Q.
    grad_v = jax.grad(lambda v: iql.expectile_loss(jnp.array([1.0, -1.0]) - v, 0.9))(0.0)
    assert float(grad_v) < 0


def test_advantage_weights_are_clipped_at_100():
    adv = jnp.array([-1.0, 0.0, 0.5, 2.0, 1e4])
    weights = iql.advantage_weights(adv, 3.0, 100.0)
    expected = [math.exp(-3.0), 1.0, math.exp(1.5), 100.0, 100.0]
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    assert float(weights[-1]) == 100.0 and np.all(np.isfinite(weights))


def test_q_target_uses_v_of_next_obs_and_terminal():
    batch = _batch(1)
    state = STATE.replace(hp=STATE.hp.replace(gamma=jnp.float32(0.9)))
    target = iql.q_target(CONFIG, state, batch)
    next_v = iql.networks(CONFIG)[2].apply(state.value.params, batch.next_obs)
    expected = batch.reward + 0.9 * (1.0 - batch.terminal) * next_v
    np.testing.assert_allclose(target, expected, rtol=1e-6)
    np.testing.assert_array_equal(target[batch.terminal == 1], batch.reward[batch.terminal == 1])
    # Only s' enters: changing s leaves the target alone.
    other_obs = batch.replace(obs=0 * batch.obs)
    np.testing.assert_array_equal(iql.q_target(CONFIG, state, other_obs), target)


def test_actor_loss_is_weighted_gaussian_log_likelihood_of_raw_actions():
    batch = _batch(2)
    action = np.asarray(batch.action).copy()
    action[: B // 2] = np.sign(action[: B // 2])  # half the rows at the bounds +-1
    batch = batch.replace(action=action)
    loss, _ = iql.actor_loss(CONFIG, STATE.actor.params, STATE, batch)
    actor, critic, value = iql.networks(CONFIG)
    adv = critic.apply(STATE.target_critic, batch.obs, batch.action).min(0) - value.apply(
        STATE.value.params, batch.obs
    )
    mean, log_std = actor.apply(STATE.actor.params, batch.obs)
    np.testing.assert_array_equal(log_std, 0.0)  # the reference's init
    logp = (-0.5 * (action - np.asarray(mean)) ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    expected = -(np.minimum(np.exp(3.0 * adv), 100.0) * logp).mean()
    assert np.isfinite(float(loss)) and float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_act_is_the_tanh_mean_or_a_clipped_gaussian_sample():
    obs = np.random.default_rng(4).normal(size=(64, OBS)).astype(np.float32)
    params = STATE.actor.params["params"]
    mean = jnp.tanh(nets.MLP(CONFIG.hidden, ACT).apply({"params": params["MLP_0"]}, obs))
    np.testing.assert_allclose(iql.act(CONFIG, STATE, obs, None, True), mean, rtol=1e-6)
    wide = {"params": {**params, "log_std": jnp.full((ACT,), 1.0)}}
    state = STATE.replace(actor=STATE.actor.replace(params=wide))
    key = jax.random.key(5)
    action = iql.act(CONFIG, state, obs, key)
    raw = mean + math.e * jax.random.normal(key, mean.shape)
    np.testing.assert_allclose(action, np.clip(raw, -1.0, 1.0), rtol=1e-5, atol=1e-6)
    assert np.any(np.abs(action) == 1.0) and float(jnp.abs(action).max()) <= 1.0


def test_initial_log_std_is_the_reference_zero_or_as_configured():
    np.testing.assert_array_equal(STATE.actor.params["params"]["log_std"], np.zeros(ACT))
    config = iql.Config(OBS, ACT, hidden=(16, 16), log_std_init=-1.5)  # d3rlpy's start
    _, log_std = iql.networks(config)[0].apply(
        iql.init(jax.random.key(0), config).actor.params, np.zeros((4, OBS), np.float32)
    )
    np.testing.assert_array_equal(log_std, np.full((4, ACT), -1.5, np.float32))


DECAY_CONFIG = iql.Config(OBS, ACT, hidden=(16, 16), actor_decay_steps=100)


def _with_decay(state, flag):
    return state.replace(hp=state.hp.replace(actor_lr_decay=jnp.float32(flag)))


def test_cosine_actor_schedule_and_switch_to_the_base_lr():
    def at(step, flag=1.0):
        state = _with_decay(STATE.replace(step=jnp.int32(step)), flag)
        return float(iql.actor_lr(DECAY_CONFIG, state))

    assert at(0) == pytest.approx(3e-4)
    assert at(25) == pytest.approx(3e-4 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert at(50) == pytest.approx(1.5e-4)
    assert at(75) == pytest.approx(3e-4 * 0.5 * (1 + math.cos(3 * math.pi / 4)))
    assert at(100) == pytest.approx(0.0, abs=1e-12) and at(200) == pytest.approx(0.0, abs=1e-12)
    assert at(50, 0.0) == pytest.approx(3e-4) and at(200, 0.0) == pytest.approx(3e-4)
    assert float(iql.actor_lr(CONFIG, STATE.replace(step=jnp.int32(10**6)))) == pytest.approx(3e-4)


def _frozen_then_moving(before, after):
    np.testing.assert_array_equal(after[0], before[0])
    assert not np.array_equal(after[1], before[1])


def test_update_stack_vmapped_over_seeds_expectile_and_actor_lr_decay():
    states = jax.tree.map(lambda x: np.stack([x, x]), STATE.replace(step=jnp.int32(150)))
    hp = states.hp.replace(
        expectile=np.array([0.5, 0.9], np.float32), actor_lr_decay=np.array([1, 0], np.float32)
    )
    batches = jax.tree.map(lambda x: np.stack([x, x]), _batch(3, (2, B)))
    update = jax.jit(jax.vmap(functools.partial(iql.update, DECAY_CONFIG)))
    out, metrics = update(states.replace(hp=hp), batches, jax.random.split(jax.random.key(0), 2))
    np.testing.assert_array_equal(out.step, [152, 152])  # one IQL step per scanned batch
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    # Same data, different expectiles: the value nets diverge.
    assert not all(np.array_equal(x[0], x[1]) for x in jax.tree.leaves(out.value.params))
    # Past the decay the actor is frozen (lr 0) unless the decay is switched off.
    jax.tree.map(_frozen_then_moving, states.actor.params, out.actor.params)
    single = jax.tree.map(lambda x: np.asarray(x)[0], out)
    action = iql.act(CONFIG, single, np.zeros((4, OBS), np.float32), jax.random.key(1))
    assert action.shape == (4, ACT) and float(jnp.abs(action).max()) <= 1.0
    mean, _ = iql.networks(CONFIG)[0].apply(single.actor.params, np.zeros((4, OBS), np.float32))
    np.testing.assert_array_equal(
        iql.act(CONFIG, single, np.zeros((4, OBS), np.float32), None, True), mean
    )


def test_validation():
    with pytest.raises(ValueError, match="actor_decay_steps"):
        iql.Config(OBS, ACT, actor_decay_steps=-1)
    with pytest.raises(ValueError, match="do not match"):
        iql.update(CONFIG, STATE, Transition.zeros(OBS, ACT + 1, (B,)))


# d3rlpy 2.8's IQL on fixed batches (benchmarks/peers/d3rlpy_iql_steps.py wrote the file)
D3RLPY = np.load(Path(__file__).parent / "fixtures" / "iql_d3rlpy_steps.npz")


def _d3rlpy_weights(prefix: str) -> tuple[dict, dict, dict, dict]:
    """d3rlpy's (actor, critic, target critic, value) weights as rlgen's parameter trees; the
    actor's log-std slot holds d3rlpy's raw parameter (its log-std is -5 + 7 sigmoid(raw))."""
    w = {k[len(prefix) + 1 :]: D3RLPY[k] for k in D3RLPY.files if k.startswith(prefix + "/")}

    def mlp(key_prefix: str, out: str) -> dict:
        names = (
            f"{key_prefix}_encoder._layers.0",
            f"{key_prefix}_encoder._layers.2",
            key_prefix + out,
        )
        return {
            f"Dense_{i}": {"kernel": w[f"{n}.weight"].T, "bias": w[f"{n}.bias"]}
            for i, n in enumerate(names)
        }

    def ensemble(module: str) -> dict:
        members = [mlp(f"{module}/{k}.", "_fc") for k in (0, 1)]
        return {"params": {"VmapMLP_0": jax.tree.map(lambda *x: np.stack(x), *members)}}

    actor = {"params": {"MLP_0": mlp("policy/", "_mu"), "log_std": w["policy/_logstd"][0]}}
    value = {"params": {"MLP_0": mlp("value_func/", "_fc")}}
    return actor, ensemble("q_funcs"), ensemble("targ_q_funcs"), value


def test_losses_and_adam_steps_match_d3rlpy_given_its_order_and_log_std():
    """rlgen's IQL losses, target and Adam steps reproduce d3rlpy's IQL update for update over
    10 steps from d3rlpy's weights, once the two places d3rlpy departs from the reference code
    are replayed here: its log-std is -5 + 7 sigmoid(raw) (rlgen's, as the reference, is a free
    parameter), and it steps Q and V jointly, so Q's target r + gamma V(s') uses V before its
    step (rlgen, as the reference, steps V first and backs up the stepped V)."""
    updates = D3RLPY["losses"].shape[0]
    config = iql.Config(11, 3, hidden=(16, 16), actor_decay_steps=updates)
    actor, critic, target_critic, value = _d3rlpy_weights("init")
    state = iql.init(jax.random.key(0), config).replace(
        actor=Optimized.create(actor),
        critic=Optimized.create(critic),
        target_critic=target_critic,
        value=Optimized.create(value),
    )

    def with_d3rlpy_log_std(actor_params):
        raw = actor_params["params"]["log_std"]
        return {"params": {**actor_params["params"], "log_std": -5.0 + 7.0 * jax.nn.sigmoid(raw)}}

    def d3rlpy_order_step(state, batch):
        target = iql.q_target(config, state, batch)  # V before its step
        value, v_metrics = core.descend(
            state.value, lambda p: iql.value_loss(config, p, state, batch), state.hp.value_lr
        )
        state = state.replace(value=value)
        actor, a_metrics = core.descend(
            state.actor,
            lambda p: iql.actor_loss(config, with_d3rlpy_log_std(p), state, batch),
            iql.actor_lr(config, state),
        )
        state = state.replace(actor=actor)
        state, c_metrics = core.critic_step(
            state, lambda p: iql.critic_loss(config, p, batch, target)
        )
        losses = [v_metrics["value_loss"], a_metrics["actor_loss"], c_metrics["critic_loss"]]
        return state.replace(step=state.step + 1), jnp.stack(losses)

    b = {k: D3RLPY[f"batch/{k}"] for k in ("obs", "action", "reward", "next_obs", "terminal")}
    batches = Transition(
        **b, truncated=np.zeros_like(b["reward"]), mc_return=np.zeros_like(b["reward"])
    )
    state, losses = jax.jit(lambda s, x: jax.lax.scan(d3rlpy_order_step, s, x))(state, batches)
    np.testing.assert_allclose(losses, D3RLPY["losses"], rtol=2e-4, atol=1e-6)
    actor, critic, target_critic, value = _d3rlpy_weights("final")
    for ours, theirs in (
        (state.actor.params, actor),
        (state.critic.params, critic),
        (state.target_critic, target_critic),
        (state.value.params, value),
    ):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5), ours, theirs)
