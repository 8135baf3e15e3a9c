"""Networks: MLPs, stacked ensembles, policy heads and the SynthER residual denoiser (flax.linen).

Ensembles keep one stacked parameter tree with a leading member axis, so every layer is a single
batched matmul over members rather than N separate ones.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable] = {
    "relu": nn.relu,
    "silu": nn.silu,
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
    "elu": nn.elu,
}

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
AFFINE_LOG_STD_MIN = -20.0  # TanhGaussianPolicy's learned-affine log-std (Cal-QL's code)
INITIALIZERS = ("lecun", "orthogonal", "orthogonal-small-out", "torch")


def _householder_q(a: jax.Array) -> jax.Array:
    """Q of the QR decomposition of a tall (m, n) matrix with R's diagonal made positive, by
    Householder reflections in plain jnp (matmuls only, no LAPACK call)."""
    m, n = a.shape
    rows = jnp.arange(m)

    def reflect(k, carry):
        a, vs, signs = carry
        x = jnp.where(rows >= k, a[:, k], 0.0)
        sign = jnp.where(x[k] >= 0, 1.0, -1.0)
        v = x.at[k].add(sign * jnp.linalg.norm(x))
        v = v / jnp.linalg.norm(v)
        a = a - 2.0 * jnp.outer(v, v @ a)
        return a, vs.at[:, k].set(v), signs.at[k].set(-sign)  # R[k, k] = -sign * |x|

    init = (a, jnp.zeros((m, n), a.dtype), jnp.zeros((n,), a.dtype))
    _, vs, signs = jax.lax.fori_loop(0, n, reflect, init)

    def apply(j, q):  # q <- H_k q for k = n-1 .. 0, starting from the first n columns of I
        v = vs[:, n - 1 - j]
        return q - 2.0 * jnp.outer(v, v @ q)

    q = jax.lax.fori_loop(0, n, apply, jnp.eye(m, n, dtype=a.dtype))
    return q * signs


def orthogonal(key: jax.Array, shape, dtype=jnp.float32, gain: float = 1.0) -> jax.Array:
    """A (uniformly random) orthogonal (fan_in, fan_out) matrix times ``gain``: the same values as
    ``jax.nn.initializers.orthogonal(gain)``, computed without LAPACK, whose concurrent CPU calls
    deadlock under jax 0.10 (two vmapped 256 x 256 QRs in one program never finish)."""
    rows, cols = math.prod(shape[:-1]), shape[-1]
    tall = (max(rows, cols), min(rows, cols))
    q = _householder_q(jax.random.normal(key, tall, dtype))
    return gain * (q if rows >= cols else q.T).reshape(shape)


def dense_init(name: str, fan_in: int, output: bool = False) -> tuple[Callable, Callable]:
    """(kernel_init, bias_init) of a Dense layer with ``fan_in`` inputs (``output``: a network's
    last layer):

    - ``lecun``: LeCun-normal weights, zero bias (flax's default);
    - ``orthogonal``: orthogonal weights with gain sqrt 2, zero bias (the IQL / jaxrl reference
      code's ``default_init``, every layer);
    - ``orthogonal-small-out``: the same on hidden layers, gain 1e-2 on the output layer, so
      Q-values and policy means start near 0 (Cal-QL's code, JaxCQL's ``orthogonal_init``);
    - ``torch``: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) weights and bias (PyTorch's ``nn.Linear``
      default, so d3rlpy's and most PyTorch references').
    """
    check_initializer(name)
    if name == "lecun":
        return nn.initializers.lecun_normal(), nn.initializers.zeros
    if name == "orthogonal" or name == "orthogonal-small-out":
        gain = 1e-2 if output and name == "orthogonal-small-out" else math.sqrt(2.0)
        return functools.partial(orthogonal, gain=gain), nn.initializers.zeros
    if name == "torch":
        bound = 1.0 / math.sqrt(fan_in)
        uniform = lambda key, shape, dtype=jnp.float32: jax.random.uniform(  # noqa: E731
            key, shape, dtype, -bound, bound
        )
        return uniform, uniform


def check_initializer(name: str) -> None:
    """Raise a ValueError naming the initializer unless ``name`` is one of INITIALIZERS."""
    if name not in INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; choose from {INITIALIZERS}")


def activation_fn(name: str) -> Callable:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """Dense layers of widths ``hidden`` (each optionally LayerNorm-ed), then a linear ``out``;
    every layer initialised by ``initializer`` (:func:`dense_init`)."""

    hidden: Sequence[int]
    out: int
    activation: str = "relu"
    layer_norm: bool = False
    initializer: str = "lecun"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = activation_fn(self.activation)
        for width in self.hidden:
            x = nn.Dense(width, **self._inits(x))(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return nn.Dense(self.out, **self._inits(x, output=True))(x)

    def _inits(self, x: jax.Array, output: bool = False) -> dict:
        kernel_init, bias_init = dense_init(self.initializer, x.shape[-1], output)
        return {"kernel_init": kernel_init, "bias_init": bias_init}


def ensemble(module: type[nn.Module], size: int, shared_input: bool = True) -> type[nn.Module]:
    """An ensemble of ``size`` independently initialised copies of ``module``.

    Parameters gain a leading member axis and the forward pass is vmapped over it (one batched
    matmul per layer). With ``shared_input`` every member sees the same input and outputs are
    stacked as (size, ...); otherwise inputs carry the member axis first.
    """
    in_axes = None if shared_input else 0
    return nn.vmap(
        module,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=in_axes,
        out_axes=0,
        axis_size=size,
    )


class QEnsemble(nn.Module):
    """``num_members`` Q-functions Q(s, a); returns shape (num_members, *batch)."""

    hidden: Sequence[int] = (256, 256)
    num_members: int = 2
    layer_norm: bool = False
    activation: str = "relu"
    initializer: str = "lecun"

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        members = ensemble(MLP, self.num_members)(
            hidden=self.hidden,
            out=1,
            activation=self.activation,
            layer_norm=self.layer_norm,
            initializer=self.initializer,
        )
        return members(jnp.concatenate([obs, action], axis=-1))[..., 0]


class ValueNet(nn.Module):
    """State-value V(s); returns shape batch."""

    hidden: Sequence[int] = (256, 256)
    layer_norm: bool = False
    activation: str = "relu"
    initializer: str = "lecun"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden, 1, self.activation, self.layer_norm, self.initializer)(obs)[..., 0]


class TanhGaussianPolicy(nn.Module):
    """Gaussian in pre-tanh space: returns (mean, log_std).

    With ``log_std_offset`` None the network's log-std output is clipped to [-5, 2] (SAC's);
    with a float it is ``m * output + b`` with learned scalars m (init 1) and b (init
    ``log_std_offset``), clipped to [-20, 2] (Cal-QL's code, whose offset starts at -1).
    """

    action_dim: int
    hidden: Sequence[int] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = False
    initializer: str = "lecun"
    log_std_offset: float | None = None

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mlp = MLP(
            self.hidden, 2 * self.action_dim, self.activation, self.layer_norm, self.initializer
        )
        mean, log_std = jnp.split(mlp(obs), 2, axis=-1)
        if self.log_std_offset is None:
            return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)
        scale = self.param("log_std_multiplier", nn.initializers.ones, ())
        offset = self.param("log_std_offset", nn.initializers.constant(self.log_std_offset), ())
        return mean, jnp.clip(scale * log_std + offset, AFFINE_LOG_STD_MIN, LOG_STD_MAX)


def _gaussian_log_prob(u: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    z = (u - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def _log_tanh_jacobian(u: jax.Array) -> jax.Array:
    """sum log(1 - tanh(u)^2), computed stably as 2 * (log 2 - u - softplus(-2u))."""
    return jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)


def tanh_gaussian_sample(
    key: jax.Array, mean: jax.Array, log_std: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Reparameterised sample a = tanh(mean + std * eps) and its log-density log pi(a|s)."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
    return jnp.tanh(u), _gaussian_log_prob(u, mean, log_std) - _log_tanh_jacobian(u)


def tanh_gaussian_log_prob(
    mean: jax.Array, log_std: jax.Array, action: jax.Array, eps: float = 1e-6
) -> jax.Array:
    """log pi(a|s) of given actions in (-1, 1) (clipped to ``1 - eps`` before atanh)."""
    u = jnp.arctanh(jnp.clip(action, -1.0 + eps, 1.0 - eps))
    return _gaussian_log_prob(u, mean, log_std) - _log_tanh_jacobian(u)


class GaussianPolicy(nn.Module):
    """Gaussian with mean tanh(MLP(s)) and a learned state-independent log-std (IQL's policy).

    Returns (mean, log_std); log_std is one parameter per action dim (init ``log_std_init``),
    clipped to [-5, 2] and broadcast to the mean's shape. The density is of the raw action (no
    squashing).
    """

    action_dim: int
    hidden: Sequence[int] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = False
    log_std_init: float = 0.0
    initializer: str = "lecun"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mlp = MLP(self.hidden, self.action_dim, self.activation, self.layer_norm, self.initializer)
        mean = jnp.tanh(mlp(obs))
        log_std_start = nn.initializers.constant(self.log_std_init)
        log_std = self.param("log_std", log_std_start, (self.action_dim,))
        return mean, jnp.broadcast_to(jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX), mean.shape)


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """log N(a; mean, exp(log_std)^2), summed over the action dims; finite for any action."""
    return _gaussian_log_prob(action, mean, log_std)


class DeterministicPolicy(nn.Module):
    """a = tanh(MLP(s)), for TD3 / TD3+BC."""

    action_dim: int
    hidden: Sequence[int] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = False
    initializer: str = "lecun"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        mlp = MLP(self.hidden, self.action_dim, self.activation, self.layer_norm, self.initializer)
        return jnp.tanh(mlp(obs))


class RandomFourierEmbedding(nn.Module):
    """[t, sin(2 pi w t), cos(2 pi w t)] with ``num_features / 2`` frequencies w ~ N(0, 1).

    w is drawn from the init key (param ``frequencies``) and never trained: gradients stop
    here, as in SynthER, whose frequencies are a ``requires_grad=False`` parameter.
    """

    num_features: int = 16

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        shape = (self.num_features // 2,)
        w = jax.lax.stop_gradient(self.param("frequencies", nn.initializers.normal(1.0), shape))
        angles = 2 * math.pi * t[..., None] * w
        return jnp.concatenate([t[..., None], jnp.sin(angles), jnp.cos(angles)], axis=-1)


class ResidualDenoiser(nn.Module):
    """SynthER's denoiser: residual MLP over a flat transition vector, conditioned on noise.

    ``h = Dense(width)(Dense(embed_dim)(x) + noise_embedding(c_noise))``, then ``num_blocks``
    blocks of ``h + Dense(act(LN?(h)))``, then ``Dense(dim)(act(h))``. The noise embedding is a
    random-Fourier embedding (16 features) through a 2-layer SiLU MLP of width ``embed_dim``
    (SynthER: 128 offline, 256 online).
    """

    width: int = 1024
    num_blocks: int = 6
    embed_dim: int = 128
    fourier_features: int = 16
    layer_norm: bool = False
    activation: str = "relu"
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, c_noise: jax.Array) -> jax.Array:
        act = activation_fn(self.activation)
        dense = lambda n: nn.Dense(n, dtype=self.dtype)
        emb = RandomFourierEmbedding(self.fourier_features)(c_noise)
        emb = dense(self.embed_dim)(nn.silu(dense(self.embed_dim)(emb)))
        h = dense(self.width)(dense(self.embed_dim)(x) + emb)
        for _ in range(self.num_blocks):
            y = nn.LayerNorm(dtype=self.dtype)(h) if self.layer_norm else h
            h = h + dense(self.width)(act(y))
        return dense(x.shape[-1])(act(h)).astype(x.dtype)
