"""SynthER's diffusion model: an unconditional EDM denoiser over flat transition vectors.

The model lives in normalised space: ``State.normalizer`` z-scores raw data on the way into
training and is inverted on the way out of ``sample``, so callers pass and receive raw vectors.
A flat transition is [obs, action, reward, next_obs, terminal]; the terminal dim is left raw by the
normaliser and thresholded at 0.5 by ``unflatten``.

Typical use::

    config = Config.for_transitions(obs_dim, action_dim, width=1024, num_train_steps=100_000)
    state, metrics = fit_transitions(key, dataset, config)  # metrics: per-step loss, grad_norm
    synthetic = generate(state, key, 1_000_000)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from rlgen.data import normalize
from rlgen.data.normalize import Normalizer
from rlgen.data.transition import Transition
from rlgen.gen import edm
from rlgen.nets import ResidualDenoiser

# precision name -> (denoiser compute dtype, jax.default_matmul_precision inside the denoiser)
PRECISIONS = {
    "fp32": (None, "highest"),
    "tf32": (None, "tensorfloat32"),
    "bf16": (jnp.bfloat16, "default"),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Static settings: data layout, denoiser shape, precision, optimiser, EDM and sampler.

    ``precision``: "fp32" (full float32 matmuls), "tf32" (float32 storage, TF32 matmuls on GPUs
    that have them) or "bf16" (bfloat16 denoiser compute, float32 params, optimiser and sampler
    arithmetic). ``num_train_steps`` is the length of the cosine learning-rate decay (to 0).

    Optimiser as SynthER's: gradients clipped to global norm ``grad_clip``, then AdamW with
    ``adam_betas``; ``weight_decay`` applies to dense kernels only (not biases, norms or the
    Fourier frequencies). The EMA follows ``ema_pytorch`` as SynthER uses it (see
    :func:`ema_decay_at`): every ``ema_every`` steps, a copy of the weights until ``ema_after``
    steps, then decay min(``ema_decay``, 1 - (1 + n)^-``ema_power``) n steps after.
    """

    dim: int
    obs_dim: int | None = None
    action_dim: int | None = None
    width: int = 1024
    num_blocks: int = 6
    embed_dim: int = 128
    fourier_features: int = 16
    layer_norm: bool = False
    precision: str = "fp32"
    sigma_data: float = 1.0
    p_mean: float = -1.2
    p_std: float = 1.2
    learning_rate: float = 3e-4
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.99)
    num_train_steps: int = 100_000
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    ema_every: int = 10
    ema_after: int = 100
    ema_power: float = 2 / 3
    sampler: edm.SamplerConfig = edm.SamplerConfig()

    def __post_init__(self):
        if self.dim < 1:
            raise ValueError(f"Config.dim must be positive, got {self.dim}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"Config.precision must be one of {list(PRECISIONS)}, got {self.precision!r}"
            )
        if (self.obs_dim is None) != (self.action_dim is None):
            raise ValueError("Config.obs_dim and Config.action_dim must be given together")
        if self.obs_dim is not None and self.dim != flat_dim(self.obs_dim, self.action_dim):
            raise ValueError(
                f"Config.dim={self.dim} does not match obs_dim={self.obs_dim}, "
                f"action_dim={self.action_dim} (expected {flat_dim(self.obs_dim, self.action_dim)})"
            )
        if self.num_train_steps < 1:
            raise ValueError(f"Config.num_train_steps must be positive, got {self.num_train_steps}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"Config.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.ema_every < 1 or self.ema_after < 0 or self.ema_power <= 0:
            raise ValueError(
                "Config needs ema_every >= 1, ema_after >= 0 and ema_power > 0, got "
                f"{self.ema_every}, {self.ema_after}, {self.ema_power}"
            )

    @classmethod
    def for_transitions(cls, obs_dim: int, action_dim: int, **kwargs) -> Config:
        """A config for flat transition vectors of the given observation and action sizes."""
        return cls(
            dim=flat_dim(obs_dim, action_dim), obs_dim=obs_dim, action_dim=action_dim, **kwargs
        )

    @property
    def network(self) -> ResidualDenoiser:
        return ResidualDenoiser(
            width=self.width,
            num_blocks=self.num_blocks,
            embed_dim=self.embed_dim,
            fourier_features=self.fourier_features,
            layer_norm=self.layer_norm,
            dtype=PRECISIONS[self.precision][0],
        )


@flax.struct.dataclass
class State:
    """Denoiser params, their EMA (used for sampling), optimiser state, step, PRNG key, and the
    normaliser between raw and model space. ``config`` is static (part of the tree structure)."""

    params: Any
    ema_params: Any
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array
    normalizer: Normalizer
    config: Config = flax.struct.field(pytree_node=False)


def flat_dim(obs_dim: int, action_dim: int) -> int:
    """Length of a flat transition [obs, action, reward, next_obs, terminal]."""
    return 2 * obs_dim + action_dim + 2


def default_batch_size(num_rows: int) -> int:
    """SynthER's training batch for a dataset of ``num_rows``: 1024 from 800k rows, else 256."""
    return 1024 if num_rows >= 800_000 else 256


def _decayed(params: Any) -> Any:
    """True on dense kernels, the only leaves SynthER's AdamW decays."""
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)


def optimizer(config: Config) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW with a cosine learning rate to 0 (see ``Config``)."""
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.num_train_steps)
    b1, b2 = config.adam_betas
    adamw = optax.adamw(schedule, b1, b2, weight_decay=config.weight_decay, mask=_decayed)
    return optax.chain(optax.clip_by_global_norm(config.grad_clip), adamw)


def ema_decay_at(config: Config, step: jax.Array) -> jax.Array:
    """Decay of the EMA update after optimiser step ``step`` (0-based), ``ema_pytorch``'s
    schedule: on steps divisible by ``ema_every``, 0 (copy the weights) while ``step <=
    ema_after``, then min(ema_decay, 1 - (1 + step - ema_after)^-ema_power); 1 (keep) otherwise.
    """
    since = jnp.maximum(step - config.ema_after, 0).astype(jnp.float32)
    ramp = jnp.minimum(config.ema_decay, 1.0 - (1.0 + since) ** -config.ema_power)
    decay = jnp.where(step <= config.ema_after, 0.0, ramp)
    return jnp.where(step % config.ema_every == 0, decay, 1.0)


def update_ema(config: Config, step: jax.Array, ema_params: Any, params: Any) -> Any:
    """``ema_params`` moved towards ``params`` with :func:`ema_decay_at` of ``step``."""
    return optax.incremental_update(params, ema_params, 1.0 - ema_decay_at(config, step))


@functools.partial(jax.jit, static_argnames=("config",))
def init(key: jax.Array, config: Config, normalizer: Normalizer | None = None) -> State:
    """Fresh denoiser and optimiser; ``normalizer`` defaults to the identity."""
    k_params, k_state = jax.random.split(key)
    dummy = jnp.zeros((1, config.dim), jnp.float32)
    params = config.network.init(k_params, dummy, jnp.zeros((1,), jnp.float32))["params"]
    if normalizer is None:
        normalizer = Normalizer(mean=jnp.zeros(config.dim), std=jnp.ones(config.dim))
    return State(
        params=params,
        ema_params=params,
        opt_state=optimizer(config).init(params),
        step=jnp.zeros((), jnp.int32),
        key=k_state,
        normalizer=normalizer,
        config=config,
    )


def denoise(params: Any, config: Config, x: jax.Array, sigma: jax.Array) -> jax.Array:
    """The preconditioned denoiser D(x; sigma) = c_skip x + c_out F(c_in x, ln(sigma) / 4).

    ``x``: (n, dim) in model space; ``sigma``: a scalar or one level per row, shape (n,).
    """
    chex.assert_shape(x, (None, config.dim))
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    c_skip, c_out, c_in, c_noise = edm.preconditioning(sigma[:, None], config.sigma_data)
    with jax.default_matmul_precision(PRECISIONS[config.precision][1]):
        f = config.network.apply({"params": params}, c_in * x, c_noise[:, 0])
    return c_skip * x + c_out * f


def denoiser(state: State) -> edm.DenoiseFn:
    """``(x, sigma) -> D(x; sigma)`` with the EMA params, in model space, for ``edm`` samplers."""
    return functools.partial(denoise, state.ema_params, state.config)


def denoising_loss(
    params: Any, config: Config, x: jax.Array, sigma: jax.Array, noise: jax.Array
) -> jax.Array:
    """Per-example EDM loss lambda(sigma) * mean over dims of (D(x + sigma noise; sigma) - x)^2.

    ``x``, ``noise``: (n, dim) in model space; ``sigma``: (n,). Returns shape (n,).
    """
    denoised = denoise(params, config, x + sigma[:, None] * noise, sigma)
    return edm.loss_weight(sigma, config.sigma_data) * jnp.mean((denoised - x) ** 2, axis=-1)


def train_step(state: State, batch: jax.Array) -> tuple[State, dict[str, jax.Array]]:
    """One AdamW step on a raw (n, dim) batch; updates the EMA. Metrics: loss, grad_norm."""
    config = state.config
    chex.assert_shape(batch, (None, config.dim))
    key, k_sigma, k_noise = jax.random.split(state.key, 3)
    x = normalize.apply(state.normalizer, batch)
    sigma = edm.sample_sigma(k_sigma, x.shape[:1], config.p_mean, config.p_std)
    noise = jax.random.normal(k_noise, x.shape, x.dtype)
    loss_fn = lambda p: jnp.mean(denoising_loss(p, config, x, sigma, noise))
    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = optimizer(config).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = update_ema(config, state.step, state.ema_params, params)
    new_state = state.replace(
        params=params, ema_params=ema_params, opt_state=opt_state, step=state.step + 1, key=key
    )
    return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


@functools.partial(jax.jit, static_argnames=("num_steps", "batch_size"))
def train(
    state: State,
    data: jax.Array,
    num_steps: int,
    batch_size: int = 256,
    num_valid: jax.Array | int | None = None,
) -> tuple[State, dict[str, jax.Array]]:
    """``num_steps`` train steps as one ``lax.scan``, each on rows of raw ``data`` (N, dim) drawn
    uniformly with replacement from the first ``num_valid`` rows (default all; may be traced, e.g.
    a replay buffer's size). Returns the final state and per-step metrics of shape (num_steps,).
    """
    chex.assert_shape(data, (None, state.config.dim))
    high = data.shape[0] if num_valid is None else num_valid

    def body(state, _):
        key, k_idx = jax.random.split(state.key)
        idx = jax.random.randint(k_idx, (batch_size,), 0, high)
        return train_step(state.replace(key=key), data[idx])

    return jax.lax.scan(body, state, length=num_steps)


def sample_normalized(
    state: State,
    key: jax.Array,
    num_samples: int,
    chunk_size: int = 16384,
    sampler: edm.SamplerConfig | None = None,
    *,
    guidance: edm.GuidanceFn | None = None,
    inpaint: edm.Inpaint | None = None,
) -> jax.Array:
    """``num_samples`` vectors in model (normalised) space from the EMA model, (num_samples, dim).

    Runs the Heun sampler (``sampler``, default ``state.config.sampler``) over chunks of
    ``chunk_size`` rows one after another (``lax.map``), so memory is bounded by one chunk.
    ``guidance`` and ``inpaint`` (in model space; per-row values and masks are split into the
    chunks with their rows) are passed to ``edm.heun_sample``. The result depends on the key and
    on the chunk size. Not jitted itself (it takes a function); jit the caller.
    """
    config = state.config
    sampler = config.sampler if sampler is None else sampler
    chunk = min(chunk_size, num_samples)
    num_chunks = -(-num_samples // chunk)
    keys = jax.random.split(key, num_chunks)

    def chunked(a):  # (num_samples, dim) rows -> (num_chunks, chunk, dim), zero-padded
        a = jnp.broadcast_to(a, (num_samples, config.dim))
        a = jnp.pad(a, ((0, num_chunks * chunk - num_samples), (0, 0)))
        return a.reshape(num_chunks, chunk, config.dim)

    if inpaint is None:
        inpaint_chunks = None
    else:
        inpaint_chunks = inpaint.replace(values=chunked(inpaint.values), mask=chunked(inpaint.mask))

    def one_chunk(args):
        k, known = args
        shape = (chunk, config.dim)
        return edm.heun_sample(denoiser(state), k, shape, sampler, guidance=guidance, inpaint=known)

    z = jax.lax.map(one_chunk, (keys, inpaint_chunks))
    return z.reshape(-1, config.dim)[:num_samples]


@functools.partial(jax.jit, static_argnames=("num_samples", "chunk_size", "sampler"))
def sample(
    state: State,
    key: jax.Array,
    num_samples: int,
    chunk_size: int = 16384,
    sampler: edm.SamplerConfig | None = None,
) -> jax.Array:
    """``num_samples`` raw (unnormalised) vectors from the EMA model, shape (num_samples, dim);
    see ``sample_normalized``."""
    z = sample_normalized(state, key, num_samples, chunk_size, sampler)
    return normalize.invert(state.normalizer, z)


def block_slices(obs_dim: int, action_dim: int) -> dict[str, slice]:
    """Where each field sits in a flat transition [obs, action, reward, next_obs, terminal]."""
    a, r = obs_dim, obs_dim + action_dim
    return {
        "obs": slice(0, a),
        "action": slice(a, r),
        "reward": slice(r, r + 1),
        "next_obs": slice(r + 1, r + 1 + obs_dim),
        "terminal": slice(r + 1 + obs_dim, r + 2 + obs_dim),
    }


def block_mask(obs_dim: int, action_dim: int, *fields: str) -> jax.Array:
    """(flat_dim,) booleans, True on the dims of the named fields (see ``block_slices``)."""
    slices = block_slices(obs_dim, action_dim)
    unknown = set(fields) - set(slices)
    if unknown:
        raise ValueError(
            f"block_mask: unknown fields {sorted(unknown)}; choose from {list(slices)}"
        )
    mask = jnp.zeros(flat_dim(obs_dim, action_dim), bool)
    for name in fields:
        mask = mask.at[slices[name]].set(True)
    return mask


def flatten(transitions: Transition) -> jax.Array:
    """(N, 2 obs_dim + action_dim + 2) rows [obs, action, reward, next_obs, terminal]."""
    t = transitions
    chex.assert_rank([t.obs, t.action, t.reward, t.next_obs, t.terminal], [2, 2, 1, 2, 1])
    parts = [t.obs, t.action, t.reward[:, None], t.next_obs, t.terminal[:, None]]
    return jnp.concatenate([jnp.asarray(p, jnp.float32) for p in parts], axis=-1)


def unflatten(x: jax.Array, obs_dim: int, action_dim: int) -> Transition:
    """Split flat rows back into a Transition; terminal = (x_terminal > 0.5); truncated and
    mc_return are zero (unknown for generated data)."""
    if x.shape[-1] != flat_dim(obs_dim, action_dim):
        raise ValueError(
            f"unflatten: last dim {x.shape[-1]} != 2 * obs_dim + action_dim + 2 = "
            f"{flat_dim(obs_dim, action_dim)}"
        )
    a, r = obs_dim, obs_dim + action_dim
    zero = jnp.zeros(x.shape[:-1], jnp.float32)
    return Transition(
        obs=x[..., :a],
        action=x[..., a:r],
        reward=x[..., r],
        next_obs=x[..., r + 1 : r + 1 + obs_dim],
        terminal=(x[..., -1] > 0.5).astype(jnp.float32),
        truncated=zero,
        mc_return=zero,
    )


def fit_normalizer(flat: jax.Array) -> Normalizer:
    """Per-dim z-score of flat transitions, leaving the terminal (last) dim raw."""
    return normalize.fit(flat, skip_dims=(flat.shape[-1] - 1,))


def fit_transitions(
    key: jax.Array,
    transitions: Transition,
    config: Config,
    num_steps: int | None = None,
    batch_size: int | None = None,
) -> tuple[State, dict[str, jax.Array]]:
    """Fit the normaliser and a fresh model on ``transitions`` for ``num_steps`` (default
    ``config.num_train_steps``) with batches of ``batch_size`` (default
    :func:`default_batch_size`). Returns the state and per-step metrics.

    Runs on the host (checks the data for NaNs); vmappable over ``key`` with fixed transitions.
    """
    if (config.obs_dim, config.action_dim) != (transitions.obs_dim, transitions.action_dim):
        raise ValueError(
            f"transitions have obs_dim={transitions.obs_dim}, action_dim={transitions.action_dim} "
            f"but config has {config.obs_dim}, {config.action_dim}; "
            "build it with Config.for_transitions"
        )
    flat = flatten(transitions)
    if not bool(jnp.isfinite(flat).all()):
        raise ValueError("fit_transitions: transitions contain NaN or inf values")
    state = init(key, config, fit_normalizer(flat))
    batch_size = batch_size or default_batch_size(len(transitions))
    return train(state, flat, num_steps or config.num_train_steps, batch_size)


@functools.partial(jax.jit, static_argnames=("num_samples", "chunk_size", "sampler"))
def generate(
    state: State,
    key: jax.Array,
    num_samples: int,
    chunk_size: int = 16384,
    sampler: edm.SamplerConfig | None = None,
) -> Transition:
    """``num_samples`` synthetic transitions (see ``sample``); needs a transition-layout config."""
    config = state.config
    if config.obs_dim is None:
        raise ValueError("generate needs a Config built with Config.for_transitions")
    flat = sample(state, key, num_samples, chunk_size, sampler)
    return unflatten(flat, config.obs_dim, config.action_dim)
