"""Dynamics ensemble: Gaussian NLL, MBPO's loss, fitting a known linear system, elites, rollouts
with learned or env terminals, the MOPO penalty, next-state replacement, vmap over seeds,
prediction error."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlgen.data.transition import Transition
from rlgen.gen import dynamics
from rlgen.train.augment import ModelAugment

OBS, ACT, NOISE = 3, 2, 0.1
A_MAT = np.array([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.7]], np.float32)
B_MAT = np.array([[0.5, -0.3, 0.2], [0.1, 0.4, -0.5]], np.float32)
# one tiny config shared by every fit, so the compiled trainer is reused; its terminal head is
# trained (termination="learned") and the env-termination tests reuse the fitted model
CONFIG = dynamics.Config(
    OBS,
    ACT,
    hidden=(32, 32),
    num_members=3,
    num_elites=2,
    batch_size=32,
    max_epochs=100,
    patience=20,
    termination="learned",
)
ENV_TERMINATION = dataclasses.replace(CONFIG, termination="env")


def past_one(obs):
    """The linear data's terminal rule, as a termination function of next observations."""
    return obs[..., 0] > 1.0


def linear_data(n: int, seed: int) -> Transition:
    """s' = A s + B a + N(0, 0.1^2); r = 0.5 s_0 + N(0, 0.1^2); terminal where s_0 > 1."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, OBS)).astype(np.float32)
    action = rng.uniform(-1, 1, (n, ACT)).astype(np.float32)
    noise = NOISE * rng.normal(size=(n, OBS + 1)).astype(np.float32)
    zero = np.zeros(n, np.float32)
    return Transition(
        obs=jnp.asarray(obs),
        action=jnp.asarray(action),
        reward=jnp.asarray(0.5 * obs[:, 0] + noise[:, -1]),
        next_obs=jnp.asarray(obs @ A_MAT.T + action @ B_MAT + noise[:, :OBS]),
        terminal=jnp.asarray((obs[:, 0] > 1.0).astype(np.float32)),
        truncated=jnp.asarray(zero),
        mc_return=jnp.asarray(zero),
    )


@pytest.fixture(scope="module")
def data():
    return linear_data(2000, seed=0)


@pytest.fixture(scope="module")
def fitted(data):
    """CONFIG fitted on the first 1800 rows, the last 200 as the holdout."""
    train = jax.tree.map(lambda a: a[:1800], data)
    holdout = jax.tree.map(lambda a: a[1800:], data)
    state, metrics = dynamics.fit(jax.random.key(0), CONFIG, train, holdout)
    return state, metrics, holdout


def test_gaussian_nll_hand_values():
    mean = jnp.array([[0.0, 1.0], [2.0, -1.0]])
    logvar = jnp.array([[0.0, np.log(4.0)], [np.log(0.25), 0.0]])
    target = jnp.array([[1.0, 3.0], [2.0, -1.0]])
    # row 0: 0.5 * (0 + 1) and 0.5 * (log 4 + 4 / 4); row 1: 0.5 * log 0.25 and 0
    expected = [(0.5 + 0.5 * (np.log(4.0) + 1.0)) / 2, 0.5 * np.log(0.25) / 2]
    np.testing.assert_allclose(dynamics.gaussian_nll(mean, logvar, target), expected, rtol=1e-6)


def test_fits_linear_system_mean_and_noise(fitted, data):
    state, metrics, _ = fitted
    assert 1 <= int(metrics["num_epochs"]) <= CONFIG.max_epochs
    test = linear_data(500, seed=1)
    next_obs, reward, prob = dynamics.predict(state, test.obs, test.action)
    true_next = test.obs @ A_MAT.T + test.action @ B_MAT
    assert float(jnp.mean((next_obs - true_next) ** 2)) < 0.2 * NOISE**2
    assert float(jnp.mean((reward - 0.5 * test.obs[:, 0]) ** 2)) < 0.3 * NOISE**2
    assert float(jnp.mean((prob > 0.5) == (test.terminal > 0.5))) > 0.9
    _, std, _ = dynamics.member_predictions(state, test.obs, test.action, elites_only=False)
    var = np.asarray((std[state.elites] ** 2).mean(axis=(0, 1)))
    np.testing.assert_allclose(var, NOISE**2, rtol=0.35)


def test_elites_are_lowest_holdout_loss_members(fitted):
    state, metrics, holdout = fitted
    mean, _, _ = dynamics.member_predictions(state, holdout.obs, holdout.action, elites_only=False)
    target = jnp.concatenate([holdout.next_obs - holdout.obs, holdout.reward[:, None]], -1)
    mse = np.asarray((((mean - target) / state.target_norm.std) ** 2).mean(axis=(1, 2)))
    np.testing.assert_allclose(state.holdout_loss, mse, rtol=1e-4)
    np.testing.assert_array_equal(state.elites, np.argsort(mse)[: CONFIG.num_elites])
    epochs = int(metrics["num_epochs"])
    logged = np.asarray(metrics["holdout_mse"][:epochs])
    # each member kept the snapshot of its last >1% improvement: a logged loss, within 1% of
    # the lowest one
    for member, loss in enumerate(np.asarray(state.holdout_loss)):
        assert loss in logged[:, member]
        assert loss <= logged[:, member].min() / (1 - CONFIG.min_improvement)
    assert np.isnan(metrics["holdout_mse"][epochs:]).all()


def test_mopo_penalty_matches_formula(fitted, data):
    state = fitted[0]
    obs, action, reward = data.obs[:7], data.action[:7], data.reward[:7]
    penalised, u = dynamics.mopo_penalty(state, obs, action, reward, 2.5)
    x = (np.concatenate([obs, action], -1) - state.input_norm.mean) / state.input_norm.std
    norms = []
    for e in np.asarray(state.elites):
        params = jax.tree.map(lambda p, e=e: p[e], state.params)
        _, logvar, _ = CONFIG.network.apply({"params": params}, jnp.asarray(x))
        std = np.exp(0.5 * np.asarray(logvar)) * np.asarray(state.target_norm.std)
        norms.append(np.sqrt((std**2).sum(-1)))
    expected_u = np.max(norms, axis=0)
    np.testing.assert_allclose(u, expected_u, rtol=1e-5)
    np.testing.assert_allclose(penalised, np.asarray(reward) - 2.5 * expected_u, rtol=1e-5)


def with_terminal_bias(state, bias: float):
    """``state`` with every member's terminal logit bias set to ``bias``."""
    last = f"Dense_{len(CONFIG.hidden)}"
    mlp = dict(state.params["MLP_0"])
    mlp[last] = {**mlp[last], "bias": mlp[last]["bias"].at[:, -1].set(bias)}
    return state.replace(params={**state.params, "MLP_0": mlp})


rollout_jit = jax.jit(dynamics.rollout, static_argnums=(2, 4, 6))


def zero_policy(obs, key):
    return jnp.zeros((*obs.shape[:-1], ACT))


def test_rollout_stops_at_predicted_terminals(fitted):
    state = fitted[0]
    start = jnp.zeros((6, OBS)).at[:3, 0].set(2.5).at[3:, 0].set(-2.0)
    rows, valid = rollout_jit(state, jax.random.key(3), zero_policy, start, 4, 0.0)
    assert rows.obs.shape == (4, 6, OBS) and valid.shape == (4, 6)
    # s_0 = 2.5 is past the learned terminal boundary; s_0 = -2 decays towards 0 without one
    np.testing.assert_array_equal(rows.terminal[0], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(valid[1:, :3], False)
    np.testing.assert_array_equal(valid[:, 3:], True)
    # in general: valid until and including the first predicted terminal
    alive = np.cumprod(1 - np.asarray(rows.terminal), axis=0)
    np.testing.assert_array_equal(valid[1:], alive[:-1] > 0)
    np.testing.assert_array_equal(rows.truncated[-1, 3:], 1.0)

    always = with_terminal_bias(state, 50.0)
    rows, valid = rollout_jit(always, jax.random.key(3), zero_policy, start, 4, 0.0)
    np.testing.assert_array_equal(valid, np.broadcast_to(np.arange(4)[:, None] == 0, (4, 6)))
    never = with_terminal_bias(state, -50.0)
    rows, valid = rollout_jit(never, jax.random.key(3), zero_policy, start, 4, 1.0)
    assert bool(valid.all()) and not bool(rows.terminal.any())
    np.testing.assert_array_equal(rows.obs[1:], rows.next_obs[:-1])
    _, u = dynamics.mopo_penalty(never, rows.obs[0], rows.action[0], jnp.zeros(6), 1.0)
    assert bool((u > 0).all())


def test_replace_next_states_exact_fraction(fitted, data):
    state = fitted[0]
    batch = jax.tree.map(lambda a: a[:40].reshape(4, 10, *a.shape[1:]), data)
    out = dynamics.replace_next_states(state, jax.random.key(5), batch, 0.3)
    changed = np.asarray((out.next_obs != batch.next_obs).any(-1))
    np.testing.assert_array_equal(changed.sum(axis=1), [3, 3, 3, 3])
    assert len({tuple(row) for row in changed}) > 1  # rows drawn independently per batch
    for field in ("obs", "action", "reward", "truncated", "mc_return"):
        np.testing.assert_array_equal(getattr(out, field), getattr(batch, field))
    np.testing.assert_array_equal(out.terminal[~changed], batch.terminal[~changed])

    flat = jax.tree.map(lambda a: a[0], batch)
    with_reward = dynamics.replace_next_states(state, jax.random.key(6), flat, 0.5, True)
    changed = np.asarray((with_reward.next_obs != flat.next_obs).any(-1))
    assert changed.sum() == 5
    np.testing.assert_array_equal(with_reward.reward != flat.reward, changed)
    same = dynamics.replace_next_states(state, jax.random.key(6), batch, 0.0)
    np.testing.assert_array_equal(same.next_obs, batch.next_obs)


def env_terminated_model(fitted):
    """The fitted model with termination="env" and a learned head that never fires."""
    return with_terminal_bias(fitted[0], -50.0).replace(config=ENV_TERMINATION)


def test_rollout_terminals_come_from_the_termination_function(fitted, data):
    state = env_terminated_model(fitted)
    start = jnp.zeros((6, OBS)).at[:3, 0].set(2.5).at[3:, 0].set(-2.0)
    rows, valid = rollout_jit(state, jax.random.key(3), zero_policy, start, 4, 0.0, past_one)
    np.testing.assert_array_equal(rows.terminal, past_one(rows.next_obs))
    np.testing.assert_array_equal(rows.terminal[0], [1, 1, 1, 0, 0, 0])
    alive = np.cumprod(1 - np.asarray(rows.terminal), axis=0)
    np.testing.assert_array_equal(valid[1:], alive[:-1] > 0)
    obs, act = data.obs[:4], data.action[:4]
    with pytest.raises(ValueError, match="termination='env' needs terminated"):
        dynamics.sample(state, jax.random.key(0), obs, act)
    with pytest.raises(ValueError, match="termination='learned'"):
        dynamics.rollout(fitted[0], jax.random.key(0), zero_policy, obs, 2, 0.0, past_one)


def test_replaced_rows_get_the_termination_of_their_new_next_state(fitted, data):
    state = env_terminated_model(fitted)
    batch = jax.tree.map(lambda a: a[:40], data)
    out = dynamics.replace_next_states(state, jax.random.key(5), batch, 0.5, terminated=past_one)
    changed = np.asarray((out.next_obs != batch.next_obs).any(-1))
    assert changed.sum() == 20
    expected = np.where(changed, past_one(out.next_obs), batch.terminal)
    np.testing.assert_array_equal(out.terminal, expected)
    assert np.asarray(out.terminal)[changed].any()


def test_model_augment_passes_the_termination_function():
    with pytest.raises(ValueError, match="ModelAugment.terminated"):
        ModelAugment("model", dynamics.Config(OBS, ACT))
    assert ModelAugment("model", ENV_TERMINATION, past_one).termination_fn is past_one
    assert ModelAugment("model-rollouts", CONFIG, past_one).termination_fn is None


loss_jit = jax.jit(dynamics._member_loss, static_argnums=0)


def test_loss_is_mbpo_nll_bound_and_per_layer_l2(fitted):
    """MBPO's loss: summed over members, mean((mu - y)^2 / var + log var) + 0.01 * (sum max -
    sum min logvar), plus sum_l decay_l * 0.5 * |W_l|^2 over all members' kernels; the terminal
    BCE only with the learned head."""
    params, members = fitted[0].params, CONFIG.num_members
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(members, 16, OBS + ACT)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(members, 16, OBS + 1)), jnp.float32)
    terminal = jnp.asarray(rng.uniform(size=(members, 16)) < 0.3, jnp.float32)
    outputs = jax.jit(dynamics._apply, static_argnums=(0, 3))(CONFIG, params, x, False)
    mean, logvar, logit = map(np.asarray, outputs)
    bound = np.sum(params["max_logvar"]) - np.sum(params["min_logvar"])
    gaussian = np.sum(np.mean((mean - y) ** 2 * np.exp(-logvar) + logvar, axis=(1, 2)))
    gaussian += 0.01 * bound
    bce = np.sum(np.mean(np.logaddexp(0.0, logit) - terminal * logit, axis=1))
    assert CONFIG.layer_weight_decays == (2.5e-5, 5e-5, 1e-4)
    layers = params["MLP_0"]
    l2 = sum(
        d * 0.5 * np.sum(np.asarray(layers[f"Dense_{i}"]["kernel"]) ** 2)
        for i, d in enumerate(CONFIG.layer_weight_decays)
    )
    for config, expected in ((CONFIG, gaussian + bce + l2), (ENV_TERMINATION, gaussian + l2)):
        loss, _ = loss_jit(config, params, x, y, terminal)
        np.testing.assert_allclose(loss, expected, rtol=1e-5)
    mbpo = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
    assert dynamics.Config(OBS, ACT).layer_weight_decays == mbpo
    deep = dynamics.Config(OBS, ACT, hidden=(8,) * 6).layer_weight_decays
    assert deep == (2.5e-5, 5e-5) + (7.5e-5,) * 4 + (1e-4,)
    with pytest.raises(ValueError, match="weight_decays"):
        dynamics.Config(OBS, ACT, hidden=(8, 8), weight_decays=mbpo)


def test_vmap_over_seeds_equals_per_seed_fits(fitted, data):
    keys = jax.random.split(jax.random.key(7), 2)
    states, metrics = jax.vmap(lambda k: dynamics.fit(k, CONFIG, data))(keys)
    for i, key in enumerate(keys):
        single, single_metrics = dynamics.fit(key, CONFIG, data)
        assert int(metrics["num_epochs"][i]) == int(single_metrics["num_epochs"])
        np.testing.assert_array_equal(states.elites[i], single.elites)
        np.testing.assert_allclose(states.holdout_loss[i], single.holdout_loss, rtol=1e-4)
        obs, act = data.obs[:5], data.action[:5]
        batched = jax.tree.map(lambda a, i=i: a[i], states)
        np.testing.assert_allclose(
            dynamics.predict(batched, obs, act)[0], dynamics.predict(single, obs, act)[0], atol=1e-4
        )


def test_prediction_error_beats_constant_delta(fitted):
    state = fitted[0]
    rng = np.random.default_rng(2)
    obs, rows = rng.normal(size=(5, OBS)).astype(np.float32), []
    for _ in range(20):  # 5 episodes of 20 steps, stored episode after episode
        action = rng.uniform(-1, 1, (5, ACT)).astype(np.float32)
        nxt = obs @ A_MAT.T + action @ B_MAT + NOISE * rng.normal(size=(5, OBS))
        rows.append((obs, action, nxt.astype(np.float32)))
        obs = rows[-1][2]
    obs, action, nxt = (np.stack(r, axis=1).reshape(100, -1) for r in zip(*rows, strict=True))
    data = Transition.zeros(OBS, ACT, (100,)).replace(obs=obs, action=action, next_obs=nxt)
    ends = jnp.asarray(np.arange(100) % 20 == 19)
    err = dynamics.prediction_error(state, data, ends, (1, 5))
    assert int(err["num_starts_1"]) == 100 and int(err["num_starts_5"]) == 5 * 16
    assert float(err["model_mse_1"]) < 2 * NOISE**2 < float(err["baseline_mse_1"])
    assert float(err["model_mse_5"]) < 0.5 * float(err["baseline_mse_5"])


def test_errors_name_the_field(data):
    with pytest.raises(ValueError, match="num_elites"):
        dynamics.Config(OBS, ACT, num_members=3, num_elites=4)
    with pytest.raises(ValueError, match="holdout_fraction"):
        dynamics.Config(OBS, ACT, holdout_fraction=0.0)
    with pytest.raises(ValueError, match="activation"):
        dynamics.Config(OBS, ACT, activation="swishy")
    with pytest.raises(ValueError, match="termination"):
        dynamics.Config(OBS, ACT, termination="oracle")
    with pytest.raises(ValueError, match="obs_dim"):
        dynamics.fit(jax.random.key(0), dynamics.Config(OBS + 1, ACT), data)
    bad = data.replace(reward=data.reward.at[3].set(jnp.nan))
    with pytest.raises(ValueError, match="reward contains NaN"):
        dynamics.fit(jax.random.key(0), CONFIG, bad)
    with pytest.raises(ValueError, match="no holdout"):
        dynamics.fit(jax.random.key(0), CONFIG, jax.tree.map(lambda a: a[:3], data))
