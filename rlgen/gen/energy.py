"""EDIS (energy-guided diffusion sampling, Liu et al. 2024): three energies over noised transitions
that steer SynthER's diffusion sampler towards the online data distribution.

Everything lives in the diffusion model's normalised space: an energy reads its block of a noised
flat transition [obs, action, reward, next_obs, terminal] and the noise level sigma,
- ``state``: E_s(s, sigma), trained on online states against unguided diffusion samples;
- ``policy``: E_pi(s, a, sigma), on (s, pi(s)) against (s, a ~ diffusion given s);
- ``transition``: E_T(s, a, s', sigma), on real online (s, a, s') against
  (s, a, s' ~ diffusion given s, a),
each with InfoNCE (one positive against ``num_negatives`` negatives, noised at one shared sigma
drawn from the levels the sampler evaluates, so every queried level is trained). A contrastive
energy trained at level sigma estimates the intermediate energy -log E[exp(-E(x_0)) | x_sigma]
(Lu et al. 2023), which is what exact guidance needs at that level.

Guidance adds -scale * grad E to the score at every sampler evaluation (the exact form for
sampling p(x) exp(-scale E(x))), each energy's gradient masked to its own block (s, a or s'),
although E_pi and E_T read more. The sampler's direction d = -t * score then gains
t * scale * grad E, whose per-row norm is clipped at ``clip * sqrt(dim)`` (the reference's cap,
10 sqrt(D)), so the strong high-noise steps cannot throw samples off the data.

Typical use: energies created once, trained on at every refit of the diffusion model with fresh
online positives and fresh negatives from the new model::

    state = init(key, config)
    # at every refit:
    examples = build_examples(config, diff_state, online_batch, policy_fn, key)
    state, metrics = train(state, examples, num_steps=200, batch_size=256)
    synthetic = guided_generate(diff_state, state, key, 100_000, Guidance.create(scale=1.0))
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlgen import nets
from rlgen.data import normalize
from rlgen.data.transition import Transition
from rlgen.gen import diffusion, edm

ENERGIES = ("state", "policy", "transition")
READS = {
    "state": ("obs",),
    "policy": ("obs", "action"),
    "transition": ("obs", "action", "next_obs"),
}
GUIDES = {"state": "obs", "policy": "action", "transition": "next_obs"}

EnergyFn = Callable[[jax.Array, jax.Array], jax.Array]
PolicyFn = Callable[[jax.Array, jax.Array], jax.Array]

_ADAM = optax.scale_by_adam()


@dataclasses.dataclass(frozen=True)
class Config:
    """Static settings: transition layout, energy MLP shape, negatives per positive, and the
    sampler whose evaluation levels the energies are trained at (and ``guided_generate`` uses)."""

    obs_dim: int
    action_dim: int
    hidden: tuple[int, ...] = (256, 256, 256)
    activation: str = "silu"
    layer_norm: bool = False
    fourier_features: int = 16
    num_negatives: int = 10
    sigma_data: float = 1.0
    sampler: edm.SamplerConfig = edm.SamplerConfig()

    def __post_init__(self):
        if self.obs_dim < 1 or self.action_dim < 1:
            raise ValueError(f"energy.Config needs positive obs_dim and action_dim, got {self}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"energy.Config.hidden must be positive widths, got {self.hidden}")
        if self.num_negatives < 1:
            raise ValueError(f"energy.Config.num_negatives must be >= 1, got {self.num_negatives}")

    @property
    def dim(self) -> int:
        return diffusion.flat_dim(self.obs_dim, self.action_dim)

    @property
    def network(self) -> EnergyNet:
        return EnergyNet(
            self.hidden, self.activation, self.layer_norm, self.fourier_features, self.sigma_data
        )

    def inputs(self, name: str) -> np.ndarray:
        """Indices of the flat dims energy ``name`` reads."""
        slices = diffusion.block_slices(self.obs_dim, self.action_dim)
        return np.concatenate([np.arange(self.dim)[slices[f]] for f in READS[name]])

    def guide_mask(self, name: str) -> jax.Array:
        """(dim,) booleans: the block energy ``name`` guides."""
        return diffusion.block_mask(self.obs_dim, self.action_dim, GUIDES[name])


class EnergyNet(nn.Module):
    """E(x, sigma): an MLP over [c_in(sigma) x, Fourier features of ln(sigma) / 4] -> (n,), with
    c_in = 1 / sqrt(sigma^2 + sigma_data^2) so inputs have unit scale at every noise level. The
    Fourier frequencies are fixed constants (no PRNG in the graph, which keeps compiles short).
    The output layer has no bias: InfoNCE cannot see a constant shift, so it gets no gradient."""

    hidden: tuple[int, ...]
    activation: str = "silu"
    layer_norm: bool = False
    fourier_features: int = 16
    sigma_data: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, sigma: jax.Array) -> jax.Array:
        act = nets.activation_fn(self.activation)
        c_in = 1.0 / jnp.sqrt(sigma**2 + self.sigma_data**2)
        freqs = np.random.default_rng(0).normal(size=self.fourier_features // 2)
        angles = 2 * np.pi * (jnp.log(sigma) / 4)[:, None] * freqs.astype(np.float32)
        h = jnp.concatenate([x * c_in[:, None], jnp.sin(angles), jnp.cos(angles)], axis=-1)
        for width in self.hidden:
            h = nn.Dense(width)(h)
            h = act(nn.LayerNorm()(h) if self.layer_norm else h)
        return nn.Dense(1, use_bias=False)(h)[:, 0]


@flax.struct.dataclass
class HParams:
    """Sweepable (vmappable) settings."""

    learning_rate: jax.Array = 1e-3


@flax.struct.dataclass
class State:
    """Params of the three energies (keyed by ``ENERGIES``), Adam state, hyperparameters, step,
    PRNG key. ``config`` is static (part of the tree structure)."""

    params: dict[str, Any]
    opt_state: optax.OptState
    hp: HParams
    step: jax.Array
    key: jax.Array
    config: Config = flax.struct.field(pytree_node=False)


@flax.struct.dataclass
class Examples:
    """Contrastive data in the diffusion model's normalised flat space, per energy: positives
    (n, dim) and their negatives (n, num_negatives, dim)."""

    positive: dict[str, jax.Array]
    negative: dict[str, jax.Array]

    def __len__(self) -> int:
        return self.positive["state"].shape[0]


@flax.struct.dataclass
class Guidance:
    """Per-energy guidance scale and the clip of the guidance term in the sampler's direction
    (per-row norm <= ``clip * sqrt(dim)``; inf turns it off): a pytree, so both vmap.
    ``enabled`` (static) names the energies applied; the others are not evaluated (ablations)."""

    scale: dict[str, jax.Array]
    clip: jax.Array
    enabled: tuple[str, ...] = flax.struct.field(pytree_node=False, default=ENERGIES)

    @classmethod
    def create(cls, scale=1.0, clip=10.0, enabled=ENERGIES) -> Guidance:
        """``scale``: one value for every energy or a dict by energy name."""
        unknown = set(enabled) - set(ENERGIES)
        if unknown:
            raise ValueError(
                f"Guidance: unknown energies {sorted(unknown)}; choose from {ENERGIES}"
            )
        if isinstance(scale, dict) and set(scale) != set(ENERGIES):
            raise ValueError(f"Guidance.scale: need a value for each of {ENERGIES}, got {scale}")
        scales = {
            n: jnp.asarray(scale[n] if isinstance(scale, dict) else scale, jnp.float32)
            for n in ENERGIES
        }
        return cls(scale=scales, clip=jnp.asarray(clip, jnp.float32), enabled=tuple(enabled))


@functools.partial(jax.jit, static_argnames=("config",))
def init(key: jax.Array, config: Config, hp: HParams | None = None) -> State:
    """Fresh energy MLPs and Adam state."""
    hp = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), HParams() if hp is None else hp)
    k_state, *k_nets = jax.random.split(key, 1 + len(ENERGIES))
    sigma = jnp.ones((1,), jnp.float32)
    params = {
        name: config.network.init(k, jnp.zeros((1, len(config.inputs(name)))), sigma)["params"]
        for name, k in zip(ENERGIES, k_nets, strict=True)
    }
    return State(
        params=params,
        opt_state=_ADAM.init(params),
        hp=hp,
        step=jnp.zeros((), jnp.int32),
        key=k_state,
        config=config,
    )


def energy(params: dict, config: Config, name: str, x: jax.Array, sigma: jax.Array) -> jax.Array:
    """E_name(x, sigma) per row, shape (n,). ``x``: (n, dim) noised normalised flat transitions
    (the energy reads its own block); ``sigma``: a scalar or (n,)."""
    chex.assert_shape(x, (None, config.dim))
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    return config.network.apply({"params": params[name]}, x[:, config.inputs(name)], sigma)


def info_nce(pos_energy: jax.Array, neg_energy: jax.Array) -> jax.Array:
    """InfoNCE with logits -E: mean over rows of the cross-entropy of the positive (index 0)
    against its negatives. ``pos_energy``: (n,), ``neg_energy``: (n, K)."""
    chex.assert_equal_shape_prefix([pos_energy, neg_energy], 1)
    logits = -jnp.concatenate([pos_energy[:, None], neg_energy], axis=1)
    return -jnp.mean(jax.nn.log_softmax(logits, axis=1)[:, 0])


def _contrast(params, config: Config, name: str, pos, neg, sigma, noise):
    """InfoNCE of one energy on positives (B, dim) and negatives (B, K, dim), noised at the row's
    ``sigma`` (B,) with ``noise`` (B, 1 + K, dim)."""
    b, k, dim = neg.shape
    pos = pos + sigma[:, None] * noise[:, 0]
    neg = neg + sigma[:, None, None] * noise[:, 1:]
    e_pos = energy(params, config, name, pos, sigma)
    e_neg = energy(params, config, name, neg.reshape(b * k, dim), jnp.repeat(sigma, k))
    e_neg = e_neg.reshape(b, k)
    loss = info_nce(e_pos, e_neg)
    return loss, {
        f"{name}_loss": loss,
        f"{name}_accuracy": jnp.mean(e_pos < e_neg.min(axis=1)),
        f"{name}_gap": jnp.mean(e_neg) - jnp.mean(e_pos),
    }


def update(state: State, batch: Examples) -> tuple[State, dict[str, jax.Array]]:
    """One Adam step on the summed InfoNCE losses of the three energies on a batch of examples.

    Each energy draws its own per-row sigma uniformly from ``edm.evaluation_sigmas`` of
    ``config.sampler``; a positive and its negatives share the sigma, not the noise. Metrics per
    energy: loss, accuracy (positive below every negative), gap (mean negative minus mean
    positive energy).
    """
    config = state.config
    levels = edm.evaluation_sigmas(config.sampler)
    key, k_sigma, k_noise = jax.random.split(state.key, 3)
    n = len(ENERGIES)
    sigma = levels[jax.random.randint(k_sigma, (n, len(batch)), 0, levels.shape[0])]
    noise = jax.random.normal(k_noise, (n, len(batch), 1 + config.num_negatives, config.dim))

    def loss_fn(params):
        total, metrics = 0.0, {}
        for i, name in enumerate(ENERGIES):
            pos, neg = batch.positive[name], batch.negative[name]
            loss, m = _contrast(params, config, name, pos, neg, sigma[i], noise[i])
            total, metrics = total + loss, metrics | m
        return total, metrics

    grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = _ADAM.update(grads, state.opt_state, state.params)
    params = jax.tree.map(lambda p, u: p - state.hp.learning_rate * u, state.params, updates)
    new_state = state.replace(params=params, opt_state=opt_state, step=state.step + 1, key=key)
    return new_state, metrics


@functools.partial(jax.jit, static_argnames=("num_steps", "batch_size"))
def train(
    state: State, examples: Examples, num_steps: int, batch_size: int = 256
) -> tuple[State, dict[str, jax.Array]]:
    """``num_steps`` updates as one ``lax.scan``, each on ``batch_size`` examples drawn uniformly
    with replacement. Returns the final state and per-step metrics of shape (num_steps,)."""
    chex.assert_shape(examples.negative["state"], (None, state.config.num_negatives, None))

    def body(state, _):
        key, k_idx = jax.random.split(state.key)
        idx = jax.random.randint(k_idx, (batch_size,), 0, len(examples))
        return update(state.replace(key=key), jax.tree.map(lambda a: a[idx], examples))

    return jax.lax.scan(body, state, length=num_steps)


def build_examples(
    config: Config,
    diffusion_state: diffusion.State,
    online: Transition,
    policy_fn: PolicyFn,
    key: jax.Array,
    chunk_size: int = 16384,
) -> Examples:
    """Positives from ``online`` (n,) transitions and ``num_negatives`` negatives each from the
    diffusion model (sampled with ``config.sampler``), all normalised by its normaliser:
    - state: positive the online row; negatives unguided samples;
    - policy: positive the online row with action ``policy_fn(obs, key)`` (raw obs in, raw
      actions out); negatives inpainted given the row's obs;
    - transition: positive the online row; negatives inpainted given its obs and action.
    Samples n * num_negatives rows three times (two of them inpainted, ~3x the unguided cost).
    Pure and jittable (jit the caller, closing over ``policy_fn``); vmappable over seeds.
    """
    if (online.obs_dim, online.action_dim) != (config.obs_dim, config.action_dim):
        raise ValueError(
            f"build_examples: online has obs_dim={online.obs_dim}, action_dim={online.action_dim}"
            f" but the energy config has {config.obs_dim}, {config.action_dim}"
        )
    if diffusion_state.config.dim != config.dim:
        raise ValueError(
            f"build_examples: diffusion model dim {diffusion_state.config.dim} != {config.dim}"
        )
    n, k = len(online), config.num_negatives
    k_pi, k_state, k_policy, k_transition = jax.random.split(key, 4)
    to_model = lambda t: normalize.apply(diffusion_state.normalizer, diffusion.flatten(t))
    real = to_model(online)
    on_policy = to_model(online.replace(action=policy_fn(online.obs, k_pi)))

    def negatives(key, known_fields=()):
        inpaint = None
        if known_fields:
            mask = diffusion.block_mask(config.obs_dim, config.action_dim, *known_fields)
            sigma_data = diffusion_state.config.sigma_data
            inpaint = edm.Inpaint(jnp.repeat(real, k, axis=0), mask, sigma_data=sigma_data)
        z = diffusion.sample_normalized(
            diffusion_state, key, n * k, chunk_size, config.sampler, inpaint=inpaint
        )
        return z.reshape(n, k, config.dim)

    return Examples(
        positive={"state": real, "policy": on_policy, "transition": real},
        negative={
            "state": negatives(k_state),
            "policy": negatives(k_policy, ("obs",)),
            "transition": negatives(k_transition, ("obs", "action")),
        },
    )


def guidance_fn(
    energy_fns: dict[str, EnergyFn], masks: dict[str, jax.Array], guidance: Guidance
) -> edm.GuidanceFn:
    """The sampler's guidance hook g(x, sigma) = -sum over enabled energies of
    scale * mask * grad_x E, scaled down per row where the sampler's direction term sigma * g
    would exceed ``clip * sqrt(dim)`` in norm. ``energy_fns[name](x, sigma)`` returns per-row
    energies of x (n, dim); ``masks[name]`` (dim,) selects the guided block."""

    def fn(x: jax.Array, sigma: jax.Array) -> jax.Array:
        total = jnp.zeros_like(x)
        for name in guidance.enabled:
            grad = jax.grad(lambda z, name=name: energy_fns[name](z, sigma).sum())(x)
            total = total - guidance.scale[name] * jnp.where(masks[name], grad, 0.0)
        step = jnp.reshape(sigma, (-1, 1)) * jnp.linalg.norm(total, axis=-1, keepdims=True)
        cap = guidance.clip * np.sqrt(x.shape[-1])
        return total * jnp.minimum(1.0, cap / jnp.maximum(step, 1e-12))

    return fn


def network_guidance(state: State, guidance: Guidance) -> edm.GuidanceFn:
    """``guidance_fn`` for the trained energies in ``state``, each guiding its own block."""
    config = state.config
    fns = {n: functools.partial(energy, state.params, config, n) for n in ENERGIES}
    return guidance_fn(fns, {n: config.guide_mask(n) for n in ENERGIES}, guidance)


@functools.partial(jax.jit, static_argnames=("num_samples", "chunk_size", "sampler"))
def guided_generate(
    diffusion_state: diffusion.State,
    energy_state: State,
    key: jax.Array,
    num_samples: int,
    guidance: Guidance,
    chunk_size: int = 16384,
    sampler: edm.SamplerConfig | None = None,
) -> Transition:
    """``num_samples`` energy-guided synthetic transitions (raw), sampled in the diffusion model's
    normalised space with ``sampler`` (default: the energies' ``config.sampler``, the levels they
    were trained at). Vmappable over seeds (states, key and guidance)."""
    config = energy_state.config
    if diffusion_state.config.dim != config.dim:
        raise ValueError(
            f"guided_generate: diffusion model dim {diffusion_state.config.dim} != {config.dim}"
        )
    sampler = config.sampler if sampler is None else sampler
    z = diffusion.sample_normalized(
        diffusion_state,
        key,
        num_samples,
        chunk_size,
        sampler,
        guidance=network_guidance(energy_state, guidance),
    )
    flat = normalize.invert(diffusion_state.normalizer, z)
    return diffusion.unflatten(flat, config.obs_dim, config.action_dim)
