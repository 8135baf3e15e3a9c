"""SynthER (Lu et al. 2023): diffusion upsampling of datasets and synthetic experience replay.

**Offline** (``rlgen synther upsample``, :func:`upsample`): fit the diffusion model of
:mod:`rlgen.gen.diffusion` on a dataset, sample ``num_samples`` transitions in fixed-size chunks
and write them as a D4RL-layout file (atomic). Generated rows are independent transitions, not
trajectories: ``timeouts`` are all 0 and ``terminals`` come from the generated done flag. With
``next_observations`` present, :func:`rlgen.data.datasets.to_transitions` sees a trajectory
break at (almost) every row, so each row's ``mc_return`` is its own reward -- meaningless for
Cal-QL. The file's metadata carries ``synthetic = 1`` so loaders can tell: they should set
``mc_return`` to :data:`rlgen.data.episodes.UNKNOWN_RETURN` (-inf, which turns the Cal-QL bound
off for those rows) and take IQL's reward scale from ``source_episode_return_range``.

**Online** (``rlgen train synther``, :class:`SyntherRun`): SAC at UTD 20 whose batches hold
``synthetic_ratio`` generated rows and real rows for the rest. Every ``retrain_every`` env
steps (checked between chunks), each seed's generator is refit from a fresh init (the cosine
learning rate ends at 0) on that seed's whole replay buffer and regenerates the seed's
synthetic buffer, all seeds in one ``jit(vmap(...))``. Until the first fit batches are all
real (the synthetic share drawn from the replay, in the same compiled program), as the
reference code, which first fits at 10k steps.
Training batches are drawn from the filled rows (:func:`rlgen.train.generators.train_diffusion`)
and the normaliser is fitted on them only (:func:`masked_normalizer`), so the growing buffer
never recompiles.
Synthetic rows carry ``mc_return = UNKNOWN_RETURN``. The synthetic buffer is part of the run
state, so checkpoints and resume cover it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rlgen import config as flags
from rlgen import envs, runinfo
from rlgen.config import check, option
from rlgen.data import datasets, replay
from rlgen.data.episodes import UNKNOWN_RETURN
from rlgen.data.mixer import split_counts
from rlgen.data.normalize import Normalizer
from rlgen.data.replay import ReplayBuffer
from rlgen.gen import diffusion, edm, fidelity
from rlgen.train.generators import train_diffusion
from rlgen.train.logger import summarize
from rlgen.train.runner import OnlineConfig, OnlineRun, crossed, enable_compilation_cache


def masked_normalizer(buffer: ReplayBuffer, eps: float = 1e-6) -> Normalizer:
    """``diffusion.fit_normalizer`` of the flat transitions in the valid rows ``[0, size)`` of a
    buffer; ``size`` may be traced, so one compiled program serves every fill level."""
    flat = diffusion.flatten(buffer.data)
    valid = (jnp.arange(flat.shape[0]) < buffer.size)[:, None]
    count = jnp.maximum(buffer.size, 1).astype(jnp.float32)
    mean = jnp.where(valid, flat, 0.0).sum(0) / count
    std = jnp.sqrt(jnp.where(valid, (flat - mean) ** 2, 0.0).sum(0) / count)
    std = jnp.where(std < eps, 1.0, std)
    raw = jnp.arange(flat.shape[1]) == flat.shape[1] - 1  # the terminal dim stays raw
    return Normalizer(mean=jnp.where(raw, 0.0, mean), std=jnp.where(raw, 1.0, std))


# --------------------------------------------------------------------------------------------
# Offline upsampling


@dataclasses.dataclass(frozen=True)
class UpsampleConfig:
    """Generator, training and sampling settings of ``rlgen synther upsample`` (SynthER's
    offline defaults; a generated dataset's budgets as in ``rlgen finetune``)."""

    width: int = option("denoiser width (SynthER: 2048 offline)", default=2048)
    train_steps: int = option("diffusion training steps", default=100_000)
    batch_size: int | None = option(
        "diffusion training batch (default: SynthER's 1024 from 800k rows, else 256)",
        default=None,
    )
    learning_rate: float = option("AdamW peak learning rate (cosine decay)", default=3e-4)
    precision: str = option("denoiser matmuls: fp32, tf32 or bf16", default="fp32")
    sampler_steps: int = option("stochastic Heun steps per sample", default=128)
    sample_chunk: int = option(
        "rows per compiled sampling call (bounds device memory)", default=16_384
    )
    log_every: int = option("training steps per compiled call and progress line", default=10_000)
    seed: int = option("seed of the generator's init, training and sampling", default=0)
    fidelity_rows: int = option(
        "rows checked against the simulator for the fidelity report (0: none)", default=1_000
    )
    dataset_size: int = option("rows of a generated ENV-KIND dataset", default=1_000_000)
    dataset_seed: int = option("seed of a generated ENV-KIND dataset", default=0)
    backend: str = option("physics for dataset generation: auto, mjx or mujoco", default="auto")
    data_dir: str | None = option("dataset cache (default: $RLGEN_DATA or ~/.cache)", default=None)
    progress: bool = option("print progress", default=True)

    def __post_init__(self):
        check(
            self,
            positive=("width", "train_steps", "batch_size", "sample_chunk", "log_every")
            + ("dataset_size",),
            non_negative=("fidelity_rows",),
            choices={"precision": tuple(diffusion.PRECISIONS)},
            at_least={"sampler_steps": 2},
        )

    def diffusion_config(self, obs_dim: int, action_dim: int) -> diffusion.Config:
        return diffusion.Config.for_transitions(
            obs_dim,
            action_dim,
            width=self.width,
            precision=self.precision,
            learning_rate=self.learning_rate,
            num_train_steps=self.train_steps,
            sampler=edm.SamplerConfig(num_steps=self.sampler_steps),
        )

    def train_batch(self, num_rows: int) -> int:
        """``batch_size``, else SynthER's batch for a dataset of ``num_rows``."""
        return self.batch_size or diffusion.default_batch_size(num_rows)


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[rlgen synther] {msg}", flush=True)


def resolve_dataset(name: str | os.PathLike, config: UpsampleConfig) -> tuple[Path, str | None]:
    """The file of ``name`` and its env when the name gives it: an existing D4RL / Minari file,
    or ``ENV-KIND`` (e.g. ``hopper-medium-replay``), generated and cached on first use."""
    from rlgen.train import generate

    path = Path(name)
    if path.exists():
        return path, None
    env, _, kind = str(name).partition("-")
    if env not in envs.ENVS or kind not in generate.KINDS:
        raise ValueError(
            f"dataset {str(name)!r} is neither a file nor ENV-KIND with ENV one of "
            f"{', '.join(envs.ENVS)} and KIND one of {', '.join(generate.KINDS)}"
        )
    path = generate.generate(
        env,
        kind,
        config.dataset_size,
        config.dataset_seed,
        config.data_dir,
        backend=config.backend,
        progress=config.progress,
    )
    return path, env


def upsample(
    dataset: str | os.PathLike,
    num_samples: int,
    out_path: str | os.PathLike,
    config: UpsampleConfig | None = None,
) -> Path:
    """Fit SynthER's diffusion model on ``dataset`` (see :func:`resolve_dataset`) and write
    ``num_samples`` generated transitions to ``out_path`` (``.hdf5``/``.h5``/``.npz``).

    Metadata: ``synthetic = 1``, the source, generator and sampler settings, losses, timings,
    a fidelity report when the env is known, versions and device. Returns the path.
    """
    from rlgen.train.finetune import episode_return_range

    c = config or UpsampleConfig()
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    path, env = resolve_dataset(dataset, c)
    arrays, source_meta = datasets.load(path)
    data = datasets.to_transitions(arrays)
    env = env or source_meta.get("env")
    gen_config = c.diffusion_config(data.obs_dim, data.action_dim)
    batch_size = c.train_batch(len(data))
    _log(
        c.progress,
        f"fitting a width-{c.width} denoiser on {len(data)} rows of {path}, batch {batch_size}",
    )

    key_init, key_sample = jax.random.split(jax.random.key(c.seed))
    state = diffusion.init(key_init, gen_config, diffusion.fit_normalizer(diffusion.flatten(data)))
    buffer = replay.from_transitions(data)
    start, done, losses = time.perf_counter(), 0, []
    while done < c.train_steps:
        steps = min(c.log_every, c.train_steps - done)
        state, metrics = train_diffusion(state, (buffer,), steps, batch_size)
        done += steps
        losses.append(float(metrics["loss"].mean()))
        rate = done / (time.perf_counter() - start)
        _log(c.progress, f"train {done}/{c.train_steps} loss {losses[-1]:.4f} ({rate:.0f} steps/s)")
    train_time = time.perf_counter() - start

    start = time.perf_counter()
    generated = _sample_to_host(state, key_sample, num_samples, c)
    sample_time = time.perf_counter() - start
    _log(c.progress, f"sampled {num_samples} rows in {sample_time:.1f} s")

    meta = {
        "synthetic": 1,
        "generator": "synther",
        "source_dataset": str(dataset),
        "source_path": str(path),
        "source_rows": len(data),
        "source_episode_return_range": episode_return_range(data),
        "size": num_samples,
        "width": c.width,
        "train_steps": c.train_steps,
        "batch_size": batch_size,
        "learning_rate": c.learning_rate,
        "precision": c.precision,
        "sampler_steps": c.sampler_steps,
        "sample_chunk": c.sample_chunk,
        "seed": c.seed,
        "final_loss": losses[-1],
        "train_time_s": train_time,
        "sample_time_s": sample_time,
        "versions": runinfo.versions(),
        "device": runinfo.device_info(),
    }
    if env is not None:
        meta["env"] = env
    if env in fidelity.LAYOUT and c.fidelity_rows:
        meta["fidelity"] = report = _fidelity(env, generated, data, c)
        mse = {k: report[k]["next_obs_mse"] for k in ("generated", "real", "shuffled")}
        _log(c.progress, f"one-step next_obs MSE against the simulator: {mse}")
    out = datasets.save_d4rl(out_path, generated, meta)
    _log(c.progress, f"wrote {out}")
    return out


def _sample_to_host(
    state: diffusion.State, key: jax.Array, num_samples: int, c: UpsampleConfig
) -> dict[str, np.ndarray]:
    """``num_samples`` generated rows in D4RL layout, one ``sample_chunk`` per compiled call
    (the last one cut short), copying each chunk to the host while the next is sampled."""
    obs_dim, action_dim = state.config.obs_dim, state.config.action_dim
    out = {
        "observations": np.empty((num_samples, obs_dim), np.float32),
        "actions": np.empty((num_samples, action_dim), np.float32),
        "rewards": np.empty((num_samples,), np.float32),
        "next_observations": np.empty((num_samples, obs_dim), np.float32),
        "terminals": np.empty((num_samples,), bool),
        "timeouts": np.zeros((num_samples,), bool),
    }
    chunk = min(c.sample_chunk, num_samples)
    num_chunks = math.ceil(num_samples / chunk)

    def launch(i):
        return diffusion.generate(state, jax.random.fold_in(key, i), chunk, chunk_size=chunk)

    pending = launch(0)
    for i in range(num_chunks):
        following = launch(i + 1) if i + 1 < num_chunks else None
        rows, pending = jax.device_get(pending), following
        part = slice(i * chunk, min((i + 1) * chunk, num_samples))
        n = part.stop - part.start
        out["observations"][part] = rows.obs[:n]
        out["actions"][part] = rows.action[:n]
        out["rewards"][part] = rows.reward[:n]
        out["next_observations"][part] = rows.next_obs[:n]
        out["terminals"][part] = rows.terminal[:n] > 0.5
    return out


def _fidelity(env: str, generated: dict, real, c: UpsampleConfig) -> dict:
    """:func:`rlgen.gen.fidelity.fidelity_report` of (up to 100k) generated rows, as JSON."""
    rows = slice(0, 100_000)
    gen = datasets.to_transitions({k: v[rows] for k, v in generated.items()})
    report = fidelity.fidelity_report(env, gen, real, c.fidelity_rows, c.seed)
    return json.loads(json.dumps(report, default=lambda a: np.asarray(a).tolist()))


def add_upsample_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``rlgen synther upsample``."""
    parser.add_argument(
        "--dataset",
        required=True,
        help="ENV-KIND (e.g. hopper-medium-replay; generated and cached on first use) or a "
        "D4RL / Minari file",
    )
    parser.add_argument("--samples", type=int, default=5_000_000, help="transitions to generate")
    parser.add_argument("--out", required=True, help="output file (.hdf5, .h5 or .npz)")
    flags.add_arguments(parser, UpsampleConfig)


def upsample_cli(args: argparse.Namespace) -> None:
    """``rlgen synther upsample``."""
    enable_compilation_cache()
    config = flags.from_arguments(UpsampleConfig, args)
    path = upsample(args.dataset, args.samples, args.out, config)
    print(f"wrote {args.samples} synthetic transitions to {path}")


# --------------------------------------------------------------------------------------------
# Online SynthER


@dataclasses.dataclass(frozen=True)
class SyntherConfig(OnlineConfig):
    """Online SynthER: SAC on half-real, half-synthetic batches (``rlgen train synther``)."""

    utd: int = option("critic updates per env step (update-to-data ratio)", default=20)
    run_dir: str = option("directory for config, metrics, checkpoints", default="runs/synther")
    synthetic_ratio: float = option("share of each batch from the synthetic buffer", default=0.5)
    retrain_every: int = option(
        "env steps between generator refits (the first at this step; batches are all real "
        "until then)",
        default=10_000,
    )
    diffusion_steps: int = option("diffusion training steps per refit", default=100_000)
    diffusion_width: int = option("denoiser width (SynthER: 1024 online)", default=1024)
    diffusion_embed: int = option("noise-embedding width (SynthER: 256 online)", default=256)
    diffusion_batch: int = option("diffusion training batch (SynthER: 256 online)", default=256)
    diffusion_lr: float = option("AdamW peak learning rate (cosine decay)", default=3e-4)
    num_synthetic: int = option("synthetic transitions per refit (buffer size)", default=1_000_000)
    precision: str = option("denoiser matmuls: fp32, tf32 or bf16", default="fp32")
    sampler_steps: int = option("stochastic Heun steps per sample", default=128)
    sample_chunk: int = option("rows per sampler chunk (bounds device memory)", default=16_384)

    def __post_init__(self):
        super().__post_init__()
        check(
            self,
            positive=("retrain_every", "diffusion_steps", "diffusion_width", "diffusion_embed")
            + ("diffusion_batch", "num_synthetic", "sample_chunk"),
            unit=("synthetic_ratio",),
            choices={"precision": tuple(diffusion.PRECISIONS)},
            at_least={"sampler_steps": 2},
        )

    def diffusion_config(self, obs_dim: int, action_dim: int) -> diffusion.Config:
        return diffusion.Config.for_transitions(
            obs_dim,
            action_dim,
            width=self.diffusion_width,
            embed_dim=self.diffusion_embed,
            precision=self.precision,
            learning_rate=self.diffusion_lr,
            num_train_steps=self.diffusion_steps,
            sampler=edm.SamplerConfig(num_steps=self.sampler_steps),
        )


class SyntherRun(OnlineRun):
    """:class:`~rlgen.train.runner.OnlineRun` with a per-seed synthetic buffer refreshed by
    :meth:`after_chunk`. Logs ``diffusion_loss`` (mean over the last tenth of a refit),
    ``diffusion_grad_norm`` and ``synthetic_refresh_s`` (wall time, compile included the
    first time) in the row of the chunk that refreshed, and every refit to
    ``run_dir/refreshes.jsonl``."""

    def __init__(self, config: SyntherConfig, env=None, agent=None, devices=None, sweep=None):
        super().__init__(config, env, agent, devices, sweep)
        c = config
        self.counts = split_counts(c.batch_size, (c.synthetic_ratio, 1.0 - c.synthetic_ratio))
        obs_dim, action_dim = self.env.observation_size, self.env.action_size
        gen_config = c.diffusion_config(obs_dim, action_dim)
        tail = max(c.diffusion_steps // 10, 1)

        def empty(_):
            return replay.init(c.num_synthetic, obs_dim, action_dim)

        def refresh(buffer, old_synthetic, key):  # old_synthetic: donated, its memory reused
            k_init, k_sample = jax.random.split(key)
            state = diffusion.init(k_init, gen_config, masked_normalizer(buffer))
            state, metrics = train_diffusion(state, (buffer,), c.diffusion_steps, c.diffusion_batch)
            data = diffusion.generate(state, k_sample, c.num_synthetic, chunk_size=c.sample_chunk)
            data = data.replace(mc_return=jnp.full_like(data.mc_return, UNKNOWN_RETURN))
            summary = {f"diffusion_{k}": v[-tail:].mean() for k, v in metrics.items()}
            return replay.from_transitions(data), summary

        self.empty_synthetic_fn = jax.jit(jax.vmap(empty), out_shardings=self.sharding)
        self.refresh_fn = jax.jit(jax.vmap(refresh), donate_argnums=1)
        self._unlogged: dict[str, float] = {}

    def init_state(self):
        state = super().init_state()
        return state.replace(synthetic=self.empty_synthetic_fn(state.env_steps))

    def after_chunk(self, state, prev: int, step: int, row: dict | None = None):
        """Refit every seed's generator and regenerate its synthetic buffer whenever a
        multiple of ``retrain_every`` was crossed."""
        if crossed(self.config.retrain_every, prev, step):
            start = time.perf_counter()
            keys = jax.vmap(lambda k: jax.random.fold_in(k, step))(self.seed_keys(salt=2))
            synthetic, metrics = self.refresh_fn(state.buffer, state.synthetic, keys)
            metrics = jax.device_get(metrics)
            seconds = time.perf_counter() - start
            state = state.replace(synthetic=synthetic)
            self._unlogged = {**summarize(metrics), "synthetic_refresh_s": seconds}
            record = {"env_steps": step, "seconds": seconds}
            record.update({k: np.asarray(v).tolist() for k, v in metrics.items()})
            with open(self.run_dir / "refreshes.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        if row is not None:
            row.update(self._unlogged)
            self._unlogged = {}
        return state


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``rlgen train synther``."""
    flags.add_arguments(parser, SyntherConfig)


def train_cli(args: argparse.Namespace) -> None:
    """``rlgen train synther``."""
    enable_compilation_cache()
    config = flags.from_arguments(SyntherConfig, args)
    if getattr(args, "sweep", None):
        from rlgen.train import sweep

        make = lambda c, grid: SyntherRun(c, sweep=grid)  # noqa: E731
        sweep.cli(make, config, args.sweep)
        return
    results = SyntherRun(config).run()
    per_seed = [round(r, 1) for r in results["final_eval_return_per_seed"]]
    print(f"final evaluation return per seed: {per_seed}")
    print(f"wall time {results['wall_time_s']:.1f} s; run directory {config.run_dir}")
