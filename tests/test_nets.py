import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from rlgen import nets


def test_ensemble_equals_loop_over_members_and_members_differ():
    q = nets.QEnsemble(hidden=(32, 32), num_members=5, layer_norm=True)
    obs, act = jax.random.normal(jax.random.key(1), (7, 4)), jnp.ones((7, 2)) * 0.3
    params = q.init(jax.random.key(0), obs, act)
    out = q.apply(params, obs, act)
    assert out.shape == (5, 7)
    single = nets.MLP((32, 32), 1, layer_norm=True)
    members = params["params"]["VmapMLP_0"]
    for i in range(5):
        p_i = jax.tree.map(lambda x, i=i: x[i], members)
        ref = single.apply({"params": p_i}, jnp.concatenate([obs, act], -1))[:, 0]
        np.testing.assert_allclose(out[i], ref, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[0], out[1]), "members must be initialised independently"


def test_ensemble_with_per_member_inputs():
    ens = nets.ensemble(nets.MLP, 3, shared_input=False)(hidden=(8,), out=2)
    x = jax.random.normal(jax.random.key(0), (3, 4, 5))
    params = ens.init(jax.random.key(1), x)
    out = ens.apply(params, x)
    ref = jax.vmap(lambda p, xi: nets.MLP((8,), 2).apply({"params": p}, xi))(params["params"], x)
    np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_tanh_gaussian_log_prob_matches_direct_change_of_variables():
    mean = jnp.array([[0.3, -1.2], [2.0, 0.0]])
    log_std = jnp.array([[-0.5, 0.2], [0.0, -1.0]])
    action, logp = nets.tanh_gaussian_sample(jax.random.key(0), mean, log_std)
    u = np.arctanh(np.asarray(action, np.float64))
    std = np.exp(np.asarray(log_std, np.float64))
    direct = (norm.logpdf(u, np.asarray(mean), std) - np.log(1 - np.tanh(u) ** 2)).sum(-1)
    np.testing.assert_allclose(logp, direct, rtol=1e-3, atol=1e-3)
    again = nets.tanh_gaussian_log_prob(mean, log_std, action)
    np.testing.assert_allclose(again, logp, rtol=1e-3, atol=1e-3)


def test_tanh_gaussian_density_integrates_to_one():
    a = jnp.linspace(-0.9999, 0.9999, 200001)[:, None]
    logp = nets.tanh_gaussian_log_prob(jnp.full_like(a, 0.4), jnp.full_like(a, -0.3), a)
    integral = float(jnp.trapezoid(jnp.exp(logp), a[:, 0]))
    assert integral == pytest.approx(1.0, abs=2e-3)


def test_gaussian_policy_has_a_tanh_mean_and_a_state_independent_clipped_log_std():
    pol = nets.GaussianPolicy(action_dim=2, hidden=(8,))
    params = pol.init(jax.random.key(0), jnp.zeros((1, 3)))
    np.testing.assert_array_equal(params["params"]["log_std"], [0.0, 0.0])
    obs = 100 * jax.random.normal(jax.random.key(1), (4, 3))
    mean, log_std = pol.apply(params, obs)
    raw = nets.MLP((8,), 2).apply({"params": params["params"]["MLP_0"]}, obs)
    np.testing.assert_allclose(mean, jnp.tanh(raw), rtol=1e-6)
    assert log_std.shape == (4, 2)
    params["params"]["log_std"] = jnp.array([-9.0, 0.5])
    np.testing.assert_array_equal(pol.apply(params, obs)[1], [[-5.0, 0.5]] * 4)


def test_gaussian_log_prob_is_finite_at_the_bounds_and_matches_the_density():
    mean, log_std = jnp.array([0.5, -0.2]), jnp.array([0.0, -1.0])
    logp = float(nets.gaussian_log_prob(mean, log_std, jnp.array([1.0, -1.0])))
    # Per dim: -(a - mean)^2 / (2 std^2) - log std - log(2 pi) / 2.
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    expected = (-0.5 * 0.5**2 - half_log_2pi) + (-0.5 * (0.8 * math.e) ** 2 + 1.0 - half_log_2pi)
    assert math.isfinite(logp) and logp == pytest.approx(expected, rel=1e-6)


def test_policies_shapes_and_bounds():
    pol = nets.TanhGaussianPolicy(action_dim=3, hidden=(16,))
    params = pol.init(jax.random.key(0), jnp.zeros((4, 5)))
    mean, log_std = pol.apply(params, 100 * jnp.ones((4, 5)))
    assert mean.shape == (4, 3) and float(log_std.max()) <= nets.LOG_STD_MAX
    det = nets.DeterministicPolicy(action_dim=3, hidden=(16,))
    dp = det.init(jax.random.key(0), jnp.zeros((4, 5)))
    a = det.apply(dp, 100 * jax.random.normal(jax.random.key(2), (4, 5)))
    assert a.shape == (4, 3) and float(jnp.abs(a).max()) <= 1.0


def test_random_fourier_embedding_values():
    emb = nets.RandomFourierEmbedding(16)
    t = jnp.array([0.0, 0.25])
    params = emb.init(jax.random.key(3), t)
    out = emb.apply(params, t)
    w = params["params"]["frequencies"]
    assert out.shape == (2, 17) and w.shape == (8,)
    np.testing.assert_allclose(out[1, 1:9], jnp.sin(2 * math.pi * 0.25 * w), rtol=1e-6)
    np.testing.assert_allclose(out[0], jnp.concatenate([jnp.zeros(9), jnp.ones(8)]))


def test_fourier_frequencies_are_drawn_per_init_and_not_trained():
    emb = nets.RandomFourierEmbedding(16)
    t = jnp.array([0.1, -0.7])
    w = [emb.init(jax.random.key(k), t)["params"]["frequencies"] for k in (0, 1, 0)]
    assert not np.allclose(w[0], w[1])  # SynthER draws them with torch.randn per model
    np.testing.assert_array_equal(w[0], w[2])
    many = nets.RandomFourierEmbedding(4096).init(jax.random.key(2), t)["params"]["frequencies"]
    assert abs(float(many.std()) - 1.0) < 0.05  # N(0, 1)
    grads = jax.grad(lambda p: emb.apply(p, t).sum())({"params": {"frequencies": w[0]}})
    np.testing.assert_array_equal(grads["params"]["frequencies"], 0.0)


def test_residual_denoiser_is_residual_and_noise_conditioned():
    den = nets.ResidualDenoiser(width=32, num_blocks=6)
    x = jax.random.normal(jax.random.key(0), (5, 9))
    params = den.init(jax.random.key(1), x, jnp.zeros(5))
    out = den.apply(params, x, jnp.zeros(5))
    assert out.shape == x.shape
    assert not np.allclose(out, den.apply(params, x, jnp.ones(5))), "noise level must matter"
    dense_names = [k for k in params["params"] if k.startswith("Dense")]
    assert len(dense_names) == 3 + 1 + 6 + 1  # emb(2) + proj + in + 6 blocks + out
    bf16 = nets.ResidualDenoiser(width=32, dtype=jnp.bfloat16).apply(params, x, jnp.zeros(5))
    assert bf16.dtype == jnp.float32
    np.testing.assert_allclose(bf16, out, atol=0.05 * float(jnp.abs(out).max()))


def _layers(initializer: str, hidden=(256, 128)) -> dict:
    mlp = nets.MLP(hidden, 3, initializer=initializer)
    return mlp.init(jax.random.key(0), jnp.zeros((1, 64)))["params"]


def test_lecun_initializer_is_flax_default():
    default = nets.MLP((256, 128), 3).init(jax.random.key(0), jnp.zeros((1, 64)))["params"]
    jax.tree.map(np.testing.assert_array_equal, _layers("lecun"), default)


@pytest.mark.parametrize("shape", [(11, 64), (64, 64), (64, 1), (2, 3, 5)])
def test_orthogonal_equals_jax_orthogonal_initializer(shape):
    key = jax.random.key(3)
    ours = nets.orthogonal(key, shape, gain=1.5)
    np.testing.assert_allclose(ours, jax.nn.initializers.orthogonal(1.5)(key, shape), atol=1e-5)


def test_orthogonal_ensembles_initialise_under_vmap():
    """Two vmapped LAPACK QRs of 256 x 256 in one jax 0.10 CPU program deadlock; nets.orthogonal
    uses none, so seed-vmapped ensembles initialise (this test hangs with the LAPACK version)."""
    q = nets.QEnsemble((256, 256), 2, initializer="orthogonal")
    init = jax.jit(jax.vmap(lambda k: q.init(k, jnp.zeros((1, 11)), jnp.zeros((1, 3)))))
    params = init(jax.random.split(jax.random.key(0), 4))["params"]["VmapMLP_0"]
    w = np.asarray(params["Dense_1"]["kernel"][3, 1], np.float64)
    np.testing.assert_allclose(w.T @ w, 2.0 * np.eye(256), atol=1e-4)


def test_orthogonal_initializer_has_gain_sqrt2_and_zero_bias():
    for layer in _layers("orthogonal").values():
        w = np.asarray(layer["kernel"], np.float64)
        small = min(w.shape)
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
        np.testing.assert_allclose(gram, 2.0 * np.eye(small), atol=1e-4)
        assert not np.any(layer["bias"])


def test_orthogonal_small_out_scales_only_the_output_layer_to_gain_1e_2():
    layers = _layers("orthogonal-small-out")
    reference = _layers("orthogonal")
    for name in ("Dense_0", "Dense_1"):  # hidden layers: the plain orthogonal init
        np.testing.assert_array_equal(layers[name]["kernel"], reference[name]["kernel"])
    out = np.asarray(layers["Dense_2"]["kernel"], np.float64)  # (128, 3)
    np.testing.assert_allclose(out.T @ out, 1e-4 * np.eye(3), atol=1e-9)
    assert not np.any(layers["Dense_2"]["bias"])


def test_tanh_gaussian_learned_affine_log_std_starts_at_the_offset_and_clips_at_minus_20():
    policy = nets.TanhGaussianPolicy(2, (8,), log_std_offset=-1.0)
    obs = jax.random.normal(jax.random.key(1), (5, 3))
    params = policy.init(jax.random.key(0), obs)
    raw = nets.MLP((8,), 4).apply({"params": params["params"]["MLP_0"]}, obs)[:, 2:]
    _, log_std = policy.apply(params, obs)
    np.testing.assert_allclose(log_std, np.clip(raw - 1.0, -20.0, 2.0), rtol=1e-6)
    params["params"]["log_std_multiplier"] = jnp.float32(100.0)
    params["params"]["log_std_offset"] = jnp.float32(0.5)
    _, log_std = policy.apply(params, obs)
    np.testing.assert_allclose(log_std, np.clip(100.0 * raw + 0.5, -20.0, 2.0), rtol=1e-6)
    assert log_std.min() < -5.0  # below SAC's clip, which the plain policy keeps
    _, plain = nets.TanhGaussianPolicy(2, (8,)).apply(
        {"params": {"MLP_0": params["params"]["MLP_0"]}}, obs
    )
    np.testing.assert_allclose(plain, np.clip(raw, -5.0, 2.0), rtol=1e-6)


def test_torch_initializer_is_uniform_within_one_over_sqrt_fan_in():
    for layer in _layers("torch").values():
        kernel, bias = np.asarray(layer["kernel"]), np.asarray(layer["bias"])
        bound = 1 / math.sqrt(kernel.shape[0])
        assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
        assert np.any(bias)
        # fills U(-b, b), whose std is b / sqrt(3), not a narrower interval
        assert np.abs(kernel).max() > 0.99 * bound
        np.testing.assert_allclose(kernel.std(), bound / math.sqrt(3), rtol=0.05)


def test_unknown_initializer_is_refused():
    with pytest.raises(ValueError, match="unknown initializer 'xavier'"):
        _layers("xavier")
