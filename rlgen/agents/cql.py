"""CQL and Cal-QL: SAC critics with a conservative penalty, optionally calibrated.

Per critic k the loss is the mean squared TD error plus ``w * penalty_k`` with

    penalty_k = E_s[ T * logsumexp_j((Q_k(s, a_j) - log mu(a_j)) / T) - Q_k(s, a_data) ]

over 3N sampled actions a_j, all evaluated at s: N uniform in [-1, 1]^d (log mu = d log 0.5), N
from pi(.|s) and N from pi(.|s') (log mu = their detached policy log-densities). Cal-QL
(``calibrated``) first raises the Q-values of the policy-sampled actions to the Monte-Carlo
return-to-go of the dataset trajectory, max(Q, mc_return); uniform samples stay unbounded. The
weight w is ``cql_alpha`` or, with ``lagrange``, ``cql_alpha * alpha'`` where alpha' is tuned
to keep the penalty near ``target_gap``. Actor and temperature are SAC's. The target is a
max-target backup over N actions from pi(.|s') (Cal-QL's default) or a single-sample SAC backup
(CQL as published for MuJoCo); those actions are drawn apart from the penalty's pi(.|s') ones.

``update`` takes a (B,) batch or a (U, B) stack: U critic updates run as one ``lax.scan``, then
one actor + temperature update on the last batch (as ``sac.update``).
"""

from __future__ import annotations

import dataclasses
import math

import flax.struct
import jax
import jax.numpy as jnp

from rlgen import nets
from rlgen.agents import core
from rlgen.agents.common import Agent, Optimized, adam_step, check_sizes, float_hparams
from rlgen.data.transition import Transition

MAX_ALPHA_PRIME = 1e6


@dataclasses.dataclass(frozen=True)
class Config:
    """Static CQL / Cal-QL settings (shapes, architecture, variants)."""

    obs_dim: int
    action_dim: int
    hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] | None = None  # None: same as ``hidden``
    num_critics: int = 2
    critic_layer_norm: bool = False
    num_samples: int = 10  # N actions per group in the penalty and the max-target backup
    calibrated: bool = True  # Cal-QL; False is plain CQL
    max_target_backup: bool = True  # max over N next actions of min_k Q_target (Cal-QL's code)
    backup_entropy: bool = False  # subtract alpha log pi(a'|s') in the target (Cal-QL: off)
    lagrange: bool = False  # tune alpha' so the penalty stays near ``HParams.target_gap``
    initializer: str = "orthogonal-small-out"  # every layer's (nets.dense_init): Cal-QL's code
    # the policy's log-std is m * output + b, b starting here (Cal-QL's code); None: SAC's clip
    log_std_offset: float | None = -1.0

    def __post_init__(self):
        check_sizes(self, "num_critics", "num_samples")
        nets.check_initializer(self.initializer)


@flax.struct.dataclass
class HParams:
    """Hyperparameters a sweep may vmap over (defaults: Cal-QL's public code)."""

    actor_lr: jax.Array = 1e-4
    critic_lr: jax.Array = 3e-4
    alpha_lr: jax.Array | None = None  # None: actor_lr (Cal-QL tunes the temperature with it)
    alpha_prime_lr: jax.Array | None = None  # None: critic_lr (... and alpha' with this one)
    gamma: jax.Array = 0.99
    tau: jax.Array = 5e-3
    init_alpha: jax.Array = 1.0
    target_entropy_scale: jax.Array = 1.0  # target entropy = -scale * action_dim
    cql_alpha: jax.Array = 5.0  # penalty weight (Cal-QL: 5 AntMaze/Kitchen, 1 Adroit)
    cql_temp: jax.Array = 1.0
    target_gap: jax.Array = 1.0  # Lagrange only (Cal-QL AntMaze: 0.8)
    init_alpha_prime: jax.Array = math.e  # Lagrange only; the reference starts at log alpha' = 1


@flax.struct.dataclass
class State:
    actor: Optimized
    critic: Optimized
    target_critic: dict
    log_alpha: Optimized
    log_alpha_prime: Optimized  # trained only with ``lagrange``
    hp: HParams
    step: jax.Array


def networks(config: Config) -> tuple[nets.TanhGaussianPolicy, nets.QEnsemble]:
    actor = nets.TanhGaussianPolicy(
        config.action_dim,
        config.hidden,
        initializer=config.initializer,
        log_std_offset=config.log_std_offset,
    )
    critic_hidden = config.hidden if config.critic_hidden is None else config.critic_hidden
    critic = nets.QEnsemble(
        critic_hidden,
        config.num_critics,
        config.critic_layer_norm,
        initializer=config.initializer,
    )
    return actor, critic


def resolve_hparams(hp: HParams | None) -> HParams:
    """``hp`` with the temperatures' learning rates filled in from the policy / critic rates
    where they are None, every leaf a float32 array."""
    hp = HParams() if hp is None else hp
    hp = hp.replace(
        alpha_lr=hp.actor_lr if hp.alpha_lr is None else hp.alpha_lr,
        alpha_prime_lr=hp.critic_lr if hp.alpha_prime_lr is None else hp.alpha_prime_lr,
    )
    return float_hparams(HParams, hp)


def init(key: jax.Array, config: Config, hp: HParams | None = None) -> State:
    hp = resolve_hparams(hp)
    actor_params, critic_params = core.actor_critic_params(
        key, *networks(config), config.obs_dim, config.action_dim
    )
    return State(
        actor=Optimized.create(actor_params),
        critic=Optimized.create(critic_params),
        target_critic=critic_params,
        log_alpha=Optimized.create(jnp.log(hp.init_alpha)),
        log_alpha_prime=Optimized.create(jnp.log(hp.init_alpha_prime)),
        hp=hp,
        step=jnp.zeros((), jnp.int32),
    )


def sample_actions(config: Config, actor_params, obs: jax.Array, key: jax.Array, num: int):
    """``num`` reparameterised actions per observation: (B, num, d) actions, (B, num) log pi."""
    return core.sample_tanh_gaussian(networks(config)[0], actor_params, obs, key, num)


def act(config: Config, state: State, obs: jax.Array, key: jax.Array, deterministic: bool = False):
    """Actions for a batch of observations: sampled, or tanh(mean) when ``deterministic``."""
    return core.act_tanh_gaussian(networks(config)[0], state.actor.params, obs, key, deterministic)


def q_at(config: Config, critic_params, obs: jax.Array, actions: jax.Array) -> jax.Array:
    """Q_k(s, a_j) for (B, obs_dim) observations and (B, J, d) actions: shape (K, B, J)."""
    obs = jnp.broadcast_to(obs[..., None, :], (*actions.shape[:-1], obs.shape[-1]))
    return networks(config)[1].apply(critic_params, obs, actions)


def calibrate(q: jax.Array, mc_return: jax.Array) -> jax.Array:
    """Cal-QL's bound max(Q, V_mu(s)) for Q of shape (..., B, N) and mc_return of shape (B,)."""
    return jnp.maximum(q, mc_return[:, None])


def cql_penalty(
    q_data: jax.Array,
    q_uniform: jax.Array,
    q_pi: jax.Array,
    logp_pi: jax.Array,
    q_next_pi: jax.Array,
    logp_next_pi: jax.Array,
    mc_return: jax.Array,
    calibrated: bool,
    action_dim: int,
    temp: jax.Array = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """The conservative penalty per critic, shape (K,), and the calibration rate.

    ``q_data`` is (K, B); ``q_uniform``, ``q_pi`` (actions ~ pi(.|s)) and ``q_next_pi``
    (actions ~ pi(.|s')) are (K, B, N), all evaluated at s; ``logp_*`` are (B, N) and
    ``mc_return`` is (B,). The calibration rate is the fraction of policy-sampled Q-values
    below ``mc_return`` (those the Cal-QL bound raises), reported whether or not it is applied.
    """
    rate = jnp.mean(jnp.concatenate([q_pi, q_next_pi], -1) < mc_return[:, None])
    if calibrated:
        q_pi, q_next_pi = calibrate(q_pi, mc_return), calibrate(q_next_pi, mc_return)
    logp_pi, logp_next_pi = jax.lax.stop_gradient((logp_pi, logp_next_pi))
    weighted = jnp.concatenate(
        [q_uniform + action_dim * math.log(2.0), q_pi - logp_pi, q_next_pi - logp_next_pi], -1
    )
    ood = temp * jax.nn.logsumexp(weighted / temp, axis=-1)
    return (ood - q_data).mean(axis=-1), rate


def backup_value(next_q: jax.Array, next_logp: jax.Array, alpha: jax.Array, backup_entropy: bool):
    """Target value from target Q-values (K, B, N) at N next actions with log pi (B, N).

    Min over critics, then max over the N actions (N=1 is the plain SAC backup); with
    ``backup_entropy`` the chosen action's ``alpha * log pi`` is subtracted. Shape (B,).
    """
    q = next_q.min(axis=0)
    best = jnp.argmax(q, axis=-1)[..., None]
    value = jnp.take_along_axis(q, best, axis=-1)[..., 0]
    if backup_entropy:
        value = value - alpha * jnp.take_along_axis(next_logp, best, axis=-1)[..., 0]
    return value


def policy_samples(config: Config, state: State, batch: Transition, key: jax.Array):
    """N actions from pi(.|s) and two independent sets of N from pi(.|s'), each as (B, N, d)
    actions and (B, N) log pi: for the penalty at s, the penalty at s' and the target backup
    (the reference draws the penalty's and the backup's pi(.|s') actions separately).

    One actor pass over [s; s'], 2N draws per row (the s rows' second N are not used).
    """
    obs = jnp.concatenate([batch.obs, batch.next_obs])
    n, b = config.num_samples, batch.reward.shape[0]
    actions, logp = sample_actions(config, state.actor.params, obs, key, 2 * n)
    return (
        (actions[:b, :n], logp[:b, :n]),
        (actions[b:, :n], logp[b:, :n]),
        (actions[b:, n:], logp[b:, n:]),
    )


def td_target(config: Config, state: State, batch: Transition, next_action, next_logp):
    """r + gamma (1 - terminal) V(s'), V from ``backup_value`` at the given next actions.

    ``next_action`` is (B, N, d) from pi(.|s'): all N are used with ``max_target_backup``, else
    the first only.
    """
    if not config.max_target_backup:
        next_action, next_logp = next_action[:, :1], next_logp[:, :1]
    next_q = q_at(config, state.target_critic, batch.next_obs, next_action)
    alpha = jnp.exp(state.log_alpha.params)
    next_v = backup_value(next_q, next_logp, alpha, config.backup_entropy)
    return batch.reward + state.hp.gamma * (1.0 - batch.terminal) * next_v


def critic_loss(config: Config, critic_params, hp: HParams, batch, target, samples, weight):
    """Sum over critics of mean squared TD error + ``weight`` * penalty."""
    actions, logp_pi, logp_next = samples
    q = q_at(config, critic_params, batch.obs, jnp.concatenate([batch.action[:, None], actions], 1))
    n = config.num_samples
    q_data, q_uniform, q_pi, q_next = jnp.split(q, [1, n + 1, 2 * n + 1], axis=-1)
    q_data = q_data[..., 0]
    td_loss = core.td_loss(q_data, target)
    penalty, rate = cql_penalty(
        q_data, q_uniform, q_pi, logp_pi, q_next, logp_next, batch.mc_return,
        config.calibrated, config.action_dim, hp.cql_temp,
    )  # fmt: skip
    metrics = {
        "td_loss": td_loss,
        "penalty": penalty.mean(),
        "calibration_rate": rate,
        "q_data": q_data.mean(),
        "q_uniform": q_uniform.mean(),
        "q_pi": q_pi.mean(),
        "target_q": target.mean(),
    }
    return td_loss + weight * penalty.sum(), (penalty, metrics)


def alpha_prime(state: State) -> jax.Array:
    return jnp.clip(jnp.exp(state.log_alpha_prime.params), 0.0, MAX_ALPHA_PRIME)


def update_alpha_prime(state: State, penalty: jax.Array) -> State:
    """One Lagrange step: raise alpha' when the mean penalty exceeds ``target_gap``, else lower."""
    gap = jax.lax.stop_gradient(penalty.mean()) - state.hp.target_gap

    def loss(log_alpha_prime):
        return -jnp.clip(jnp.exp(log_alpha_prime), 0.0, MAX_ALPHA_PRIME) * state.hp.cql_alpha * gap

    grad = jax.grad(loss)(state.log_alpha_prime.params)
    return state.replace(
        log_alpha_prime=adam_step(state.log_alpha_prime, grad, state.hp.alpha_prime_lr)
    )


def update_critic(config: Config, state: State, batch: Transition, key: jax.Array):
    """One critic step on a (B,) batch, a Polyak target update and (``lagrange``) an alpha' step."""
    k_policy, k_uniform = jax.random.split(key)
    (a_pi, logp_pi), (a_next, logp_next), backup = policy_samples(config, state, batch, k_policy)
    target = jax.lax.stop_gradient(td_target(config, state, batch, *backup))
    uniform = jax.random.uniform(k_uniform, a_pi.shape, minval=-1.0, maxval=1.0)
    samples = (jnp.concatenate([uniform, a_pi, a_next], axis=1), logp_pi, logp_next)
    samples = jax.lax.stop_gradient(samples)
    weight = state.hp.cql_alpha * (alpha_prime(state) if config.lagrange else 1.0)
    state, (penalty, metrics) = core.critic_step(
        state, lambda p: critic_loss(config, p, state.hp, batch, target, samples, weight)
    )
    if config.lagrange:
        state = update_alpha_prime(state, penalty)
    return state, {**metrics, "cql_weight": weight}


def actor_loss(config: Config, actor_params, critic_params, log_alpha, batch, key):
    """E[alpha log pi(a|s) - min_k Q_k(s, a)], a ~ pi."""
    action, logp = sample_actions(config, actor_params, batch.obs, key, 1)
    q = q_at(config, critic_params, batch.obs, action).min(axis=0)
    return core.max_entropy_actor_loss(log_alpha, logp, q)


def update_actor(config: Config, state: State, batch: Transition, key: jax.Array):
    """One actor step and one temperature step (SAC's) on a (B,) batch."""
    critic, log_alpha = state.critic.params, state.log_alpha.params
    loss = lambda p: actor_loss(config, p, critic, log_alpha, batch, key)  # noqa: E731
    return core.actor_and_temperature_step(state, loss, config.action_dim)


def update(config: Config, state: State, batches: Transition, key: jax.Array):
    """Critic updates over a (B,) batch or a (U, B) stack (scanned), then one actor update.

    Returns the new state and the metrics of the last critic step and the actor step.
    """
    return core.critics_then_actor(config, update_critic, update_actor, state, batches, key)


def make_agent(config: Config, hp: HParams | None = None) -> Agent:
    """CQL (``calibrated=False``) or Cal-QL as an :class:`Agent` for the runners."""
    return core.agent("calql" if config.calibrated else "cql", config, hp, init, update, act)
