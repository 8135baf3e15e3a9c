"""Probabilistic dynamics ensemble: the MBPO / MOPO world model for model-based augmentation.

Each of ``num_members`` Gaussian MLPs (SiLU, hidden (200,) * 4) maps normalised [obs, action] to
the mean and log-variance of the normalised target [next_obs - obs, reward], plus one terminal
logit (Bernoulli). The members are one stacked parameter tree with a leading member axis, run
through ``jax.vmap`` so each layer is a single batched matmul.

Terminals (``Config.termination``): ``"env"`` (default) applies the task's known termination
function to the sampled next observation, as MBPO, MOPO and OfflineRL-Kit do; the caller passes it
as ``terminated`` (e.g. ``rlgen.envs.make("hopper").terminated``). ``"learned"`` uses the terminal
logit instead, trained with binary cross-entropy (with ``"env"`` it is not trained).

Log-variances are soft-clamped between learned per-member bounds (MBPO):
``logvar = max - softplus(max - raw)``, then ``logvar = min + softplus(logvar - min)``, and the
loss adds ``logvar_bound_weight * (sum(max) - sum(min))``.

Spaces: inputs and targets are z-scored with normalisers fitted on the training rows, so the
NLL, the holdout loss and the log-variance bounds live in normalised target space. Every public
function takes and returns raw values (stds are scaled back by the target normaliser's std).

Training (``fit``): a random holdout split; each member trains on its own bootstrap resample of
the training rows (or all of them, ``bootstrap=False``), shuffled independently every epoch;
Adam on MBPO's loss (see ``Config``). After each epoch the holdout loss of every member (MSE of
the normalised mean, as in MBPO) is measured; a member whose loss fell by more than
``min_improvement`` (relative) snapshots its params. Training stops when no member improved for
``patience`` epochs (a ``lax.while_loop``, so ``fit`` vmaps over seeds) and each member keeps its
snapshot. The ``num_elites`` members with the lowest holdout loss are the elites that
``predict``, ``sample`` and ``rollout`` use.

Typical use::

    config = Config(obs_dim, action_dim)
    model, metrics = fit(key, config, dataset)
    done = rlgen.envs.make("hopper").terminated  # termination of next observations
    batch = replace_next_states(model, key, batch, 0.5, terminated=done)  # augmentation mode (i)
    rows, valid = rollout(model, key, policy_fn, batch.obs, 5, 1.0, done)  # (ii): MOPO rollouts
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlgen import nets
from rlgen.data import normalize
from rlgen.data.normalize import Normalizer
from rlgen.data.transition import Transition

MAX_LOGVAR_INIT, MIN_LOGVAR_INIT = 0.5, -10.0  # MBPO's initial bounds (normalised space)
PRECISIONS = ("highest", "high", "default", "float32", "tensorfloat32", "bfloat16")
TERMINATIONS = ("env", "learned")
MBPO_WEIGHT_DECAYS = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)  # input layer to output layer


@dataclasses.dataclass(frozen=True)
class Config:
    """Static ensemble settings: sizes, architecture, loss, optimiser, early stopping, terminals.

    Loss (MBPO's: jannerm/mbpo ``BNN``, OfflineRL-Kit ``EnsembleDynamics.learn``), minimised
    with plain Adam: summed over members, the mean over rows and target dims of
    ``(mean - y)^2 / var + log var`` (twice ``gaussian_nll``), plus ``logvar_bound_weight *
    (sum(max_logvar) - sum(min_logvar))``, plus the per-layer L2 term ``sum_l weight_decays[l] *
    0.5 * sum(W_l^2)`` over every member's kernels (not biases), plus, with
    ``termination="learned"``, ``terminal_weight`` times the terminal head's BCE.
    ``weight_decays`` has one entry per dense layer, input layer to output; None means MBPO's
    (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4) for its four hidden layers, and for other depths the
    same first and last entries with the hidden-to-hidden layers taking MBPO's middle ones in
    order (7.5e-5 past the third). ``termination`` is ``"env"`` (a termination function of the
    next observation, passed to ``sample`` / ``rollout`` / ``replace_next_states``) or
    ``"learned"`` (the terminal head). ``matmul_precision`` is passed to
    ``jax.default_matmul_precision`` around every network call. ``batch_size`` is clamped to the
    number of training rows. ``min_improvement`` is the relative holdout-loss drop that counts as
    an improvement; ``patience`` the epochs without one before stopping. The holdout has
    ``min(round(holdout_fraction * N), max_holdout)`` rows.
    """

    obs_dim: int
    action_dim: int
    hidden: tuple[int, ...] = (200, 200, 200, 200)
    activation: str = "silu"
    num_members: int = 7
    num_elites: int = 5
    learning_rate: float = 1e-3
    weight_decays: tuple[float, ...] | None = None
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 5
    min_improvement: float = 0.01
    holdout_fraction: float = 0.1
    max_holdout: int = 5000
    bootstrap: bool = True
    logvar_bound_weight: float = 0.01
    terminal_weight: float = 1.0
    termination: str = "env"
    matmul_precision: str = "highest"

    def __post_init__(self):
        counts = ("obs_dim", "action_dim", "num_members", "num_elites", "batch_size")
        for name in (*counts, "max_epochs", "patience", "max_holdout"):
            if getattr(self, name) < 1:
                raise ValueError(f"Config.{name} must be >= 1, got {getattr(self, name)}")
        weights = ("min_improvement", "logvar_bound_weight", "terminal_weight")
        for name in weights:
            if getattr(self, name) < 0:
                raise ValueError(f"Config.{name} must be >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"Config.learning_rate must be > 0, got {self.learning_rate}")
        if self.num_elites > self.num_members:
            raise ValueError(
                f"Config.num_elites={self.num_elites} exceeds num_members={self.num_members}"
            )
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"Config.hidden must be non-empty positive widths, got {self.hidden}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(
                f"Config.holdout_fraction must be in (0, 1), got {self.holdout_fraction}"
            )
        if self.weight_decays is not None and (
            len(self.weight_decays) != len(self.hidden) + 1 or min(self.weight_decays) < 0
        ):
            raise ValueError(
                f"Config.weight_decays must be {len(self.hidden) + 1} values >= 0 (one per "
                f"layer), got {self.weight_decays}"
            )
        if self.termination not in TERMINATIONS:
            raise ValueError(
                f"Config.termination must be in {TERMINATIONS}, got {self.termination!r}"
            )
        if self.matmul_precision not in PRECISIONS:
            raise ValueError(
                f"Config.matmul_precision must be in {PRECISIONS}, got {self.matmul_precision!r}"
            )
        nets.activation_fn(self.activation)

    @property
    def target_dim(self) -> int:
        """Size of the Gaussian target [delta_obs, reward]."""
        return self.obs_dim + 1

    @property
    def layer_weight_decays(self) -> tuple[float, ...]:
        """The L2 weight of each dense layer's kernel, input layer to output (see above)."""
        if self.weight_decays is not None:
            return self.weight_decays
        middle = MBPO_WEIGHT_DECAYS[1:-1]
        middle += (middle[-1],) * max(len(self.hidden) - 1 - len(middle), 0)
        return (MBPO_WEIGHT_DECAYS[0], *middle[: len(self.hidden) - 1], MBPO_WEIGHT_DECAYS[-1])

    @property
    def network(self) -> GaussianMember:
        return GaussianMember(self.hidden, self.target_dim, self.activation)


class GaussianMember(nn.Module):
    """One member: x -> (mean, soft-clamped logvar, terminal logit), all in normalised space."""

    hidden: Sequence[int]
    out_dim: int
    activation: str = "silu"

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        d = self.out_dim
        h = nets.MLP(self.hidden, 2 * d + 1, self.activation)(x)
        max_logvar = self.param("max_logvar", nn.initializers.constant(MAX_LOGVAR_INIT), (d,))
        min_logvar = self.param("min_logvar", nn.initializers.constant(MIN_LOGVAR_INIT), (d,))
        logvar = max_logvar - jax.nn.softplus(max_logvar - h[..., d : 2 * d])
        logvar = min_logvar + jax.nn.softplus(logvar - min_logvar)
        return h[..., :d], logvar, h[..., 2 * d]


@flax.struct.dataclass
class State:
    """A fitted ensemble. ``params`` carry a leading member axis (each member's kept snapshot);
    ``opt_state`` is the Adam state after the last epoch; ``elites`` (num_elites,) are member
    indices sorted by ``holdout_loss`` (num_members,), the holdout MSE of each kept snapshot.
    ``config`` is static (part of the tree structure)."""

    params: Any
    opt_state: optax.OptState
    input_norm: Normalizer
    target_norm: Normalizer
    elites: jax.Array
    holdout_loss: jax.Array
    config: Config = flax.struct.field(pytree_node=False)


def gaussian_nll(mean: jax.Array, logvar: jax.Array, target: jax.Array) -> jax.Array:
    """Diagonal-Gaussian negative log-likelihood averaged over the last axis:

    ``mean_d 0.5 * (logvar_d + (target_d - mean_d)^2 / exp(logvar_d))``,

    without the constant ``0.5 * log(2 pi)`` per dim. Returns the leading (batch) shape.
    """
    return jnp.mean(0.5 * (logvar + (target - mean) ** 2 * jnp.exp(-logvar)), axis=-1)


def _apply(config: Config, params, x: jax.Array, shared_input: bool):
    """All stacked members on ``x`` ((..., in) if shared, else (members, ..., in))."""
    apply = lambda p, xi: config.network.apply({"params": p}, xi)
    with jax.default_matmul_precision(config.matmul_precision):
        return jax.vmap(apply, in_axes=(0, None if shared_input else 0))(params, x)


def _inputs(norm: Normalizer, obs: jax.Array, action: jax.Array) -> jax.Array:
    return normalize.apply(norm, jnp.concatenate([obs, action], axis=-1))


def _targets(data: Transition) -> jax.Array:
    return jnp.concatenate([data.next_obs - data.obs, data.reward[..., None]], axis=-1)


def _weight_decay(config: Config, params) -> jax.Array:
    """MBPO's L2 term: ``sum_l decay_l * 0.5 * sum(W_l^2)`` over the stacked members' kernels."""
    layers = params["MLP_0"]
    return sum(
        decay * 0.5 * jnp.sum(jnp.square(layers[f"Dense_{i}"]["kernel"]))
        for i, decay in enumerate(config.layer_weight_decays)
    )


def _member_loss(config: Config, params, x, y, terminal):
    """The training loss of ``Config``'s docstring on one batch per member (x: (M, B, in))."""
    mean, logvar, logit = _apply(config, params, x, shared_input=False)
    nll = gaussian_nll(mean, logvar, y).mean(axis=-1)
    bce = optax.sigmoid_binary_cross_entropy(logit, terminal).mean(axis=-1)
    bound = params["max_logvar"].sum(axis=-1) - params["min_logvar"].sum(axis=-1)
    bce_weight = config.terminal_weight if config.termination == "learned" else 0.0
    loss = 2.0 * nll + bce_weight * bce + config.logvar_bound_weight * bound
    aux = {"nll": nll.mean(), "terminal_bce": bce.mean()}
    return loss.sum() + _weight_decay(config, params), aux


def _holdout_losses(config: Config, params, x, y):
    """Per-member holdout MSE of the mean and NLL, shape (members,), normalised space."""
    mean, logvar, _ = _apply(config, params, x, shared_input=True)
    return ((mean - y) ** 2).mean(axis=(-2, -1)), gaussian_nll(mean, logvar, y).mean(axis=-1)


def _epoch_batches(key: jax.Array, boot: jax.Array, batch: int) -> jax.Array:
    """Each member's rows in a fresh random order, wrapped to whole batches: (steps, M, batch)."""
    members, n = boot.shape
    steps = -(-n // batch)
    shuffle = jnp.argsort(jax.random.uniform(key, (members, n)), axis=1)
    order = jnp.take_along_axis(boot, shuffle, axis=1)
    order = jnp.concatenate([order, order[:, : steps * batch - n]], axis=1)
    return order.reshape(members, steps, batch).swapaxes(0, 1)


def _where_members(mask: jax.Array, new, old):
    """Per member (leading axis) choose ``new`` where ``mask`` else ``old``."""
    pick = lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
    return jax.tree.map(pick, new, old)


@functools.partial(jax.jit, static_argnames=("config",))
def _train(key, config: Config, train: Transition, holdout: Transition):
    """Normalisers, init, and the early-stopped epoch loop (see the module docstring)."""
    input_norm = normalize.fit(jnp.concatenate([train.obs, train.action], axis=-1))
    target_norm = normalize.fit(_targets(train))
    x = _inputs(input_norm, train.obs, train.action)
    y = normalize.apply(target_norm, _targets(train))
    x_hold = _inputs(input_norm, holdout.obs, holdout.action)
    y_hold = normalize.apply(target_norm, _targets(holdout))
    n, members, epochs = x.shape[0], config.num_members, config.max_epochs
    batch = min(config.batch_size, n)
    k_init, k_boot, k_loop = jax.random.split(key, 3)
    dummy = jnp.zeros((1, x.shape[-1]), jnp.float32)
    params = jax.vmap(lambda k: config.network.init(k, dummy)["params"])(
        jax.random.split(k_init, members)
    )
    boot = jnp.broadcast_to(jnp.arange(n), (members, n))
    if config.bootstrap:
        boot = jax.random.randint(k_boot, (members, n), 0, n)
    opt = optax.adam(config.learning_rate)

    def sgd_step(carry, idx):
        params, opt_state = carry
        grads, aux = jax.grad(
            lambda p: _member_loss(config, p, x[idx], y[idx], train.terminal[idx]), has_aux=True
        )(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), aux

    def epoch(c):
        key, k_epoch = jax.random.split(c["key"])
        order = _epoch_batches(k_epoch, boot, batch)
        (params, opt_state), aux = jax.lax.scan(sgd_step, (c["params"], c["opt_state"]), order)
        mse, nll = _holdout_losses(config, params, x_hold, y_hold)
        improved = mse < c["best_loss"] * (1.0 - config.min_improvement)
        row = {"train_nll": aux["nll"].mean(), "train_terminal_bce": aux["terminal_bce"].mean()}
        row |= {"holdout_mse": mse, "holdout_nll": nll}
        return {
            "params": params,
            "opt_state": opt_state,
            "best": _where_members(improved, params, c["best"]),
            "best_loss": jnp.where(improved, mse, c["best_loss"]),
            "since": jnp.where(improved.any(), 0, c["since"] + 1),
            "epoch": c["epoch"] + 1,
            "key": key,
            "log": jax.tree.map(lambda a, v: a.at[c["epoch"]].set(v), c["log"], row),
        }

    nan = lambda *shape: jnp.full((epochs, *shape), jnp.nan, jnp.float32)
    log = {"train_nll": nan(), "train_terminal_bce": nan()}
    log |= {"holdout_mse": nan(members), "holdout_nll": nan(members)}
    zero = jnp.zeros((), jnp.int32)
    start = {"params": params, "opt_state": opt.init(params), "best": params}
    start |= {"best_loss": jnp.full((members,), jnp.inf), "since": zero, "epoch": zero}
    start |= {"key": k_loop, "log": log}
    keep_going = lambda c: (c["epoch"] < epochs) & (c["since"] < config.patience)
    end = jax.lax.while_loop(keep_going, epoch, start)
    state = State(
        params=end["best"],
        opt_state=end["opt_state"],
        input_norm=input_norm,
        target_norm=target_norm,
        elites=jnp.argsort(end["best_loss"])[: config.num_elites].astype(jnp.int32),
        holdout_loss=end["best_loss"],
        config=config,
    )
    return state, {**end["log"], "num_epochs": end["epoch"]}


def _check_dims(config: Config, obs: jax.Array, action: jax.Array, where: str) -> None:
    if obs.shape[-1] != config.obs_dim or action.shape[-1] != config.action_dim:
        raise ValueError(
            f"{where}: obs/action last dims {obs.shape[-1]}/{action.shape[-1]} do not match "
            f"config obs_dim={config.obs_dim}, action_dim={config.action_dim}"
        )
    if obs.shape[:-1] != action.shape[:-1]:
        raise ValueError(f"{where}: obs batch shape {obs.shape[:-1]} != action {action.shape[:-1]}")


def _check_data(config: Config, data: Transition, name: str) -> None:
    """Shapes (N, ...) consistent with ``config``; no NaN/inf where the values are concrete."""
    if data.obs.ndim != 2 or data.obs.shape[0] < 1:
        raise ValueError(f"fit({name}): obs must be (N >= 1, obs_dim), got {data.obs.shape}")
    _check_dims(config, data.obs, data.action, f"fit({name})")
    n = data.obs.shape[0]
    for field in ("obs", "action", "next_obs", "reward", "terminal"):
        value = getattr(data, field)
        rank = 1 if field in ("reward", "terminal") else 2
        if value.ndim != rank or value.shape[0] != n:
            raise ValueError(f"fit({name}): {field} has shape {value.shape}, expected ({n}, ...)")
        if not isinstance(value, jax.core.Tracer) and not np.isfinite(value).all():
            raise ValueError(f"fit({name}): {field} contains NaN or inf")
    if data.next_obs.shape != data.obs.shape:
        raise ValueError(f"fit({name}): next_obs shape {data.next_obs.shape} != obs shape")


@functools.partial(jax.jit, static_argnames=("n_hold",))
def _split(key: jax.Array, data: Transition, n_hold: int) -> tuple[Transition, Transition]:
    """A random split into (training rows, ``n_hold`` holdout rows)."""
    perm = jax.random.permutation(key, data.obs.shape[0])
    take = lambda idx: jax.tree.map(lambda a: a[idx], data)
    return take(perm[n_hold:]), take(perm[:n_hold])


def fit(
    key: jax.Array, config: Config, data: Transition, holdout: Transition | None = None
) -> tuple[State, dict[str, jax.Array]]:
    """Fit a fresh ensemble on ``data`` (N rows) with holdout early stopping.

    The holdout is ``holdout`` if given, else a random ``min(round(holdout_fraction * N),
    max_holdout)`` rows of ``data`` (kept out of training). Returns the state and per-epoch
    metrics of length ``max_epochs`` (NaN after the last epoch run): ``train_nll``
    (``gaussian_nll``), ``train_terminal_bce`` (the head's, trained only with termination
    "learned"), ``holdout_mse`` and ``holdout_nll`` (per member), plus
    ``num_epochs``. Vmappable over ``key`` with fixed data.
    """
    _check_data(config, data, "data")
    if holdout is None:
        n = data.obs.shape[0]
        n_hold = min(round(config.holdout_fraction * n), config.max_holdout)
        if n_hold < 1 or n - n_hold < 1:
            raise ValueError(
                f"fit: {n} rows leave no holdout or no training rows with "
                f"holdout_fraction={config.holdout_fraction}"
            )
        key, k_split = jax.random.split(key)
        data, holdout = _split(k_split, data, n_hold)
    else:
        _check_data(config, holdout, "holdout")
    return _train(key, config, data, holdout)


@functools.partial(jax.jit, static_argnames=("elites_only",))
def member_predictions(
    state: State, obs: jax.Array, action: jax.Array, elites_only: bool = True
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Raw-space Gaussian of [delta_obs, reward] and terminal logit per member.

    Returns ``mean`` and ``std`` of shape (E, ..., obs_dim + 1) and ``logit`` (E, ...), where E
    is ``num_elites`` (in ``state.elites`` order) or, with ``elites_only=False``, all members.
    """
    config = state.config
    _check_dims(config, obs, action, "member_predictions")
    params = state.params
    if elites_only:
        params = jax.tree.map(lambda p: p[state.elites], params)
    mean, logvar, logit = _apply(config, params, _inputs(state.input_norm, obs, action), True)
    std = jnp.exp(0.5 * logvar) * state.target_norm.std
    return normalize.invert(state.target_norm, mean), std, logit


@jax.jit
def predict(state: State, obs: jax.Array, action: jax.Array):
    """Elite-averaged prediction: (next_obs, reward, the terminal head's probability), raw
    space."""
    mean, _, logit = member_predictions(state, obs, action)
    mean = mean.mean(axis=0)
    return obs + mean[..., :-1], mean[..., -1], jax.nn.sigmoid(logit).mean(axis=0)


def _mopo_uncertainty(std: jax.Array) -> jax.Array:
    """max over elites (axis 0) of the L2 norm over the last axis."""
    return jnp.linalg.norm(std, axis=-1).max(axis=0)


@jax.jit
def mopo_penalty(
    state: State, obs: jax.Array, action: jax.Array, reward: jax.Array, penalty_coef
) -> tuple[jax.Array, jax.Array]:
    """MOPO's penalised reward ``reward - penalty_coef * u(s, a)`` and ``u``, where

    ``u(s, a) = max_{e in elites} || sigma_e(s, a) ||_2``

    with sigma_e the raw-space predicted std of elite e over all target dims [delta_obs, reward].
    """
    _, std, _ = member_predictions(state, obs, action)
    u = _mopo_uncertainty(std)
    return reward - penalty_coef * u, u


Termination = Callable[[jax.Array], jax.Array]


def _check_termination(config: Config, terminated: Termination | None, where: str) -> None:
    """``terminated`` is given exactly when ``config.termination`` is "env"."""
    if config.termination == "env" and terminated is None:
        raise ValueError(
            f"{where}: Config.termination='env' needs terminated=<the task's termination "
            "function of next observations> (e.g. env.terminated); termination='learned' uses "
            "the learned terminal head"
        )
    if config.termination == "learned" and terminated is not None:
        raise ValueError(f"{where}: terminated was given but Config.termination='learned'")


@functools.partial(jax.jit, static_argnames=("terminated",))
def sample(
    state: State,
    key: jax.Array,
    obs: jax.Array,
    action: jax.Array,
    terminated: Termination | None = None,
):
    """One model step: a uniformly drawn elite per row, sampled from its Gaussian.

    Returns ``(next_obs, reward, terminal, info)``. ``terminal`` (1.0 or 0.0) is
    ``terminated(next_obs)`` with ``Config.termination="env"`` (``terminated``: the task's
    termination function, bool of shape ``next_obs.shape[:-1]``; static, so pass a stable
    callable such as a bound method), else whether the drawn elite's terminal probability
    exceeds 0.5. ``info`` holds ``uncertainty`` (MOPO's u(s, a), see ``mopo_penalty``), the
    drawn elite's raw-space ``std`` of [delta_obs, reward] and, with "learned", its
    ``terminal_prob``.
    """
    _check_termination(state.config, terminated, "sample")
    mean, std, logit = member_predictions(state, obs, action)
    k_member, k_noise = jax.random.split(key)
    pick = jax.random.randint(k_member, mean.shape[1:-1], 0, mean.shape[0])
    choose = lambda a: jnp.take_along_axis(a, pick[None, ..., None], axis=0)[0]
    noise = jax.random.normal(k_noise, mean.shape[1:], mean.dtype)
    delta = choose(mean) + choose(std) * noise
    next_obs = obs + delta[..., :-1]
    info = {"uncertainty": _mopo_uncertainty(std), "std": choose(std)}
    if terminated is None:
        info["terminal_prob"] = jax.nn.sigmoid(choose(logit[..., None])[..., 0])
        terminal = info["terminal_prob"] > 0.5
    else:
        terminal = terminated(next_obs)
        if terminal.shape != next_obs.shape[:-1]:
            raise ValueError(
                f"sample: terminated(next_obs) has shape {terminal.shape}, expected "
                f"{next_obs.shape[:-1]}"
            )
    return next_obs, delta[..., -1], terminal.astype(jnp.float32), info


def rollout(
    state: State,
    key: jax.Array,
    policy_fn: Callable[[jax.Array, jax.Array], jax.Array],
    start_obs: jax.Array,
    horizon: int,
    penalty_coef=0.0,
    terminated: Termination | None = None,
) -> tuple[Transition, jax.Array]:
    """``horizon``-step branched rollouts from ``start_obs`` (n, obs_dim) under
    ``policy_fn(obs, key) -> action`` (raw observations in, actions out).

    Returns transitions of shape (horizon, n) with MOPO-penalised rewards
    ``r - penalty_coef * u(s, a)``, and a bool ``valid`` mask (horizon, n): a row is valid until
    (and including) the first terminal step (terminals as in ``sample``: ``terminated(next_obs)``
    or the learned head). Rows after it are invalid and their observation stays frozen.
    ``truncated`` is 1 on the last step where not terminal; ``mc_return`` is 0.
    """
    _check_termination(state.config, terminated, "rollout")
    if horizon < 1:
        raise ValueError(f"rollout: horizon must be >= 1, got {horizon}")
    if start_obs.ndim != 2 or start_obs.shape[1] != state.config.obs_dim:
        raise ValueError(
            f"rollout: start_obs must be (n, {state.config.obs_dim}), got {start_obs.shape}"
        )

    def step(carry, k):
        obs, alive = carry
        k_policy, k_model = jax.random.split(k)
        action = policy_fn(obs, k_policy)
        next_obs, reward, terminal, info = sample(state, k_model, obs, action, terminated)
        zero = jnp.zeros_like(reward)
        row = Transition(
            obs, action, reward - penalty_coef * info["uncertainty"], next_obs, terminal, zero, zero
        )
        still = alive & (terminal < 0.5)
        return (jnp.where(still[:, None], next_obs, obs), still), (row, alive)

    alive = jnp.ones(start_obs.shape[:1], bool)
    _, (rows, valid) = jax.lax.scan(step, (start_obs, alive), jax.random.split(key, horizon))
    rows = rows.replace(truncated=rows.truncated.at[-1].set(1.0 - rows.terminal[-1]))
    return rows, valid


@functools.partial(jax.jit, static_argnames=("replace_reward", "terminated"))
def replace_next_states(
    state: State,
    key: jax.Array,
    batch: Transition,
    fraction=0.5,
    replace_reward: bool = False,
    terminated: Termination | None = None,
) -> Transition:
    """Augmentation mode (i) ("Small Dataset, Big Gains"): in each (B,) batch exactly
    ``round(fraction * B)`` rows (``fraction`` in [0, 1], may be traced), chosen at random per
    call, get ``next_obs`` and ``terminal`` (and ``reward`` with ``replace_reward``) from a model
    ``sample`` (terminals as there: ``terminated(next_obs)`` or the learned head); every other
    field is untouched.

    ``batch`` is (B,) or a (U, B) stack (each of the U batches gets its own rows).
    """
    _check_dims(state.config, batch.obs, batch.action, "replace_next_states")
    _check_termination(state.config, terminated, "replace_next_states")
    if batch.reward.ndim == 2:
        replace = lambda k, b: replace_next_states(
            state, k, b, fraction, replace_reward, terminated
        )
        return jax.vmap(replace)(jax.random.split(key, batch.reward.shape[0]), batch)
    if batch.reward.ndim != 1:
        raise ValueError(
            f"replace_next_states: batch must be (B,) or (U, B), got {batch.reward.shape}"
        )
    k_rows, k_model = jax.random.split(key)
    size = batch.reward.shape[0]
    chosen = jax.random.permutation(k_rows, size) < jnp.round(fraction * size)
    next_obs, reward, terminal, _ = sample(state, k_model, batch.obs, batch.action, terminated)
    out = batch.replace(
        next_obs=jnp.where(chosen[:, None], next_obs, batch.next_obs),
        terminal=jnp.where(chosen, terminal, batch.terminal),
    )
    if replace_reward:
        out = out.replace(reward=jnp.where(chosen, reward, batch.reward))
    return out


@functools.partial(jax.jit, static_argnames=("horizons",))
def prediction_error(
    state: State, data: Transition, ends: jax.Array, horizons: tuple[int, ...] = (1, 5)
) -> dict[str, jax.Array]:
    """Open-loop k-step prediction error on time-ordered real transitions ``data`` (N,).

    ``ends`` (N,) marks each trajectory's last row (``rlgen.data.episode_ends``); pass
    trajectories the model was not fitted on. For every start t whose rows t .. t+k-1 lie in one
    trajectory, the elite-mean model is stepped k times from obs[t] with the recorded actions and
    compared with next_obs[t+k-1]. ``model_mse_k`` is the squared error averaged over obs dims and
    starts; ``baseline_mse_k`` that of the constant-delta baseline obs[t] + k * (mean training
    delta); ``num_starts_k`` the number of starts (the MSEs are NaN if it is 0).
    """
    n = data.obs.shape[0]
    _check_dims(state.config, data.obs, data.action, "prediction_error")
    ends_before = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(ends.astype(jnp.int32))])
    mean_delta = state.target_norm.mean[:-1]
    out = {}
    for k in horizons:
        if not 1 <= k <= n:
            raise ValueError(f"prediction_error: horizon {k} outside [1, {n}]")
        starts = n - k + 1
        ok = ends_before[k - 1 : k - 1 + starts] == ends_before[:starts]
        obs = data.obs[:starts]
        for i in range(k):
            obs = predict(state, obs, data.action[i : i + starts])[0]
        target = data.next_obs[k - 1 : k - 1 + starts]
        baseline = data.obs[:starts] + k * mean_delta
        masked_mean = lambda err, ok=ok: jnp.sum(jnp.where(ok, err, 0.0)) / ok.sum()
        out[f"model_mse_{k}"] = masked_mean(((obs - target) ** 2).mean(axis=-1))
        out[f"baseline_mse_{k}"] = masked_mean(((baseline - target) ** 2).mean(axis=-1))
        out[f"num_starts_{k}"] = ok.sum()
    return out
