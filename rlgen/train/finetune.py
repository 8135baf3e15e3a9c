"""Offline-to-online: pretrain an agent on a dataset, then fine-tune it online (``rlgen finetune``).

Two compiled phases, each ``jit(vmap(...))`` over seeds with the dataset on the device once and
shared by every seed:

1. **Offline pretraining** -- ``chunk`` updates per call
   (:func:`rlgen.train.offline.pretrain_chunk`).
2. **Online fine-tuning** -- ``warmup`` env steps collected with the pretrained policy, then
   blocks of env step -> mixed batch (``offline_ratio`` of each batch from the dataset, the rest
   from the seed's online buffer) -> update. For Cal-QL, online rows get their episode's
   Monte-Carlo return when the episode ends (:mod:`rlgen.data.episodes`), so calibration stays on.

Evaluations report returns and D4RL-normalised scores. Metrics go to ``run_dir/pretrain`` and
``run_dir/finetune`` (``metrics.jsonl`` / ``.csv``), checkpoints of the whole state to
``run_dir/checkpoints`` (resume continues in either phase), a summary to ``results.json``.
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rlgen import envs, nets, runinfo
from rlgen.agents import cql, iql, td3bc
from rlgen.agents.common import with_hparams, with_obs_normalizer
from rlgen.config import check, option
from rlgen.data import datasets, replay
from rlgen.data.episodes import UNKNOWN_RETURN
from rlgen.data.mixer import split_counts
from rlgen.data.returns import trajectory_ids
from rlgen.data.transition import Transition
from rlgen.gen import diffusion, dynamics, edm, energy
from rlgen.train import checkpoint, distributed, generators, health
from rlgen.train import sweep as sweeps
from rlgen.train.augment import (
    AUGMENTS,
    ModelAugment,
    fit_models,
    next_state_transform,
    rollout_buffer,
)
from rlgen.train.distributed import fetch, put
from rlgen.train.evaluations import EvaluationLog
from rlgen.train.generators import DiffusionAugment
from rlgen.train.logger import summarize
from rlgen.train.offline import pretrain_chunk
from rlgen.train.online import (
    LoopConfig,
    episode_metrics,
    evaluate,
    init_run_state,
    train_chunk,
    warmup_chunk,
)
from rlgen.train.runner import RunConfig, crossed, env_steps, write_json
from rlgen.train.sharding import replicated, seed_keys, seed_map, seed_sharding

ALGOS = ("calql", "cql", "iql", "td3bc")
DEFAULT_ACTOR_LR = {"calql": 1e-4, "cql": 1e-4, "iql": 3e-4, "td3bc": 3e-4}
# Defaults of the generative settings left None, per augmentation: SynthER's offline setting
# from the paper (synthetic data only, 5M rows, 2048-wide denoiser) and EDIS's online model.
AUGMENT_DEFAULTS = {
    "synther": {"synthetic_ratio": 1.0, "diffusion_width": 2048, "num_generated": 5_000_000},
    "edis": {"diffusion_width": 1024, "num_generated": 1_000_000},
    "model-rollouts": {"synthetic_ratio": 0.5},
}


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(RunConfig):
    """Offline pretraining then online fine-tuning over vmapped seeds."""

    # run-level settings that are per-lane arrays in the compiled program, so a vmapped sweep
    # may vary them like the agent's HParams (rlgen.train.sweep)
    TRACED_SETTINGS: typing.ClassVar[tuple[str, ...]] = ("finetune_bc_weight",)

    algo: str = option("calql, cql, iql or td3bc", default="calql")
    dataset: str = option(
        "a generated kind (random, medium, medium-replay, expert, medium-expert; generated "
        "from rlgen's reference policies and cached on first use) or a path to a D4RL/Minari "
        "HDF5 or .npz file",
        default="medium-replay",
    )
    dataset_size: int = option(
        "use this many random rows of the dataset (0: all; MC returns use full episodes)",
        default=0,
    )
    generate_size: int = option("rows of a generated dataset", default=1_000_000)
    data_dir: str | None = option("dataset cache (default: $RLGEN_DATA or ~/.cache)", default=None)
    pretrain_steps: int = option(
        "offline gradient updates (rounded up to chunks)", default=1_000_000
    )
    steps: int = option(
        "online fine-tuning env steps per seed, warm-up included (0: offline only)",
        default=100_000,
    )
    warmup: int = option(
        "env steps collected with the pretrained policy before online updates start", default=1_000
    )
    offline_ratio: float = option("share of each fine-tuning batch from the dataset", default=0.5)
    online_sampling: str = option(
        "fine-tuning batches: mix (offline_ratio of each batch from the dataset, as Cal-QL), "
        "union (uniform over dataset + online rows, as IQL's reference) or auto (union for iql, "
        "mix otherwise); generative augmentation always mixes",
        default="auto",
    )
    num_envs: int = option("parallel envs per seed during fine-tuning", default=1)
    utd: int = option("updates per env step during fine-tuning", default=1)
    buffer_size: int = option("online replay capacity per seed (0: the whole run)", default=0)
    chunk: int = option("updates (offline) or blocks (online) per compiled call", default=1_000)
    pretrain_eval_every: int = option(
        "offline updates between evaluations and checkpoints (0: only at the end)", default=100_000
    )
    eval_every: int = option("fine-tuning env steps between evaluations", default=5_000)
    checkpoint_every: int = option(
        "fine-tuning env steps between checkpoints (0: only at the end)", default=50_000
    )
    num_critics: int = option("critic ensemble size", default=2)
    actor_lr: float | None = option("actor learning rate (default: the algorithm's)", default=None)
    critic_lr: float = option("critic (and IQL value) learning rate", default=3e-4)
    cql_alpha: float = option("CQL/Cal-QL penalty weight", default=5.0)
    num_samples: int = option("CQL/Cal-QL actions per group in the penalty", default=10)
    lagrange: bool = option("CQL/Cal-QL: tune the penalty weight to target_gap", default=False)
    max_target_backup: str = option(
        "CQL/Cal-QL backup: max over num_samples next actions (on), a single one (off), or auto "
        "(on for calql as Cal-QL's code, off for cql as published for MuJoCo)",
        default="auto",
    )
    target_gap: float = option("CQL/Cal-QL Lagrange target gap", default=1.0)
    expectile: float = option("IQL expectile", default=0.7)
    beta: float = option("IQL inverse temperature", default=3.0)
    bc_alpha: float = option("TD3+BC alpha", default=2.5)
    obs_norm: bool = option(
        "TD3+BC: z-score observations by the dataset's mean and std + 1e-3 (the paper's)",
        default=True,
    )
    finetune_bc_weight: float = option(
        "TD3+BC weight of the BC term online (0: plain TD3)", default=0.0
    )
    iql_actor_decay: str = option(
        "IQL: cosine-decay the actor lr to 0 over pretraining, then the base lr online: auto "
        "(on for offline-only runs, --steps 0, as the reference's train_offline.py; off when "
        "fine-tuning, as its train_finetune.py), on, off",
        default="auto",
    )
    log_std_init: float | None = option(
        "the policy's initial log-std: IQL's state-independent parameter (default 0, the "
        "reference's; -1.5 is d3rlpy's start) or CQL / Cal-QL's learned offset (default -1, "
        "Cal-QL's code)",
        default=None,
    )
    initializer: str = option(
        "every layer's initialiser: auto (the reference code's: orthogonal for iql, "
        "orthogonal-small-out for calql / cql; lecun for td3bc, whose pair with d3rlpy is at "
        "parity on it), lecun (flax's default), orthogonal (gain sqrt 2), orthogonal-small-out "
        "(output layer gain 1e-2) or torch (PyTorch nn.Linear's uniform, d3rlpy's)",
        default="auto",
    )
    augment: str = option(
        "generative augmentation: none; pretraining with model (world-model next states), "
        "model-rollouts (MOPO branched rollouts) or synther (diffusion-upsampled data); "
        "fine-tuning with edis (energy-guided diffusion)",
        default="none",
    )
    edis: bool = option("shorthand for --augment edis", default=False)
    augment_fraction: float = option("model: share of next states replaced", default=0.5)
    synthetic_ratio: float | None = option(
        "model-rollouts / synther: share of pretraining batches from generated rows (1: only; "
        "default: 1 for synther, SynthER's synthetic-only training; 0.5 for model-rollouts)",
        default=None,
    )
    generated_ratio: float = option(
        "edis: share of fine-tuning batches from generated rows (the rest online)", default=0.5
    )
    rollout_starts: int = option("model-rollouts: start states per refresh", default=5_000)
    rollout_horizon: int = option("model-rollouts: steps per rollout", default=5)
    rollout_every: int = option("model-rollouts: updates between refreshes", default=1_000)
    mopo_penalty: float = option("model-rollouts: MOPO uncertainty penalty weight", default=1.0)
    model_termination: str = option(
        "world-model terminals: env (the task's termination of the next observation, as MBPO "
        "and MOPO) or learned (the model's terminal head)",
        default="env",
    )
    model_epochs: int = option("world model: most training epochs", default=200)
    diffusion_width: int | None = option(
        "synther / edis: denoiser width (default: SynthER's 2048 offline, 1024 for edis)",
        default=None,
    )
    diffusion_steps: int = option("synther / edis: training steps per fit", default=100_000)
    diffusion_batch: int | None = option(
        "synther / edis: diffusion and energy batch size (default: SynthER's rule offline, 1024 "
        "for >= 800k rows, else 256; 256 for edis, as SynthER's online refits)",
        default=None,
    )
    sampler_steps: int = option("synther / edis: Heun sampler steps", default=128)
    precision: str = option("synther / edis: denoiser precision fp32, tf32 or bf16", default="fp32")
    num_generated: int | None = option(
        "synther / edis: generated rows per fit (default: SynthER's 5M offline, 1M for edis)",
        default=None,
    )
    refresh_every: int = option("edis: fine-tuning env steps between refits", default=10_000)
    energies: tuple[str, ...] = option(
        "edis: energies applied (state, policy, transition; drop some to ablate)",
        default=("state", "policy", "transition"),
    )
    energy_steps: int = option(
        "edis: energy training steps per refit (the energies train on across refits)",
        default=200,
    )
    energy_examples: int = option(
        "edis: fresh online rows used as positives per refit", default=5_120
    )
    guidance_scale: float = option("edis: guidance scale of every energy", default=1.0)
    guidance_clip: float = option(
        "edis: cap on the guidance term of the sampler's direction, clip * sqrt(dim) per row",
        default=10.0,
    )
    reward_scale: str = option(
        "reward multiplier, or auto (IQL: 1000 / (max - min episode return), others 1)",
        default="auto",
    )
    run_dir: str = option("directory for config, metrics, checkpoints", default="runs/finetune")

    def __post_init__(self):
        super().__post_init__()
        if self.edis:
            if self.augment not in ("none", "edis"):
                raise ValueError(f"--edis conflicts with augment={self.augment!r}")
            object.__setattr__(self, "augment", "edis")
        check(
            self,
            positive=("num_envs", "utd", "chunk", "num_critics", "num_samples", "generate_size")
            + ("model_epochs", "rollout_starts", "rollout_horizon")
            + ("rollout_every", "diffusion_width", "diffusion_steps", "diffusion_batch")
            + ("num_generated", "refresh_every", "energy_steps", "energy_examples"),
            non_negative=("steps", "pretrain_steps", "warmup", "buffer_size", "dataset_size")
            + ("pretrain_eval_every", "eval_every", "checkpoint_every"),
            unit=("offline_ratio", "synthetic_ratio", "generated_ratio"),
            choices={
                "algo": ALGOS,
                "augment": (*AUGMENTS, *generators.MODES),
                "precision": tuple(diffusion.PRECISIONS),
                "max_target_backup": ("auto", "on", "off"),
                "iql_actor_decay": ("auto", "on", "off"),
                "initializer": ("auto", *nets.INITIALIZERS),
                "online_sampling": ("auto", "mix", "union"),
                "model_termination": dynamics.TERMINATIONS,
            },
            at_least={"sampler_steps": 2},
        )
        if self.algo == "td3bc" and self.log_std_init is not None:
            raise ValueError(
                "log_std_init applies to calql, cql and iql (td3bc's policy is deterministic)"
            )
        if self.offline_ratio < 1 and self.warmup < 1:
            raise ValueError(
                "warmup must be >= 1 when batches draw online data (offline_ratio < 1)"
            )
        if self.augment == "edis" and self.generated_ratio < 1 and self.warmup < 1:
            raise ValueError("edis needs warmup >= 1 (the first refit uses online data)")
        if self.reward_scale != "auto":
            try:
                float(self.reward_scale)
            except ValueError:
                raise ValueError(
                    f"reward_scale must be a number or auto, got {self.reward_scale!r}"
                ) from None

    def setting(self, name: str):
        """A generative setting's value: as given, else the augmentation's default."""
        value = getattr(self, name)
        return AUGMENT_DEFAULTS.get(self.augment, {}).get(name) if value is None else value

    def model_augment(self, obs_dim: int, action_dim: int, terminated=None) -> ModelAugment | None:
        """World-model augmentation settings, or None. ``terminated``: the env's termination
        function of observations (``env.terminated``), for the model's next states."""
        if self.augment not in AUGMENTS[1:]:
            return None
        return ModelAugment(
            self.augment,
            dynamics.Config(
                obs_dim,
                action_dim,
                max_epochs=self.model_epochs,
                termination=self.model_termination,
            ),
            terminated=terminated if self.model_termination == "env" else None,
            fraction=self.augment_fraction,
            rollout_starts=self.rollout_starts,
            rollout_horizon=self.rollout_horizon,
            rollout_every=self.rollout_every,
            penalty=self.mopo_penalty,
            unknown_returns=self.algo == "calql",
        )

    def diffusion_augment(
        self, obs_dim: int, action_dim: int, num_rows: int
    ) -> DiffusionAugment | None:
        """SynthER / EDIS settings for an offline dataset of ``num_rows`` rows, or None."""
        if self.augment not in generators.MODES:
            return None
        sampler = edm.SamplerConfig(num_steps=self.sampler_steps)
        model = diffusion.Config.for_transitions(
            obs_dim,
            action_dim,
            width=self.setting("diffusion_width"),
            num_train_steps=self.diffusion_steps,
            precision=self.precision,
            sampler=sampler,
        )
        energies = energy.Config(obs_dim, action_dim, sampler=sampler)
        return DiffusionAugment(
            self.augment,
            model,
            train_steps=self.diffusion_steps,
            batch_size=self.diffusion_batch
            or (diffusion.default_batch_size(num_rows) if self.augment == "synther" else 256),
            num_samples=self.setting("num_generated"),
            refresh_every=self.refresh_every,
            energy_config=energies if self.augment == "edis" else None,
            energy_steps=self.energy_steps,
            energy_examples=self.energy_examples,
            energies=tuple(self.energies),
            guidance_scale=self.guidance_scale,
            guidance_clip=self.guidance_clip,
            unknown_returns=self.algo == "calql",
        )

    def hparams(self):
        """The configured agent's ``HParams`` (the values a vmapped sweep may vary)."""
        actor_lr = DEFAULT_ACTOR_LR[self.algo] if self.actor_lr is None else self.actor_lr
        lrs = dict(actor_lr=actor_lr, critic_lr=self.critic_lr, gamma=self.gamma)
        if self.algo in ("calql", "cql"):
            return cql.HParams(**lrs, cql_alpha=self.cql_alpha, target_gap=self.target_gap)
        if self.algo == "iql":
            return iql.HParams(
                **lrs, value_lr=self.critic_lr, expectile=self.expectile, beta=self.beta
            )
        return td3bc.HParams(**lrs, bc_alpha=self.bc_alpha)

    def agent_spec(self, obs_dim: int, action_dim: int):
        """(algorithm module, static Config, HParams) of the configured agent."""
        hidden = tuple(self.hidden)
        # "auto" / None leave the agent's own defaults, the reference code's
        nets_kw = {} if self.initializer == "auto" else {"initializer": self.initializer}
        if self.algo in ("calql", "cql"):
            backup = self.max_target_backup
            if self.log_std_init is not None:
                nets_kw["log_std_offset"] = self.log_std_init
            config = cql.Config(
                obs_dim,
                action_dim,
                hidden,
                num_critics=self.num_critics,
                num_samples=self.num_samples,
                calibrated=self.algo == "calql",
                max_target_backup=backup == "on" or (backup == "auto" and self.algo == "calql"),
                lagrange=self.lagrange,
                **nets_kw,
            )
            return cql, config, self.hparams()
        if self.algo == "iql":
            decay = self.iql_actor_decay == "on" or (
                self.iql_actor_decay == "auto" and not self.steps
            )
            pretrain_updates = math.ceil(self.pretrain_steps / self.chunk) * self.chunk
            if self.log_std_init is not None:
                nets_kw["log_std_init"] = self.log_std_init
            config = iql.Config(
                obs_dim,
                action_dim,
                hidden,
                self.num_critics,
                actor_decay_steps=pretrain_updates if decay else 0,
                **nets_kw,
            )
            return iql, config, self.hparams()
        config = td3bc.Config(obs_dim, action_dim, hidden, self.num_critics, **nets_kw)
        return td3bc, config, self.hparams()


def load_dataset(config: FinetuneConfig) -> tuple[Transition, dict]:
    """The configured dataset as transitions with MC returns (generated if it is a kind)."""
    from rlgen.train import generate

    path = Path(config.dataset)
    if not path.exists():
        if config.dataset not in generate.KINDS:
            raise ValueError(
                f"dataset {config.dataset!r} is neither a file nor one of "
                f"{', '.join(generate.KINDS)}"
            )
        path = generate.generate(
            config.env,
            config.dataset,
            config.generate_size,
            config.seed,
            config.data_dir,
            backend=config.backend,
            progress=config.progress,
        )
    arrays, meta = datasets.load(path)
    data = datasets.to_transitions(arrays, config.gamma)
    if meta.get("synthetic"):  # generated rows (rlgen synther upsample) have no MC return
        data = data.replace(mc_return=jnp.full_like(data.mc_return, UNKNOWN_RETURN))
    else:  # IQL's reward scale, from whole episodes (as the MC returns) before subsampling
        meta = {**meta, "episode_return_range": episode_return_range(data)}
    if config.dataset_size and config.dataset_size < len(data):
        rows = np.random.default_rng(config.seed).choice(
            len(data), config.dataset_size, replace=False
        )
        data = jax.tree.map(lambda x: x[np.sort(rows)], data)
    return data, {**meta, "path": str(path), "rows": len(data)}


def episode_return_range(data: Transition) -> float:
    """max - min undiscounted return over the dataset's trajectories."""
    ends = np.array((data.terminal > 0) | (data.truncated > 0))
    ends[-1] = True
    ids = np.asarray(trajectory_ids(ends))
    returns = np.bincount(ids, weights=np.asarray(data.reward, np.float64))
    return float(returns.max() - returns.min())


def reward_scale(config: FinetuneConfig, data: Transition, meta: dict | None = None) -> float:
    """The configured reward multiplier (``auto``: IQL's return-range normalisation, from the
    whole dataset's episodes as ``load_dataset`` measured them before any subsampling, or the
    source dataset's for a synthetic file)."""
    if config.reward_scale != "auto":
        return float(config.reward_scale)
    if config.algo != "iql":
        return 1.0
    meta = meta or {}
    spread = (
        meta.get("source_episode_return_range")
        or meta.get("episode_return_range")
        or episode_return_range(data)
    )
    return 1000.0 / max(spread, 1e-6)


class FinetuneRun:
    """Compiled phases of one multi-seed offline-to-online run, and the host loop driving them."""

    def __init__(
        self,
        config: FinetuneConfig,
        env=None,
        dataset: Transition | None = None,
        devices=None,
        sweep: dict | None = None,
    ):
        """``sweep``: values per agent hyperparameter (``{"cql_alpha": (1, 5)}``), vmapped
        with the seeds in one program (:mod:`rlgen.train.sweep`); results per lane, point-major."""
        self.config = c = config
        self.env = envs.make(c.env, backend=c.backend) if env is None else env
        self.vec_env = envs.AutoReset(self.env)
        if dataset is None:
            dataset, self.dataset_info = load_dataset(c)
        else:
            self.dataset_info = {"rows": len(dataset)}
        if (dataset.obs_dim, dataset.action_dim) != (
            self.env.observation_size,
            self.env.action_size,
        ):
            raise ValueError(
                datasets.dimension_mismatch_message(
                    c.env,
                    (dataset.obs_dim, dataset.action_dim),
                    (self.env.observation_size, self.env.action_size),
                )
            )
        self.reward_scale = reward_scale(c, dataset, self.dataset_info)
        dataset = dataset.replace(
            reward=dataset.reward * self.reward_scale,
            mc_return=dataset.mc_return * self.reward_scale,
        )
        module, agent_config, hp = c.agent_spec(self.env.observation_size, self.env.action_size)
        self.grid = sweeps.Grid.of(sweep, c)
        self.lanes = c.seeds * len(self.grid)
        self.sharding = seed_sharding(self.lanes, devices)
        self.offline = put(replay.from_transitions(dataset), replicated(self.sharding))
        self.agent = module.make_agent(agent_config, hp)
        self.lane_hp = put(self.grid.lane_hparams(hp, c.seeds), self.sharding)
        if c.algo == "td3bc" and c.obs_norm:
            self.agent = with_obs_normalizer(
                self.agent, dataset.obs.mean(0), dataset.obs.std(0) + 1e-3
            )
        self.max_episode_steps = getattr(self.env, "max_episode_steps", 1000)
        self.warmup_blocks = math.ceil(c.warmup / c.num_envs) if c.steps else 0
        online_steps = max(c.steps - self.warmup_blocks * c.num_envs, 0)
        self.num_chunks = math.ceil(online_steps / (c.chunk * c.num_envs))
        self.total_steps = (self.warmup_blocks + self.num_chunks * c.chunk) * c.num_envs
        self.pretrain_total = math.ceil(c.pretrain_steps / c.chunk) * c.chunk
        buffer_size = c.buffer_size or self.total_steps + c.num_envs * self.max_episode_steps
        self.loop = LoopConfig(
            c.num_envs,
            c.utd,
            c.batch_size,
            buffer_size,
            reward_scale=self.reward_scale,
            mc_returns=c.algo == "calql",
            gamma=c.gamma,
            max_episode_steps=self.max_episode_steps,
        )
        dims = (self.env.observation_size, self.env.action_size)
        self.model_aug = c.model_augment(*dims, self.env.terminated)
        self.diffusion_aug = c.diffusion_augment(*dims, len(dataset))
        self.model = None  # per-seed world models, fitted at the start of ``run``
        self.normalizer = None  # EDIS fits its own on offline + online data at each refit
        if c.augment == "synther":  # the diffusion model's z-scoring, from the offline data
            flat = diffusion.flatten(dataset)
            self.normalizer = put(diffusion.fit_normalizer(flat), replicated(self.sharding))
        self.pretrain_counts, self.counts = self._batch_counts()
        self.run_dir = Path(c.run_dir)
        self._compile()

    @property
    def synthetic_capacity(self) -> int | None:
        """Rows of each seed's synthetic buffer, or None when the run has none."""
        if self.model_aug and self.model_aug.mode == "model-rollouts":
            return self.model_aug.capacity
        return self.diffusion_aug.num_samples if self.diffusion_aug else None

    def _batch_counts(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Rows per source in pretraining batches (offline[, synthetic]) and fine-tuning
        batches (offline[, synthetic], online)."""
        c = self.config
        online = split_counts(c.batch_size, (c.offline_ratio, 1.0 - c.offline_ratio))
        if self.synthetic_capacity is None:
            union = c.online_sampling == "union" or (
                c.online_sampling == "auto" and c.algo == "iql"
            )
            return (c.batch_size,), () if union else online
        if c.augment == "edis":  # generated rows replace direct replay of the offline data
            g = c.generated_ratio
            return (c.batch_size, 0), split_counts(c.batch_size, (0.0, g, 1.0 - g))
        r = c.setting("synthetic_ratio")  # pretraining only: the buffer is not replayed online
        return split_counts(c.batch_size, (1.0 - r, r)), (online[0], 0, online[1])

    def _compile(self) -> None:
        agent, env, vec_env, loop, c = self.agent, self.env, self.vec_env, self.loop, self.config

        aug, gen = self.model_aug, self.diffusion_aug
        transform = next_state_transform(aug) if aug and aug.mode == "model" else None
        capacity = self.synthetic_capacity

        def init(key, hp):
            run = init_run_state(key, with_hparams(agent, hp), vec_env, loop)
            if capacity:
                obs_dim, action_dim = agent.obs_dim, agent.action_dim
                run = run.replace(synthetic=replay.init(capacity, obs_dim, action_dim))
            if gen and gen.mode == "edis":  # created once, trained on at every refit
                k_run, k_energies = jax.random.split(run.key)
                run = run.replace(key=k_run, energies=generators.init_energies(gen, k_energies))
            return run

        def refit(run, offline, normalizer):
            key, k_fit = jax.random.split(run.key)
            if gen.mode == "synther":
                buffer, metrics = generators.synther_buffer(gen, k_fit, offline, normalizer)
                return run.replace(key=key, synthetic=buffer), metrics
            args = (offline, run.buffer, agent, run.agent, run.energies)
            buffer, energies, metrics = generators.edis_buffer(gen, k_fit, *args)
            return run.replace(key=key, synthetic=buffer, energies=energies), metrics

        def pretrain(run, offline, model):
            run, metrics = pretrain_chunk(
                run, (offline,), self.pretrain_counts, agent, c.chunk, transform, model
            )
            return run, metrics, health.finite_flags(metrics, run.agent)

        def refresh_rollouts(run, offline, model):
            key, k_rollout = jax.random.split(run.key)
            synthetic = rollout_buffer(aug, model, agent, run.agent, offline, k_rollout)
            return run.replace(key=key, synthetic=synthetic), synthetic.size

        def collect(run):
            return warmup_chunk(run, vec_env, self.warmup_blocks, agent, self.reward_scale)

        def finetune(run, offline):
            run, metrics = train_chunk(run, agent, vec_env, loop, c.chunk, (offline,), self.counts)
            run, metrics = episode_metrics(run, metrics)
            return run, metrics, health.finite_flags(metrics, run.agent)

        def evaluate_seed(agent_state, key):
            return evaluate(agent, agent_state, env, key, c.eval_episodes, self.max_episode_steps)

        def per_seed(fn, in_axes=0, donate=True):
            """jit(vmap(fn)) over the sharded seed axis; outputs keep that sharding."""
            mapped = seed_map(fn, self.sharding, in_axes)
            return jax.jit(mapped, donate_argnums=0 if donate else (), out_shardings=self.sharding)

        self.init_fn = per_seed(init, donate=False)
        self.pretrain_fn = per_seed(pretrain, (0, None, 0))
        self.refresh_fn = per_seed(refresh_rollouts, (0, None, 0))
        self.refit_fn = per_seed(refit, (0, None, None))
        self.collect_fn = per_seed(collect)
        self.finetune_fn = per_seed(finetune, (0, None))
        self.eval_fn = per_seed(evaluate_seed, donate=False)

    def _traced(self, name: str):
        """A traced setting: its swept value per lane, else the config's."""
        if name in self.grid.names:
            return put(self.grid.lane_values(name, self.config.seeds), self.sharding)
        return getattr(self.config, name)

    def lane_keys(self, salt: int = 0) -> jax.Array:
        """One key per lane (seed i of every sweep point gets seed i's key)."""
        c = self.config
        return seed_keys(c.seed, c.seeds, self.sharding, salt, repeats=len(self.grid))

    def init_state(self):
        return self.init_fn(self.lane_keys(), self.lane_hp)

    def evaluate(self, state, phase: str, step: int) -> dict[str, np.ndarray]:
        """Per-seed evaluation returns and D4RL-normalised scores (also recorded in
        ``self.eval_log``, i.e. ``evaluations.jsonl``)."""
        salt = 1 + step + (self.pretrain_total if phase == "finetune" else 0)
        keys = self.lane_keys(salt)
        return self.eval_log.add(phase, step, fetch(self.eval_fn(state.agent, keys)))

    def run(self, until: int | None = None) -> dict:
        """Pretrain, then fine-tune to ``config.steps`` env steps (or stop after the chunk that
        reaches ``until`` fine-tuning steps). Final state in ``self.state``."""
        c = self.config
        until = self.total_steps if until is None else min(until, self.total_steps)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        mngr = checkpoint.manager(self.run_dir / "checkpoints")
        resumed = checkpoint.will_resume(mngr, c.resume)  # before anything is written
        write_json(self.run_dir / "config.json", dataclasses.asdict(c))
        write_json(
            self.run_dir / "system.json",
            {**runinfo.describe(), "dataset": self.dataset_info, "reward_scale": self.reward_scale},
        )
        start = time.perf_counter()
        state = self.init_state()
        if resumed:
            state = checkpoint.restore(mngr, state)
        self.eval_log = EvaluationLog(self.run_dir, c.env, resume=resumed)
        self.point_logs = sweeps.PointLogs(self.run_dir, self.grid, c.seeds)
        model_time = self._fit_models() if self.model_aug else 0.0
        if c.augment == "synther" and int(fetch(state.synthetic.size)[0]) == 0:
            gen_start = time.perf_counter()
            state, metrics = self.refit_fn(state, self.offline, self.normalizer)
            model_time = time.perf_counter() - gen_start
            write_json(self.run_dir / "synther.json", summarize(fetch(metrics)))
        state, offline_eval = self._pretrain(state, mngr)
        pretrain_time = time.perf_counter() - start
        if c.steps:
            state, final_eval = self._finetune(state, mngr, until, offline_eval)
        else:
            final_eval = offline_eval
        self.point_logs.close()
        results = {
            "algo": c.algo,
            "env": c.env,
            "dataset": self.dataset_info,
            "pretrain_updates": int(fetch(state.updates)[0]),
            "env_steps_per_seed": env_steps(state),
            "offline_return_per_seed": offline_eval["eval_return"].tolist(),
            "offline_score_per_seed": offline_eval["eval_score"].tolist(),
            "offline_score_mean": float(offline_eval["eval_score"].mean()),
            "final_return_per_seed": final_eval["eval_return"].tolist(),
            "final_score_per_seed": final_eval["eval_score"].tolist(),
            "final_score_mean": float(final_eval["eval_score"].mean()),
            "evaluations": self.eval_log.records(),
            "model_fit_time_s": model_time,
            "pretrain_time_s": pretrain_time,
            "wall_time_s": time.perf_counter() - start,
        }
        if self.grid.names:  # lanes are point-major: point p's seeds are p*seeds ... (p+1)*seeds-1
            results["sweep"] = {"seeds": c.seeds, "points": self.grid.points}
        write_json(self.run_dir / "results.json", results)
        self.state = state
        return results

    def _fit_models(self) -> float:
        """Fit one world model per seed on the dataset (deterministic, so a resumed run refits
        the same models); returns the time taken."""
        start = time.perf_counter()
        keys = self.lane_keys(salt=2**31)
        data = self.offline.data
        self.model = jax.block_until_ready(
            fit_models(keys, self.model_aug.model, data, self.sharding)
        )
        return time.perf_counter() - start

    def _refit(self, state):
        """EDIS: refit every seed's generator and refill its synthetic buffer (timed)."""
        start = time.perf_counter()
        state, metrics = self.refit_fn(state, self.offline, self.normalizer)
        row = summarize(fetch(metrics))
        row["refit_time_s"] = time.perf_counter() - start
        return state, row

    def _pretrain(self, state, mngr):
        c = self.config
        updates = int(fetch(state.updates)[0])
        logger = distributed.logger(
            self.run_dir / "pretrain", self.pretrain_total, c.progress, "updates", "pretrain"
        )
        logger.bar.update(updates)
        evaluation = None
        try:
            while updates < self.pretrain_total:
                row = {}
                rollouts = self.model_aug and self.model_aug.mode == "model-rollouts"
                if rollouts and rollouts_due(self.model_aug.rollout_every, c.chunk, updates):
                    state, valid_rows = self.refresh_fn(state, self.offline, self.model)
                    row.update(summarize({"rollout_rows": fetch(valid_rows)}))
                state, metrics, flags = self.pretrain_fn(state, self.offline, self.model)
                prev, updates = updates, int(fetch(state.updates)[0])
                health.check(fetch(flags), updates)
                per_lane = fetch(metrics)
                row.update(summarize(per_lane))
                self.point_logs.log("pretrain", updates, per_lane, "updates")
                last = updates >= self.pretrain_total
                if crossed(c.pretrain_eval_every, prev, updates) or last:
                    evaluation = self.evaluate(state, "pretrain", updates)
                    row.update(summarize(evaluation))
                    checkpoint.save(mngr, updates, state)
                logger.log(updates, row, updates - prev, c.chunk * self.lanes, self.lanes)
        finally:
            logger.close()
        if evaluation is None:  # nothing to pretrain, or resumed past pretraining
            evaluation = self.evaluate(state, "pretrain", updates)
        return state, evaluation

    def _finetune(self, state, mngr, until: int, offline_eval: dict):
        c = self.config
        step = env_steps(state)
        updates = int(fetch(state.updates)[0])
        logger = distributed.logger(
            self.run_dir / "finetune", self.total_steps, c.progress, description="fine-tune"
        )
        logger.bar.update(step)
        last = (0, offline_eval)
        try:
            if step == 0:
                self.evaluate(state, "finetune", 0)
                logger.log(0, summarize(offline_eval), 0, 0, self.lanes)
                if c.algo == "td3bc":
                    state = _set_hparam(state, "bc_weight", self._traced("finetune_bc_weight"))
                if c.algo == "iql":  # the actor lr's decay covers pretraining only
                    state = _set_hparam(state, "actor_lr_decay", 0.0)
                state = self.collect_fn(state) if self.warmup_blocks else state
                step = env_steps(state)
                logger.bar.update(step)  # the warm-up's steps
                self._check_online_rows(state)
                if c.augment == "edis":
                    state, metrics = self._refit(state)
                    logger.log(step, metrics, 0, 0, self.lanes)
            while step < until:
                state, metrics, flags = self.finetune_fn(state, self.offline)
                prev, step = step, env_steps(state)
                health.check(fetch(flags), step)
                per_lane = fetch(metrics)
                row = summarize(per_lane)
                self.point_logs.log("finetune", step, per_lane)
                if c.augment == "edis" and crossed(c.refresh_every, prev, step) and step < until:
                    state, refit_metrics = self._refit(state)
                    row.update(refit_metrics)
                if crossed(c.eval_every, prev, step) or step >= until:
                    last = (step, self.evaluate(state, "finetune", step))
                    row.update(summarize(last[1]))
                logger.log(step, row, step - prev, c.chunk * c.utd * self.lanes, self.lanes)
                if crossed(c.checkpoint_every, prev, step) or step >= until:
                    checkpoint.save(mngr, updates + step, state)
        finally:
            logger.close()
        final = last[1] if last[0] == step else self.evaluate(state, "finetune", step)
        return state, final

    def _check_online_rows(self, state) -> None:
        """Cal-QL adds online episodes when they end: batches that draw online rows need at
        least one finished episode per seed after the warm-up."""
        empty = np.flatnonzero(fetch(state.buffer.size) == 0)
        draws_online = not self.counts or self.counts[-1] > 0  # union sampling, or mixed
        if self.loop.mc_returns and draws_online and empty.size:
            raise ValueError(
                f"no online episode finished during the warm-up ({self.config.warmup} env "
                f"steps) in seed(s) {empty.tolist()}; Cal-QL adds episodes to the online "
                "buffer when they end, so raise --warmup (episodes last up to "
                f"{self.max_episode_steps} steps)"
            )


def rollouts_due(every: int, chunk: int, updates: int) -> bool:
    """Whether the pretraining chunk starting at ``updates`` refreshes the model rollouts first:
    at the start, and after each chunk that passed a multiple of ``every`` updates."""
    return crossed(every, updates - chunk, updates)


def _set_hparam(state, name: str, value):
    """Replace one hyperparameter of every lane's agent (e.g. TD3+BC's BC weight online) with
    ``value``: one number, or one per lane."""
    hp = state.agent.hp
    new = getattr(hp, name) * 0 + value
    return state.replace(agent=state.agent.replace(hp=hp.replace(**{name: new})))
