"""EDM preconditioning, loss, Heun sampler and hooks, and the SynthER diffusion model."""

import dataclasses
import math
import operator

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rlgen.data import normalize
from rlgen.data.transition import Transition
from rlgen.gen import diffusion, edm

MU = np.array([2.0, -1.0], np.float32)
COV = np.array([[1.0, 0.8], [0.8, 1.0]], np.float32)
KEY = jax.random.key(0)
# one tiny denoiser config shared by the network tests, so their compiled functions are reused
TOY = diffusion.Config(dim=2, width=64, num_blocks=2, embed_dim=32, num_train_steps=1000)
denoise_jit = jax.jit(diffusion.denoise, static_argnums=1)


def gaussian_denoiser(mu, cov):
    """The exact denoiser E[x0 | x] of N(mu, cov) data noised with N(0, sigma^2 I)."""
    lam, vec = np.linalg.eigh(cov)

    def denoise(x, sigma):  # mu + cov (cov + sigma^2 I)^-1 (x - mu), in cov's eigenbasis
        return mu + ((x - mu) @ vec) * (lam / (lam + sigma**2)) @ vec.T

    return denoise


@pytest.fixture(scope="module")
def toy_model():
    """``TOY`` fitted to a correlated 2-D Gaussian (a few seconds on a CPU). The data has 100
    trailing NaN rows that ``num_valid`` keeps out of training."""
    chol = np.linalg.cholesky(COV)
    data = jax.random.normal(jax.random.key(1), (20000, 2)) @ chol.T + MU
    state = diffusion.init(jax.random.key(0), TOY, normalize.fit(data))
    padded = jnp.concatenate([data, jnp.full((100, 2), jnp.nan)])
    state, metrics = diffusion.train(state, padded, 1000, 256, num_valid=20000)
    return state, metrics


def test_preconditioning_hand_values():
    sigma = jnp.array([1.0, 2.0, 0.5])
    c_skip, c_out, c_in, c_noise = edm.preconditioning(sigma)
    np.testing.assert_allclose(c_skip, [0.5, 0.2, 0.8], rtol=1e-6)
    np.testing.assert_allclose(c_out, [1 / math.sqrt(2), 2 / math.sqrt(5), 0.5 / math.sqrt(1.25)])
    np.testing.assert_allclose(c_in, [1 / math.sqrt(2), 1 / math.sqrt(5), 1 / math.sqrt(1.25)])
    np.testing.assert_allclose(c_noise, [0.0, math.log(2) / 4, math.log(0.5) / 4], atol=1e-7)
    # sigma_data = 0.5 at sigma = 0.5: c_skip = 0.25 / 0.5, c_out = 0.25 / sqrt(0.5)
    c_skip, c_out, c_in, _ = edm.preconditioning(jnp.float32(0.5), sigma_data=0.5)
    np.testing.assert_allclose(
        [c_skip, c_out, c_in], [0.5, 0.25 / math.sqrt(0.5), 1 / math.sqrt(0.5)]
    )


def test_denoise_combines_network_with_preconditioning(toy_model):
    params = toy_model[0].params
    x = jax.random.normal(jax.random.key(1), (5, 2))
    sigma = jnp.array([0.01, 0.3, 1.0, 5.0, 80.0])
    scale = jnp.sqrt(sigma**2 + 1)[:, None]
    f = TOY.network.apply({"params": params}, x / scale, jnp.log(sigma) / 4)
    expected = x / scale**2 + sigma[:, None] / scale * f
    np.testing.assert_allclose(denoise_jit(params, TOY, x, sigma), expected, atol=1e-5)


def test_loss_weight_and_weighted_mse(toy_model):
    np.testing.assert_allclose(edm.loss_weight(jnp.array([1.0, 0.5, 2.0])), [2.0, 5.0, 1.25])
    params = toy_model[0].params
    x, noise = jax.random.normal(jax.random.key(1), (2, 5, 2))
    sigma = jnp.array([0.01, 0.3, 1.0, 5.0, 80.0])
    loss = jax.jit(diffusion.denoising_loss, static_argnums=1)(params, TOY, x, sigma, noise)
    denoised = denoise_jit(params, TOY, x + sigma[:, None] * noise, sigma)
    weight = (sigma**2 + 1) / sigma**2
    np.testing.assert_allclose(loss, weight * ((denoised - x) ** 2).mean(axis=1), rtol=1e-5)


def test_sigma_schedule():
    config = edm.SamplerConfig(num_steps=16)
    sigmas = np.asarray(edm.sigma_schedule(config))
    assert sigmas.shape == (17,)
    np.testing.assert_allclose([sigmas[0], sigmas[-2], sigmas[-1]], [80.0, 0.002, 0.0], rtol=1e-5)
    assert np.all(np.diff(sigmas) < 0)
    mid = (80 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7  # i / (N - 1) = 1/2
    np.testing.assert_allclose(
        edm.sigma_schedule(edm.SamplerConfig(num_steps=3))[1], mid, rtol=1e-5
    )


def test_heun_step_matches_hand_computation():
    sd2 = 0.25
    denoise = lambda x, s: x * sd2 / (sd2 + s**2)
    x = jnp.array([[1.5, -2.0]])
    t0, t1 = 3.0, 2.0
    config = edm.SamplerConfig(s_tmax=10.0)  # churn active at t0 = 3
    key = jax.random.key(7)

    det = edm.heun_step(denoise, key, x, t0, t1, config.deterministic())
    d0 = x * t0 / (sd2 + t0**2)
    euler = x + (t1 - t0) * d0
    d1 = euler * t1 / (sd2 + t1**2)
    np.testing.assert_allclose(det, x + (t1 - t0) * (d0 + d1) / 2, rtol=1e-6)

    # with churn: t_hat = (1 + gamma) t0, noise from the first half of the key split
    gamma = math.sqrt(2) - 1  # min(80 / 128, sqrt 2 - 1)
    t_hat = (1 + gamma) * t0
    z = jax.random.normal(jax.random.split(key)[0], x.shape)
    x_hat = x + math.sqrt(t_hat**2 - t0**2) * 1.003 * z
    d0 = x_hat * t_hat / (sd2 + t_hat**2)
    euler = x_hat + (t1 - t_hat) * d0
    d1 = euler * t1 / (sd2 + t1**2)
    stoch = edm.heun_step(denoise, key, x, t0, t1, config)
    np.testing.assert_allclose(stoch, x_hat + (t1 - t_hat) * (d0 + d1) / 2, rtol=1e-5)

    # last step to sigma 0 is Euler and lands on the denoised estimate
    last = edm.heun_step(denoise, key, x, 0.002, 0.0, config, second_order=False)
    np.testing.assert_allclose(last, denoise(x, 0.002), rtol=1e-6)


@pytest.mark.parametrize("deterministic", [False, True])
def test_sampler_recovers_gaussian_with_exact_denoiser(deterministic):
    config = edm.SamplerConfig()
    config = config.deterministic() if deterministic else config
    run = jax.jit(lambda k: edm.heun_sample(gaussian_denoiser(MU, COV), k, (20000, 2), config))
    x = np.asarray(run(jax.random.key(0)))
    # the default churn (S_noise 1.003) inflates the spread by ~2.5%
    np.testing.assert_allclose(x.mean(0), MU, atol=0.03)
    np.testing.assert_allclose(np.cov(x.T), COV, atol=0.05)


def test_guidance_adds_to_the_score():
    # score of N(0, 1 + sigma^2) plus m / (1 + sigma^2) is the score of N(m, 1 + sigma^2)
    m = jnp.array([1.0, -2.0])
    guidance = lambda x, s: m / (1 + s**2)
    denoise = gaussian_denoiser(np.zeros(2), np.eye(2))
    config = edm.SamplerConfig().deterministic()
    run = jax.jit(lambda k: edm.heun_sample(denoise, k, (10000, 2), config, guidance=guidance))
    x = run(jax.random.key(0))
    np.testing.assert_allclose(x.mean(0), m, atol=0.04)
    np.testing.assert_allclose(x.std(0), [1.0, 1.0], atol=0.04)


@pytest.mark.parametrize("reconstruction", [False, True])
def test_inpainting_holds_known_dims_and_conditions_the_free_dim(reconstruction):
    """The free dim's exact conditional is N(-1 + 0.8 (known - 2), 0.36): mean -0.2 and -1.8 here.

    Measured (default 128-step stochastic sampler, exact denoiser): replacement alone gives
    -0.36 / -1.64 (error 0.16); with reconstruction guidance -0.23 / -1.77 (error 0.03).
    """
    n = 10000
    known = jnp.where(jnp.arange(n) % 2 == 0, 3.0, 1.0)
    values = jnp.stack([known, jnp.zeros(n)], axis=1)
    inpaint = edm.Inpaint(values, jnp.array([True, False]), reconstruction=reconstruction)
    denoise = gaussian_denoiser(MU, COV)
    config = edm.SamplerConfig()
    run = jax.jit(lambda k: edm.heun_sample(denoise, k, (n, 2), config, inpaint=inpaint))
    x = np.asarray(run(jax.random.key(0)))
    np.testing.assert_array_equal(x[:, 0], known)
    error = max(abs(x[::2, 1].mean() + 0.2), abs(x[1::2, 1].mean() + 1.8))
    if reconstruction:
        assert error < 0.05
        np.testing.assert_allclose([x[::2, 1].std(), x[1::2, 1].std()], 0.6, atol=0.04)
    else:  # the bias that reconstruction guidance removes
        assert 0.1 < error < 0.25


def test_evaluation_sigmas_are_the_levels_the_sampler_queries():
    config = edm.SamplerConfig(num_steps=8)
    t = np.asarray(edm.sigma_schedule(config))
    seen = []

    def record(x, sigma):
        jax.debug.callback(lambda s: seen.append(float(s)), sigma)
        return x

    jax.block_until_ready(jax.jit(lambda k: edm.heun_sample(record, k, (1, 2), config))(KEY))
    gamma = np.where((t[:-1] >= 0.05) & (t[:-1] <= 50), math.sqrt(2) - 1, 0.0)  # 80/8 > 0.41
    levels = np.asarray(edm.evaluation_sigmas(config))
    assert levels.shape == (15,)
    np.testing.assert_allclose(levels[:8], t[:-1] * (1 + gamma), rtol=1e-6)
    np.testing.assert_allclose(levels[8:], t[1:-1], rtol=1e-6)
    np.testing.assert_allclose(sorted(seen), sorted(levels), rtol=1e-5)


def test_learned_model_inpaints_near_the_exact_conditional(toy_model):
    """Reconstruction-guided inpainting through the fitted network, in model space, in chunks."""
    state = toy_model[0]
    n = 2000
    known = jnp.where(jnp.arange(n) % 2 == 0, 3.0, 1.0)
    raw = jnp.stack([known, jnp.zeros(n)], axis=1)
    inpaint = edm.Inpaint(normalize.apply(state.normalizer, raw), jnp.array([True, False]))
    run = jax.jit(lambda s, k, i: diffusion.sample_normalized(s, k, n, chunk_size=1500, inpaint=i))
    z = run(state, KEY, inpaint)
    np.testing.assert_array_equal(z[:, 0], inpaint.values[:, 0])
    x = np.asarray(normalize.invert(state.normalizer, z))
    np.testing.assert_allclose([x[::2, 1].mean(), x[1::2, 1].mean()], [-0.2, -1.8], atol=0.1)


def test_learns_2d_gaussian(toy_model):
    state, metrics = toy_model
    assert metrics["loss"].shape == (1000,) and np.isfinite(metrics["loss"]).all()
    assert metrics["loss"][-200:].mean() < metrics["loss"][:50].mean()
    assert int(state.step) == 1000
    x = np.asarray(diffusion.sample(state, jax.random.key(2), 3000, chunk_size=2000))
    assert x.shape == (3000, 2)  # two chunks, the second partly used
    np.testing.assert_allclose(x.mean(0), MU, atol=0.1)
    np.testing.assert_allclose(np.cov(x.T), COV, atol=0.15)


def test_bf16_and_tf32_denoisers_track_fp32(toy_model):
    params = toy_model[0].params
    x = jax.random.normal(jax.random.key(1), (5, 2))
    sigma = jnp.array([0.01, 0.3, 1.0, 5.0, 80.0])
    ref = denoise_jit(params, TOY, x, sigma)
    for precision, tol in [("tf32", 1e-2), ("bf16", 5e-2)]:
        other = denoise_jit(params, dataclasses.replace(TOY, precision=precision), x, sigma)
        assert other.dtype == jnp.float32
        assert float(jnp.abs(other - ref).max()) < tol * float(jnp.abs(ref).max())


def ema_pytorch_reference(weights, beta=0.995, every=10, after=100, power=2 / 3):
    """The EMA of ``weights[k]`` (the weights after optimiser step k; ``weights[0]`` the init)
    after each step, as ``ema_pytorch.EMA(beta, update_every, update_after_step).update()``."""
    ema, counter, out = weights[0], 0, []
    for w in weights[1:]:
        step, counter = counter, counter + 1
        if step % every == 0:
            if step <= after:
                ema = w
            else:
                epoch = counter - after - 1
                decay = min(max(1 - (1 + epoch) ** -power, 0.0), beta)
                ema = ema + (1 - decay) * (w - ema)
        out.append(ema)
    return np.array(out)


def test_ema_follows_the_ema_pytorch_schedule_on_a_scalar():
    weights = np.cumsum(np.random.default_rng(0).normal(size=131)).astype(np.float32)

    def step(ema, i):
        ema = diffusion.update_ema(TOY, i, ema, {"w": jnp.asarray(weights)[i + 1]})
        return ema, ema["w"]

    _, ema = jax.lax.scan(step, {"w": jnp.float32(weights[0])}, jnp.arange(130))
    np.testing.assert_allclose(ema, ema_pytorch_reference(weights), rtol=1e-5)
    np.testing.assert_array_equal(ema[:10], weights[1])  # a copy after step 1, kept 9 steps
    np.testing.assert_array_equal(ema[100:110], weights[101])  # the last copy
    decay = diffusion.ema_decay_at(TOY, jnp.array([110, 111, 10**6]))
    np.testing.assert_allclose(decay, [1 - 11 ** (-2 / 3), 1.0, 0.995], rtol=1e-6)


def test_optimizer_is_adamw_with_synthers_betas_clipping_and_decay_mask():
    config = dataclasses.replace(TOY, weight_decay=0.1, learning_rate=1e-3)
    params = {"Dense_0": {"kernel": jnp.ones(()), "bias": jnp.ones(())}}
    params["RandomFourierEmbedding_0"] = {"frequencies": jnp.ones(())}
    opt = diffusion.optimizer(config)
    grads = jax.tree.map(jnp.float32, {"Dense_0": {"kernel": 3.0, "bias": 4.0}})
    grads["RandomFourierEmbedding_0"] = {"frequencies": jnp.float32(0.0)}
    _, state = opt.update(grads, opt.init(params), params)
    mu, nu = (optax.tree_utils.tree_get(state, name)["Dense_0"] for name in ("mu", "nu"))
    clipped = np.array([0.6, 0.8])  # global norm 5 clipped to 1
    np.testing.assert_allclose([mu["kernel"], mu["bias"]], 0.1 * clipped, rtol=1e-6)
    np.testing.assert_allclose([nu["kernel"], nu["bias"]], 0.01 * clipped**2, rtol=1e-6)
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = opt.update(zero, opt.init(params), params)  # weight decay only
    np.testing.assert_allclose(updates["Dense_0"]["kernel"], -1e-3 * 0.1, rtol=1e-6)
    assert updates["Dense_0"]["bias"] == updates["RandomFourierEmbedding_0"]["frequencies"] == 0


def test_fourier_frequencies_come_from_the_init_key_and_stay_fixed(toy_model):
    state = toy_model[0]
    fresh = [diffusion.init(jax.random.key(k), TOY, state.normalizer) for k in (0, 1)]
    freqs = [s.params["RandomFourierEmbedding_0"]["frequencies"] for s in [state, *fresh]]
    np.testing.assert_array_equal(freqs[0], freqs[1])  # unchanged by 1000 training steps
    assert not np.allclose(freqs[1], freqs[2])


def test_default_batch_size_is_synthers_rule():
    assert diffusion.default_batch_size(799_999) == 256
    assert diffusion.default_batch_size(800_000) == diffusion.default_batch_size(10**7) == 1024


def random_transitions(key, n, obs_dim=3, action_dim=2):
    k = jax.random.split(key, 4)
    return Transition(
        obs=jax.random.normal(k[0], (n, obs_dim)) * 5 + 1,
        action=jax.random.uniform(k[1], (n, action_dim), minval=-1, maxval=1),
        reward=jax.random.normal(k[2], (n,)),
        next_obs=jax.random.normal(k[3], (n, obs_dim)) * 5 + 1,
        terminal=(jnp.arange(n) % 7 == 0).astype(jnp.float32),
        truncated=jnp.zeros(n),
        mc_return=jnp.ones(n),
    )


def test_flatten_unflatten_and_normalise_round_trip():
    t = random_transitions(jax.random.key(0), 50)
    flat = diffusion.flatten(t)
    assert flat.shape == (50, 2 * 3 + 2 + 2)
    np.testing.assert_array_equal(flat[:, 5], t.reward)
    norm = diffusion.fit_normalizer(flat)
    z = normalize.apply(norm, flat)
    np.testing.assert_array_equal(z[:, -1], t.terminal)  # terminal dim stays raw
    np.testing.assert_allclose(z[:, :-1].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[:, :-1].std(0), 1.0, atol=1e-4)

    back = diffusion.unflatten(normalize.invert(norm, z), 3, 2)
    for name in ("obs", "action", "reward", "next_obs", "terminal"):
        np.testing.assert_allclose(getattr(back, name), getattr(t, name), atol=1e-5)
    np.testing.assert_array_equal(back.truncated, 0.0)
    np.testing.assert_array_equal(back.mc_return, 0.0)

    noisy = flat.at[:, -1].set(jnp.linspace(-0.3, 1.3, 50))
    terminal = diffusion.unflatten(noisy, 3, 2).terminal
    np.testing.assert_array_equal(terminal, (jnp.linspace(-0.3, 1.3, 50) > 0.5).astype(jnp.float32))
    with pytest.raises(ValueError, match="unflatten"):
        diffusion.unflatten(flat, 4, 2)


def test_fit_and_generate_vmapped_over_seeds():
    t = random_transitions(jax.random.key(0), 64)
    config = diffusion.Config.for_transitions(3, 2, width=32, num_blocks=1, num_train_steps=11)
    sampler = edm.SamplerConfig(num_steps=4)
    generate = lambda s, k: diffusion.generate(s, k, 6, chunk_size=4, sampler=sampler)
    keys = jax.random.split(jax.random.key(1), 2)

    states, metrics = jax.vmap(lambda k: diffusion.fit_transitions(k, t, config))(keys)
    out = jax.vmap(generate)(states, keys)
    assert metrics["loss"].shape == (2, 11) and np.isfinite(metrics["loss"]).all()
    # the 11th step (step 10) copies the weights into the EMA
    jax.tree.map(np.testing.assert_array_equal, states.ema_params, states.params)
    assert isinstance(out, Transition) and out.obs.shape == (2, 6, 3)
    assert out.action.shape == (2, 6, 2) and out.reward.shape == (2, 6)
    assert set(np.unique(out.terminal)) <= {0.0, 1.0}
    assert not np.allclose(out.obs[0], out.obs[1])
    np.testing.assert_allclose(states.normalizer.mean[0, :-1], diffusion.flatten(t).mean(0)[:-1])
    # the sampler under vmap equals per-seed runs
    for i, key in enumerate(keys):
        single = generate(jax.tree.map(operator.itemgetter(i), states), key)
        for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(single), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-4)

    with pytest.raises(ValueError, match="obs_dim"):
        diffusion.fit_transitions(keys[0], t, diffusion.Config.for_transitions(4, 2))
    with pytest.raises(ValueError, match="NaN"):
        diffusion.fit_transitions(keys[0], t.replace(reward=t.reward.at[3].set(jnp.nan)), config)


def test_config_validation():
    with pytest.raises(ValueError, match="precision"):
        diffusion.Config(dim=2, precision="fp16")
    with pytest.raises(ValueError, match="does not match"):
        diffusion.Config(dim=5, obs_dim=3, action_dim=2)
    with pytest.raises(ValueError, match="num_steps"):
        edm.SamplerConfig(num_steps=1)
    assert diffusion.Config.for_transitions(11, 3).dim == 27
    hash(diffusion.Config(dim=2))
