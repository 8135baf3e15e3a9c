"""World-model augmentation of offline pretraining ("Small Dataset, Big Gains"; MOPO).

A dynamics ensemble (:mod:`rlgen.gen.dynamics`) is fitted per seed on the offline dataset before
pretraining, then used in one of two ways:

- ``model``: in every pretraining batch a share of the next states (default half), with their
  terminals, is replaced by a model sample (:func:`rlgen.gen.dynamics.replace_next_states`).
- ``model-rollouts``: every ``rollout_every`` updates, k-step branched rollouts from random
  dataset states under the current policy, with MOPO-penalised rewards, refill the seed's
  synthetic buffer; pretraining batches draw ``synthetic_ratio`` of their rows from it.
  Rollout rows have no Monte-Carlo return, so Cal-QL's bound is off for them (-inf).

Terminals of model transitions come from the task's termination function of the next
observation (``terminated``, e.g. ``env.terminated``), or from the model's learned terminal head
with ``dynamics.Config(termination="learned")``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from rlgen.agents.common import Agent
from rlgen.data import replay
from rlgen.data.episodes import UNKNOWN_RETURN
from rlgen.data.replay import ReplayBuffer
from rlgen.data.transition import Transition
from rlgen.gen import dynamics
from rlgen.train.sharding import seed_map

AUGMENTS = ("none", "model", "model-rollouts")


@dataclasses.dataclass(frozen=True)
class ModelAugment:
    """Static settings of world-model augmentation. ``terminated`` is the task's termination
    function of observations (``env.terminated``), required unless the model's ``termination``
    is "learned" (then it is not used)."""

    mode: str  # "model" or "model-rollouts"
    model: dynamics.Config
    terminated: Callable[[jax.Array], jax.Array] | None = None
    fraction: float = 0.5  # model: share of next states replaced
    rollout_starts: int = 5_000  # model-rollouts: start states per refresh
    rollout_horizon: int = 5
    rollout_every: int = 1_000  # pretraining updates between refreshes
    penalty: float = 1.0  # MOPO lambda
    unknown_returns: bool = True  # mark rollout rows' MC return unknown (Cal-QL)

    def __post_init__(self):
        if self.mode not in AUGMENTS[1:]:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {self.mode!r}")
        if not 0 <= self.fraction <= 1:
            raise ValueError(f"augment_fraction must be in [0, 1], got {self.fraction}")
        for name in ("rollout_starts", "rollout_horizon", "rollout_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.penalty < 0:
            raise ValueError(f"mopo_penalty must be >= 0, got {self.penalty}")
        if self.model.termination == "env" and self.terminated is None:
            raise ValueError(
                "ModelAugment.terminated is required with model.termination='env': pass the "
                "task's termination function (env.terminated), or use termination='learned'"
            )

    @property
    def termination_fn(self) -> Callable[[jax.Array], jax.Array] | None:
        """What the model's functions take as ``terminated`` (None: the learned head)."""
        return self.terminated if self.model.termination == "env" else None

    @property
    def capacity(self) -> int:
        """Rows of the synthetic buffer (model-rollouts)."""
        return self.rollout_starts * self.rollout_horizon


def fit_models(
    keys: jax.Array, config: dynamics.Config, data: Transition, sharding
) -> dynamics.State:
    """One world model per key (seed, sharded like ``sharding``), all fitted on the same data
    in one program."""
    fit = seed_map(lambda k, d: dynamics.fit(k, config, d)[0], sharding, in_axes=(0, None))
    return jax.jit(fit, out_shardings=sharding)(keys, data)


def next_state_transform(aug: ModelAugment):
    """A pretraining batch transform: replace ``aug.fraction`` of next states by model samples."""

    def transform(model: dynamics.State, key: jax.Array, batch: Transition) -> Transition:
        return dynamics.replace_next_states(
            model, key, batch, aug.fraction, terminated=aug.termination_fn
        )

    return transform


def rollout_buffer(
    aug: ModelAugment,
    model: dynamics.State,
    agent: Agent,
    agent_state,
    offline: ReplayBuffer,
    key: jax.Array,
) -> ReplayBuffer:
    """MOPO rollouts from random dataset states under the agent's (sampled) policy, valid rows
    packed at the front of a buffer whose ``size`` counts them."""
    k_starts, k_rollout = jax.random.split(key)
    idx = replay.sample_indices(k_starts, offline.size, (aug.rollout_starts,))
    starts = offline.data.obs[idx]

    def policy(obs, k):
        return agent.act(agent_state, obs, k, False)

    rows, valid = dynamics.rollout(
        model, k_rollout, policy, starts, aug.rollout_horizon, aug.penalty, aug.termination_fn
    )
    flat = jax.tree.map(lambda x: x.reshape(aug.capacity, *x.shape[2:]), rows)
    order = jnp.argsort(~valid.reshape(-1), stable=True)
    packed = jax.tree.map(lambda x: x[order], flat)
    if aug.unknown_returns:
        packed = packed.replace(mc_return=jnp.full_like(packed.mc_return, UNKNOWN_RETURN))
    return ReplayBuffer(
        data=packed,
        insert_pos=jnp.zeros((), jnp.int32),
        size=valid.sum().astype(jnp.int32),
    )
