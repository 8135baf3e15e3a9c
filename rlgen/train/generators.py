"""Diffusion generators in offline-to-online runs: SynthER upsampling and EDIS.

- ``synther``: before pretraining, each seed fits SynthER's diffusion model on the offline
  dataset and fills its synthetic buffer with ``num_samples`` generated transitions; pretraining
  batches draw ``synthetic_ratio`` of their rows from it (1.0: synthetic data only).
- ``edis``: during fine-tuning, every ``refresh_every`` env steps (first right after the warm-up
  collection) each seed refits the diffusion model from a fresh init on offline + online data
  (normaliser and batches over their union), continues training its state / policy /
  transition energies contrastively against the new model's samples, with fresh online rows
  and the current policy as positives, and refills its synthetic buffer by energy-guided
  sampling. The energies and their Adam state are created once per seed (``init_energies``)
  and carried across refits in the run state. Fine-tuning batches then mix generated and
  online rows; offline rows are not replayed directly.

Generated rows have no Monte-Carlo return: ``mc_return`` is -inf, so Cal-QL's bound is off there.
Everything is a pure function of per-seed states, jitted and vmapped by the runner.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from rlgen.agents.common import Agent
from rlgen.data import replay
from rlgen.data.episodes import UNKNOWN_RETURN
from rlgen.data.mixer import sample_union
from rlgen.data.normalize import Normalizer
from rlgen.data.replay import ReplayBuffer
from rlgen.data.transition import Transition
from rlgen.gen import diffusion, energy

MODES = ("synther", "edis")
_STD_EPS = 1e-6  # as normalize.fit: dims with less spread get std 1


@dataclasses.dataclass(frozen=True)
class DiffusionAugment:
    """Static settings of a diffusion generator in a run."""

    mode: str
    diffusion: diffusion.Config
    train_steps: int = 100_000
    batch_size: int = 256
    num_samples: int = 1_000_000  # rows of the synthetic buffer
    refresh_every: int = 10_000  # edis: fine-tuning env steps between refreshes
    energy_config: energy.Config | None = None  # edis only
    energy_steps: int = 200  # per refresh, continuing the energies' training
    energy_examples: int = 5_120  # fresh online rows used as positives per refresh
    energies: tuple[str, ...] = energy.ENERGIES  # edis: energies applied (ablations)
    guidance_scale: float = 1.0
    guidance_clip: float = 10.0  # cap of the guidance term in d: clip * sqrt(dim) per row
    unknown_returns: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("train_steps", "batch_size", "num_samples", "refresh_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.mode == "edis":
            if self.energy_config is None:
                raise ValueError("edis needs an energy config")
            if self.energy_steps <= 0 or self.energy_examples <= 0:
                raise ValueError("energy_steps and energy_examples must be positive")
            if not self.guidance_clip > 0:
                raise ValueError(f"guidance_clip must be positive, got {self.guidance_clip}")
            unknown = set(self.energies) - set(energy.ENERGIES)
            if unknown:
                raise ValueError(f"unknown energies {sorted(unknown)}; use {energy.ENERGIES}")

    def guidance(self) -> energy.Guidance:
        return energy.Guidance.create(
            self.guidance_scale, self.guidance_clip, enabled=self.energies
        )


@functools.partial(jax.jit, static_argnames=("num_steps", "batch_size"))
def train_diffusion(
    state: diffusion.State, sources: tuple[ReplayBuffer, ...], num_steps: int, batch_size: int
) -> tuple[diffusion.State, dict[str, jax.Array]]:
    """``num_steps`` diffusion train steps (one ``lax.scan``) on batches drawn uniformly from
    the filled rows of ``sources`` together. Buffer sizes are traced, so growing buffers reuse
    the compiled program. Returns the state and per-step metrics of shape (num_steps,)."""

    def step(state, _):
        key, k_batch = jax.random.split(state.key)
        batch = diffusion.flatten(sample_union(sources, k_batch, batch_size))
        return diffusion.train_step(state.replace(key=key), batch)

    return jax.lax.scan(step, state, length=num_steps)


def fit_diffusion(
    aug: DiffusionAugment,
    key: jax.Array,
    sources: tuple[ReplayBuffer, ...],
    normalizer: Normalizer,
) -> tuple[diffusion.State, jax.Array]:
    """A fresh diffusion model trained ``aug.train_steps`` steps on the union of ``sources``;
    returns it and the mean loss of the last 10% of steps."""
    state = diffusion.init(key, aug.diffusion, normalizer)
    state, metrics = train_diffusion(state, sources, aug.train_steps, aug.batch_size)
    tail = max(aug.train_steps // 10, 1)
    return state, metrics["loss"][-tail:].mean()


def as_buffer(aug: DiffusionAugment, generated: Transition) -> ReplayBuffer:
    """A full buffer of generated rows (MC returns marked unknown when ``unknown_returns``)."""
    if aug.unknown_returns:
        generated = generated.replace(mc_return=jnp.full_like(generated.mc_return, UNKNOWN_RETURN))
    return replay.from_transitions(generated)


def synther_buffer(
    aug: DiffusionAugment, key: jax.Array, offline: ReplayBuffer, normalizer: Normalizer
) -> tuple[ReplayBuffer, dict]:
    """SynthER: fit on the offline data, generate ``aug.num_samples`` rows."""
    k_fit, k_sample = jax.random.split(key)
    model, loss = fit_diffusion(aug, k_fit, (offline,), normalizer)
    generated = diffusion.generate(model, k_sample, aug.num_samples)
    return as_buffer(aug, generated), {"diffusion_loss": loss}


def _filled_sum(sources: tuple[ReplayBuffer, ...], fn) -> jax.Array:
    """Sum over the filled rows of ``sources`` of ``fn(flat rows)``, per dim."""
    total = 0.0
    for src in sources:
        filled = (jnp.arange(src.capacity) < src.size)[:, None]
        total = total + jnp.where(filled, fn(diffusion.flatten(src.data)), 0.0).sum(0)
    return total


def union_normalizer(sources: tuple[ReplayBuffer, ...]) -> Normalizer:
    """``diffusion.fit_normalizer`` over the filled rows of ``sources`` together (masked moments:
    sizes may be traced, so one compiled program serves every fill level)."""
    count = jnp.maximum(sum(src.size for src in sources), 1)
    mean = _filled_sum(sources, lambda x: x) / count
    std = jnp.sqrt(_filled_sum(sources, lambda x: (x - mean) ** 2) / count)
    skip = jnp.arange(mean.shape[0]) == mean.shape[0] - 1  # the terminal dim stays raw
    std = jnp.where(skip | (std < _STD_EPS), 1.0, std)
    return Normalizer(mean=jnp.where(skip, 0.0, mean), std=std)


def init_energies(aug: DiffusionAugment, key: jax.Array) -> energy.State:
    """A seed's EDIS energies and their optimiser state, created once at run init."""
    if aug.energy_config is None:
        raise ValueError(f"init_energies: DiffusionAugment.energy_config is None (mode {aug.mode})")
    return energy.init(key, aug.energy_config)


def train_energies(
    aug: DiffusionAugment,
    energies: energy.State,
    model: diffusion.State,
    online: ReplayBuffer,
    policy: energy.PolicyFn,
    key: jax.Array,
) -> tuple[energy.State, dict[str, jax.Array]]:
    """Continue training ``energies`` for ``aug.energy_steps`` steps on ``aug.energy_examples``
    fresh online positives against fresh negatives from ``model``; returns the energies and
    per-step metrics (energy_steps,)."""
    k_rows, k_examples = jax.random.split(key)
    positives = replay.sample(online, k_rows, aug.energy_examples)
    examples = energy.build_examples(aug.energy_config, model, positives, policy, k_examples)
    return energy.train(energies, examples, aug.energy_steps, aug.batch_size)


def edis_buffer(
    aug: DiffusionAugment,
    key: jax.Array,
    offline: ReplayBuffer,
    online: ReplayBuffer,
    agent: Agent,
    agent_state,
    energies: energy.State,
) -> tuple[ReplayBuffer, energy.State, dict]:
    """EDIS refit: a diffusion model fitted on offline + online data (normaliser included), the
    seed's ``energies`` trained further against it with fresh online positives and the current
    policy, then energy-guided generation. Returns the buffer, the energies and metrics."""
    k_fit, k_energy, k_sample = jax.random.split(key, 3)
    sources = (offline, online)
    model, loss = fit_diffusion(aug, k_fit, sources, union_normalizer(sources))

    def policy(obs, k):
        return agent.act(agent_state, obs, k, False)

    energies, metrics = train_energies(aug, energies, model, online, policy, k_energy)
    generated = energy.guided_generate(model, energies, k_sample, aug.num_samples, aug.guidance())
    last = jax.tree.map(lambda m: m[-1], metrics)
    return as_buffer(aug, generated), energies, {"diffusion_loss": loss, **last}
