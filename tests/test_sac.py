import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlgen.agents import sac
from rlgen.data import Transition

CONFIG = sac.Config(obs_dim=3, action_dim=2, hidden=(16, 16), num_critics=4)


def random_batch(key, leading):
    k = jax.random.split(key, 4)
    t = Transition.zeros(3, 2, leading)
    return t.replace(
        obs=jax.random.normal(k[0], t.obs.shape),
        action=jax.random.uniform(k[1], t.action.shape, minval=-1, maxval=1),
        reward=jax.random.normal(k[2], t.reward.shape),
        next_obs=jax.random.normal(k[3], t.next_obs.shape),
        terminal=(jnp.arange(t.reward.size).reshape(t.reward.shape) % 3 == 0).astype(jnp.float32),
    )


def test_target_is_min_over_a_random_subset_without_replacement():
    """Members whose outputs are the constants 4, 1, 3, 2 (zero weights, last bias set): the
    target's value is the min over the 2 members ``permutation(k_subset)[:2]``."""
    state = sac.init(jax.random.key(0), CONFIG)
    zero = jax.tree.map(jnp.zeros_like, state.target_critic)
    layers = zero["params"]["VmapMLP_0"]
    last = sorted(layers)[-1]
    constants = jnp.array([4.0, 1.0, 3.0, 2.0])
    layers[last]["bias"] = constants[:, None]
    state = state.replace(target_critic=zero)
    batch = random_batch(jax.random.key(1), (8,)).replace(terminal=jnp.zeros(8))
    seen = set()
    for i in range(60):
        key = jax.random.key(i)
        k_action, k_subset = jax.random.split(key)
        members = np.asarray(jax.random.permutation(k_subset, 4)[:2])
        _, logp = sac.sample_action(CONFIG, state.actor.params, batch.next_obs, k_action)
        v = (sac.td_target(CONFIG, state, batch, key) - batch.reward) / 0.99 + logp  # alpha 1
        np.testing.assert_allclose(v, constants[members].min(), rtol=1e-5, atol=1e-5)
        seen.add(float(constants[members].min()))
    assert seen == {1.0, 2.0, 3.0}  # every value that can be a 2-subset min shows up


def test_target_of_the_subset_equals_the_whole_ensembles_min_over_it():
    """Evaluating only the subset's members gives the min over those members of the whole
    ensemble's outputs (random weights)."""
    state = sac.init(jax.random.key(0), CONFIG)
    batch = random_batch(jax.random.key(1), (8,))
    key = jax.random.key(5)
    k_action, k_subset = jax.random.split(key)
    action, logp = sac.sample_action(CONFIG, state.actor.params, batch.next_obs, k_action)
    q = sac.networks(CONFIG)[1].apply(state.target_critic, batch.next_obs, action)
    members = jax.random.permutation(k_subset, 4)[:2]
    v = q[members].min(axis=0) - logp
    expected = batch.reward + 0.99 * (1 - batch.terminal) * v
    np.testing.assert_allclose(sac.td_target(CONFIG, state, batch, key), expected, rtol=1e-5)


def test_td_target_by_hand_with_zeroed_target_critic():
    state = sac.init(jax.random.key(0), CONFIG)
    zero_q = jax.tree.map(jnp.zeros_like, state.target_critic)  # Q_target == 0 everywhere
    state = state.replace(
        target_critic=zero_q, log_alpha=state.log_alpha.replace(params=jnp.log(0.5))
    )
    batch = random_batch(jax.random.key(1), (8,))
    key = jax.random.key(2)
    target = sac.td_target(CONFIG, state, batch, key)
    k_action, _ = jax.random.split(key)
    _, logp = sac.sample_action(CONFIG, state.actor.params, batch.next_obs, k_action)
    expected = batch.reward + 0.99 * (1 - batch.terminal) * (0.0 - 0.5 * logp)
    np.testing.assert_allclose(target, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(target[batch.terminal == 1], batch.reward[batch.terminal == 1])


def test_critic_loss_is_sum_over_members_of_mse():
    state = sac.init(jax.random.key(0), CONFIG)
    batch = random_batch(jax.random.key(1), (8,))
    target = jnp.arange(8.0)
    loss, _ = sac.critic_loss(CONFIG, state.critic.params, batch, target)
    q = sac.networks(CONFIG)[1].apply(state.critic.params, batch.obs, batch.action)
    expected = sum(float(np.mean((np.asarray(q[i]) - np.arange(8.0)) ** 2)) for i in range(4))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_actor_loss_formula():
    state = sac.init(jax.random.key(0), CONFIG)
    batch = random_batch(jax.random.key(1), (8,))
    key = jax.random.key(3)
    loss, _ = sac.actor_loss(
        CONFIG, state.actor.params, state.critic.params, jnp.log(0.2), batch, key
    )
    action, logp = sac.sample_action(CONFIG, state.actor.params, batch.obs, key)
    q = sac.networks(CONFIG)[1].apply(state.critic.params, batch.obs, action).min(axis=0)
    assert float(loss) == pytest.approx(float(jnp.mean(0.2 * logp - q)), rel=1e-5)


def test_update_scans_utd_critic_steps_then_one_actor_step():
    state = sac.init(jax.random.key(0), CONFIG)
    batches = random_batch(jax.random.key(1), (3, 8))
    key = jax.random.key(4)
    new, metrics = jax.jit(lambda s, b, k: sac.update(CONFIG, s, b, k))(state, batches, key)
    k_critic, k_actor = jax.random.split(key)
    ref = state
    for i, k in enumerate(jax.random.split(k_critic, 3)):
        ref, _ = sac.update_critic(CONFIG, ref, jax.tree.map(lambda x, i=i: x[i], batches), k)
    ref, _ = sac.update_actor(CONFIG, ref, jax.tree.map(lambda x: x[-1], batches), k_actor)
    for a, b in zip(
        jax.tree.leaves(new.critic.params), jax.tree.leaves(ref.critic.params), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(
        jax.tree.leaves(new.actor.params), jax.tree.leaves(ref.actor.params), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert int(new.step) == 1 and np.isfinite(float(metrics["critic_loss"]))
    # the temperature moved towards the entropy target
    assert float(new.log_alpha.params) != float(state.log_alpha.params)


def test_vmap_over_seeds_and_learning_rates():
    keys = jax.random.split(jax.random.key(0), 3)
    hps = jax.tree.map(lambda x: jnp.full((3,), x, jnp.float32), sac.HParams())
    hps = hps.replace(critic_lr=jnp.array([0.0, 1e-3, 1e-2]))
    states = jax.vmap(lambda k, hp: sac.init(k, CONFIG, hp))(keys, hps)
    batches = jax.vmap(lambda k: random_batch(k, (2, 8)))(keys)
    new, _ = jax.vmap(lambda s, b, k: sac.update(CONFIG, s, b, k))(states, batches, keys)
    moved = [
        max(
            float(jnp.abs(a - b)[i].max())
            for a, b in zip(
                jax.tree.leaves(new.critic.params),
                jax.tree.leaves(states.critic.params),
                strict=True,
            )
        )
        for i in range(3)
    ]
    assert moved[0] == 0.0 and 0 < moved[1] < moved[2]


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="target_subset"):
        sac.Config(3, 2, num_critics=2, target_subset=3)
    with pytest.raises(ValueError, match="actor_q"):
        sac.Config(3, 2, actor_q="max")


def test_shared_config_checks_and_float_hparams():
    from rlgen.agents import cql, td3bc
    from rlgen.agents.common import float_hparams

    with pytest.raises(ValueError, match="obs_dim and action_dim"):
        sac.Config(0, 2)
    with pytest.raises(ValueError, match="num_samples must be >= 1, got 0"):
        cql.Config(3, 2, num_samples=0)
    with pytest.raises(ValueError, match="policy_freq must be >= 1"):
        td3bc.Config(3, 2, policy_freq=0)
    hp = float_hparams(sac.HParams, sac.HParams(gamma=0.5))
    assert hp.gamma.dtype == jnp.float32 and float(hp.gamma) == 0.5
    assert float(float_hparams(sac.HParams).tau) == pytest.approx(5e-3)


def test_online_config_actor_q_auto_is_min_for_two_critics_and_can_be_the_mean():
    """auto keeps SAC's min for 2 critics; ``mean`` (REDQ's code, SynthER's) changes the actor
    step on the same batch; a bad value is named."""
    from rlgen.train.runner import OnlineConfig

    batch = random_batch(jax.random.key(1), (1, 32))

    def actor_after_one_update(actor_q):
        agent = OnlineConfig(hidden=(16, 16), actor_q=actor_q).sac_agent(3, 2)
        state, _ = agent.update(agent.init(jax.random.key(0)), batch, jax.random.key(2))
        return jax.tree.leaves(state.actor.params)

    auto, low, mean = map(actor_after_one_update, ("auto", "min", "mean"))
    jax.tree.map(np.testing.assert_array_equal, auto, low)
    assert any(not np.array_equal(a, b) for a, b in zip(low, mean, strict=True))
    with pytest.raises(ValueError, match="actor_q must be one of auto, min, mean"):
        OnlineConfig(actor_q="max")
