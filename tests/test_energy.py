"""EDIS energies: InfoNCE, guidance masks and clipping, guided sampling on a Gaussian toy with a
known energy, a contrastive learning check, examples from a diffusion model, vmap over seeds."""

import functools
import math
import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlgen.data import normalize, replay
from rlgen.data.transition import Transition
from rlgen.gen import diffusion, edm, energy
from rlgen.train import generators

OBS, ACT = 2, 1
DIM = diffusion.flat_dim(OBS, ACT)  # 7: obs 0-1, action 2, reward 3, next_obs 4-5, terminal 6
# reconstruction-guided inpainting is stiff: an untrained denoiser needs >= ~16 sampler steps
TINY = energy.Config(OBS, ACT, hidden=(32, 32), num_negatives=4, sampler=edm.SamplerConfig(16))
POOL, STEPS, BATCH = 512, 300, 64  # one compiled ``train`` shared by the tests
BLOCK = {"state": [0, 1], "policy": [2], "transition": [4, 5]}


def test_info_nce_hand_values():
    pos = jnp.array([1.0, 0.0])
    neg = jnp.array([[2.0, 3.0], [0.0, -1.0]])
    # row 0: logits (-1, -2, -3); row 1: logits (0, 0, 1); loss = E_pos + logsumexp(-E)
    row0 = 1.0 + math.log(math.exp(-1) + math.exp(-2) + math.exp(-3))
    row1 = 0.0 + math.log(2 + math.e)
    np.testing.assert_allclose(energy.info_nce(pos, neg), (row0 + row1) / 2, rtol=1e-6)
    np.testing.assert_allclose(energy.info_nce(jnp.zeros(3), jnp.zeros((3, 1))), math.log(2))


def test_guidance_masks_each_energy_to_its_block():
    state = energy.init(jax.random.key(0), TINY)
    x = jax.random.normal(jax.random.key(1), (5, DIM))
    sigma = jnp.float32(0.7)

    @jax.jit
    def guide_and_grad(state):
        guide = lambda g: energy.network_guidance(state, g)(x, sigma)
        grad = lambda n: jax.grad(lambda z: energy.energy(state.params, TINY, n, z, sigma).sum())
        unclipped = functools.partial(energy.Guidance.create, 2.0, math.inf)
        single = {n: guide(unclipped(enabled=(n,))) for n in energy.ENERGIES}
        full = {n: grad(n)(x) for n in energy.ENERGIES}
        return single, full, guide(unclipped())

    single, full, combined = guide_and_grad(state)
    for name in energy.ENERGIES:
        g, outside = single[name], np.setdiff1d(np.arange(DIM), BLOCK[name])
        np.testing.assert_array_equal(g[:, outside], 0.0)
        np.testing.assert_allclose(g[:, BLOCK[name]], -2.0 * full[name][:, BLOCK[name]], rtol=1e-5)
        assert np.all(np.abs(g[:, BLOCK[name]]).sum(1) > 0)
        read = TINY.inputs(name)  # E_pi and E_T read more than they guide
        assert np.all(np.abs(full[name][:, read]).sum(1) > 0)
        np.testing.assert_array_equal(full[name][:, np.setdiff1d(np.arange(DIM), read)], 0.0)
    np.testing.assert_allclose(combined, sum(single.values()), rtol=1e-5, atol=1e-7)


def test_guidance_clips_the_combined_direction_term_per_row():
    """The term guidance adds to the sampler's direction, sigma * g, is capped at clip * sqrt(dim)
    per row, over the sum of the energies (each alone below the cap here)."""
    fns = {"state": lambda x, s: x[:, 0] ** 2 / 2, "policy": lambda x, s: x[:, 1] ** 2 / 2}
    masks = {"state": jnp.array([True, False]), "policy": jnp.array([False, True])}
    guidance = energy.Guidance.create(2.0, 9 / math.sqrt(2), ("state", "policy"))
    x = jnp.array([[3.0, 4.0], [0.3, 0.4]])  # at sigma 1: 6 and 8 alone, 10 and 1 summed (cap 9)
    fn = energy.guidance_fn(fns, masks, guidance)
    np.testing.assert_allclose(fn(x, 1.0), -2.0 * x * np.array([[0.9], [1.0]]), rtol=1e-6)
    np.testing.assert_allclose(fn(x, 0.1), -2.0 * x, rtol=1e-6)  # a small sigma: no clip
    assert float(energy.Guidance.create().clip) == 10.0  # the reference's 10 sqrt(D)


def test_guided_gaussian_moves_to_the_product_of_gaussians():
    """Prior N(m, diag(v)), energy s (x_0 - c)^2 / 2: the target is Gaussian in x_0 with variance
    v_q = 1 / (1 / v_0 + s) and mean v_q (m_0 / v_0 + s c) (= 7/3 here, from 1), x_1 unchanged.
    The guidance uses the exact intermediate energy -log E[exp(-s (x_0 - c)^2 / 2) | x_sigma],
    a quadratic whose gradient is score(target_sigma) - score(prior_sigma), which is what a
    contrastive energy trained at level sigma estimates."""
    m, v, s, c = np.array([1.0, -1.0]), np.array([1.0, 0.5]), 2.0, 3.0
    v_q = 1 / (1 / v[0] + s)
    m_q = v_q * (m[0] / v[0] + s * c)

    def denoise(x, sigma):
        return m + (x - m) * v / (v + sigma**2)

    def intermediate(x, sigma):
        x0 = x[:, 0]
        return (x0 - m_q) ** 2 / (2 * (v_q + sigma**2)) - (x0 - m[0]) ** 2 / (2 * (v[0] + sigma**2))

    config = edm.SamplerConfig()

    def run(guidance, key):
        fn = energy.guidance_fn(
            {"state": intermediate}, {"state": jnp.array([True, False])}, guidance
        )
        return edm.heun_sample(denoise, key, (10000, 2), config, guidance=fn)

    run = jax.jit(run)
    guided = np.asarray(run(energy.Guidance.create(1.0, enabled=("state",)), jax.random.key(0)))
    unguided = np.asarray(run(energy.Guidance.create(1.0, enabled=()), jax.random.key(0)))
    np.testing.assert_allclose(guided.mean(0), [m_q, m[1]], atol=0.04)
    np.testing.assert_allclose(guided.std(0), np.sqrt([v_q, v[1]]), rtol=0.05)
    np.testing.assert_allclose(unguided.mean(0), m, atol=0.04)
    np.testing.assert_allclose(unguided.std(0), np.sqrt(v), rtol=0.05)


@functools.partial(jax.jit, static_argnums=(1, 2))
def toy_examples(key, n, k):
    """Normalised-space examples where positives follow a rule and negatives do not: states near
    (1.5, -1), action = (s_0 - s_1) / 2, s' = s + a; negatives replace the block with N(0, 1)."""
    ks = jax.random.split(key, 2)
    s = jnp.array([1.5, -1.0]) + 0.3 * jax.random.normal(ks[0], (n, OBS))
    a = (s[:, 0] - s[:, 1])[:, None] / 2
    pos = jnp.concatenate([s, a, jnp.zeros((n, 1)), s + a, jnp.zeros((n, 1))], axis=1)
    rep = jnp.repeat(pos[:, None], k, axis=1)
    noise = jax.random.normal(ks[1], (3, n, k, DIM))
    negative = {
        name: rep.at[..., BLOCK[name]].set(noise[i][..., BLOCK[name]])
        for i, name in enumerate(energy.ENERGIES)
    }
    return energy.Examples(positive=dict.fromkeys(energy.ENERGIES, pos), negative=negative)


def test_energies_learn_lower_energy_for_positives():
    state = energy.init(jax.random.key(0), TINY)
    state, metrics = energy.train(state, toy_examples(jax.random.key(1), POOL, 4), STEPS, BATCH)
    held_out = toy_examples(jax.random.key(2), POOL, 4)

    @jax.jit
    def evaluate(params, sigma):  # per energy: accuracy (chance 1 / 5), InfoNCE (chance log 5)
        out = {}
        for name in energy.ENERGIES:
            e_pos = energy.energy(params, TINY, name, held_out.positive[name], sigma)
            neg = held_out.negative[name].reshape(-1, DIM)
            e_neg = energy.energy(params, TINY, name, neg, sigma).reshape(POOL, 4)
            out[name] = jnp.mean(e_pos < e_neg.min(axis=1)), energy.info_nce(e_pos, e_neg)
        return out

    for sigma in (0.05, 0.5):
        for name, (accuracy, loss) in evaluate(state.params, sigma).items():
            assert accuracy > 0.4 and loss < 0.7 * math.log(5), (name, sigma, accuracy, loss)
    for name in energy.ENERGIES:
        loss = np.asarray(metrics[f"{name}_loss"])
        assert np.isfinite(loss).all() and loss[-50:].mean() < loss[:20].mean() - 0.2


@functools.partial(jax.jit, static_argnums=1)
def random_online(key, n):
    ks = jax.random.split(key, 4)
    return Transition(
        obs=3 * jax.random.normal(ks[0], (n, OBS)) + 1,
        action=jax.random.uniform(ks[1], (n, ACT), minval=-1, maxval=1),
        reward=jax.random.normal(ks[2], (n,)),
        next_obs=3 * jax.random.normal(ks[3], (n, OBS)) + 1,
        terminal=jnp.zeros(n),
        truncated=jnp.zeros(n),
        mc_return=jnp.zeros(n),
    )


def stack(trees):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


@pytest.fixture(scope="module")
def seeded_models():
    """Two seeds of a tiny diffusion model (each with its own normaliser) and of TINY energies."""
    online = random_online(jax.random.key(0), POOL)
    d_config = diffusion.Config.for_transitions(OBS, ACT, width=16, num_blocks=1, embed_dim=8)
    keys = jax.random.split(jax.random.key(2), 2)
    norms = [diffusion.fit_normalizer(diffusion.flatten(random_online(k, 64))) for k in keys]
    d_states = stack([diffusion.init(k, d_config, nm) for k, nm in zip(keys, norms, strict=True)])
    e_states = stack([energy.init(k, TINY) for k in keys])
    return online, d_states, e_states, keys


def policy(obs, key):
    return jnp.tanh(obs[:, :1] - obs[:, 1:])


def test_build_examples_and_train_vmapped_over_seeds(seeded_models):
    online, d_states, e_states, keys = seeded_models

    @jax.jit
    @jax.vmap
    def refresh(d_state, e_state, key):
        examples = energy.build_examples(TINY, d_state, online, policy, key)
        return examples, *energy.train(e_state, examples, STEPS, BATCH)

    examples, states, metrics = refresh(d_states, e_states, keys)
    n, k = POOL, TINY.num_negatives
    per_seed = jax.vmap(normalize.apply, (0, None))
    real = per_seed(d_states.normalizer, diffusion.flatten(online))  # (2, POOL, 7), seeds differ
    for name in energy.ENERGIES:
        assert examples.negative[name].shape == (2, n, k, DIM)
        assert np.isfinite(examples.negative[name]).all()
    np.testing.assert_array_equal(examples.positive["transition"], real)
    on_policy = online.replace(action=policy(online.obs, None))
    expected = per_seed(d_states.normalizer, diffusion.flatten(on_policy))
    np.testing.assert_allclose(examples.positive["policy"], expected, rtol=1e-6)
    # inpainted negatives carry exactly the known blocks of their own seed's positive
    known = lambda dims: np.broadcast_to(real[:, :, None, dims], (2, n, k, len(dims)))
    np.testing.assert_array_equal(examples.negative["policy"][..., :2], known([0, 1]))
    np.testing.assert_array_equal(examples.negative["transition"][..., :3], known([0, 1, 2]))
    assert not np.allclose(examples.negative["transition"][..., 4:6], known([4, 5]))
    assert metrics["state_loss"].shape == (2, STEPS) and np.isfinite(metrics["state_loss"]).all()
    assert np.all(np.asarray(states.step) == STEPS)
    # training under vmap equals per-seed training
    for i in range(2):
        pick = functools.partial(jax.tree.map, operator.itemgetter(i))
        state, m = energy.train(pick(e_states), pick(examples), STEPS, BATCH)
        single = jax.tree.leaves((state.params, m))
        for a, b in zip(jax.tree.leaves((states.params, metrics)), single, strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-4)


def test_guided_generate_vmapped_over_seeds(seeded_models):
    _, d_states, e_states, keys = seeded_models
    scales = jax.vmap(lambda s: energy.Guidance.create(s, 5.0))(jnp.array([0.5, 2.0]))
    generate = jax.jit(lambda d, e, k, g: energy.guided_generate(d, e, k, 5, g, chunk_size=3))
    out = jax.vmap(generate)(d_states, e_states, keys, scales)
    assert isinstance(out, Transition) and out.obs.shape == (2, 5, OBS)
    assert out.action.shape == (2, 5, ACT) and np.isfinite(out.next_obs).all()
    for i, key in enumerate(keys):
        d, e, g = (jax.tree.map(operator.itemgetter(i), t) for t in (d_states, e_states, scales))
        single = generate(d, e, key, g)
        for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(single), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-4)


def test_edis_refit_continues_training_the_run_energies(monkeypatch):
    """A refit trains on from the energies it is given (as the previous refit left them): its
    params, Adam moments, key and step equal continued training of that state on the refit's
    fresh examples; re-initialised energies would not. The normaliser, diffusion fit, row and
    example sampling and generation are stubbed (one compiled ``train`` shared with the other
    tests)."""
    built = []

    def build_examples(config, model, online, policy, key):
        built.append(toy_examples(key, POOL, 4))
        return built[-1]

    rows = replay.from_transitions(Transition.zeros(OBS, ACT, (16,)))
    monkeypatch.setattr(generators, "union_normalizer", lambda sources: None)
    monkeypatch.setattr(replay, "sample", lambda buffer, key, n: buffer.data)
    monkeypatch.setattr(generators, "fit_diffusion", lambda *args: (None, jnp.float32(0)))
    monkeypatch.setattr(energy, "build_examples", build_examples)
    monkeypatch.setattr(energy, "guided_generate", lambda *args: rows.data)
    aug = generators.DiffusionAugment(
        "edis",
        diffusion.Config.for_transitions(OBS, ACT),
        batch_size=BATCH,
        num_samples=4,
        energy_config=TINY,
        energy_steps=STEPS,
        energy_examples=8,
        unknown_returns=False,
    )
    previous = generators.init_energies(aug, jax.random.key(0)).replace(step=jnp.int32(STEPS))
    _, refitted, _ = generators.edis_buffer(
        aug, jax.random.key(1), rows, rows, None, None, previous
    )
    continued, _ = energy.train(previous, built[0], STEPS, BATCH)
    assert int(refitted.step) == 2 * STEPS
    state = lambda e: (e.params, e.opt_state, jax.random.key_data(e.key))  # noqa: E731
    for a, b in zip(
        jax.tree.leaves(state(refitted)), jax.tree.leaves(state(continued)), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_config_and_guidance_validation():
    with pytest.raises(ValueError, match="num_negatives"):
        energy.Config(OBS, ACT, num_negatives=0)
    with pytest.raises(ValueError, match="unknown energies"):
        energy.Guidance.create(enabled=("reward",))
    with pytest.raises(ValueError, match="Guidance.scale"):
        energy.Guidance.create({"state": 1.0})
    with pytest.raises(ValueError, match="unknown fields"):
        diffusion.block_mask(OBS, ACT, "obs", "goal")
    hash(TINY)
    np.testing.assert_array_equal(TINY.inputs("transition"), [0, 1, 2, 4, 5])
    np.testing.assert_array_equal(np.flatnonzero(TINY.guide_mask("policy")), [2])
