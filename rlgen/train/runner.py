"""The host loop of an online run: compile the phases, run chunks, log, evaluate, checkpoint.

Only this module is Python-level control flow; every call it makes is one compiled
``jit(vmap(...))`` over the seed axis, sharded over the devices of every process (each runs this
loop; only process 0 writes files, see :mod:`rlgen.train.distributed`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from pathlib import Path

import jax
import numpy as np

from rlgen import envs, runinfo
from rlgen.agents import sac
from rlgen.agents.common import Agent, with_hparams
from rlgen.config import check, option
from rlgen.train import checkpoint, distributed, health
from rlgen.train import sweep as sweeps
from rlgen.train.distributed import fetch, put
from rlgen.train.evaluations import EvaluationLog
from rlgen.train.logger import summarize
from rlgen.train.online import (
    LoopConfig,
    episode_metrics,
    evaluate,
    init_run_state,
    train_chunk,
    warmup_chunk,
)
from rlgen.train.sharding import seed_keys, seed_map, seed_sharding


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Settings every multi-seed run shares (``OnlineConfig``, ``FinetuneConfig``)."""

    env: str = option("task: hopper, halfcheetah, walker2d or ant", default="hopper")
    backend: str = option(
        "physics: auto (MJX on GPU, C MuJoCo on CPU), mjx or mujoco", default="auto"
    )
    seeds: int = option("independent seeds, vmapped and sharded over devices", default=1)
    seed: int = option("base random seed; seed i uses fold_in(seed, i)", default=0)
    batch_size: int = option("transitions per update batch", default=256)
    eval_episodes: int = option("deterministic evaluation episodes per seed", default=10)
    hidden: tuple[int, ...] = option("hidden widths of actor and critics", default=(256, 256))
    gamma: float = option("discount", default=0.99)
    run_dir: str = option("directory for config, metrics, checkpoints", default="runs/run")
    resume: bool = option(
        "continue from the latest checkpoint in run_dir (without it, a run_dir that holds "
        "checkpoints is refused rather than overwritten)",
        default=False,
    )
    progress: bool = option("show progress bars", default=True)

    def __post_init__(self):
        check(self, positive=("seeds", "batch_size", "eval_episodes"))
        if not 0 < self.gamma < 1:
            raise ValueError(f"gamma must be in (0, 1), got {self.gamma}")


@dataclasses.dataclass(frozen=True)
class OnlineConfig(RunConfig):
    """Online SAC over vmapped seeds (``rlgen train sac``)."""

    steps: int = option(
        "env steps per seed, warm-up included (rounded up to whole chunks)", default=100_000
    )
    warmup: int = option("initial env steps per seed with uniform random actions", default=5_000)
    num_envs: int = option("parallel envs per seed (transitions per block)", default=1)
    utd: int = option("critic updates per env step (update-to-data ratio)", default=1)
    buffer_size: int = option("replay capacity per seed", default=1_000_000)
    chunk: int = option("blocks per compiled chunk between host logs", default=1_000)
    eval_every: int = option("env steps between evaluations (0: only at the end)", default=10_000)
    checkpoint_every: int = option(
        "env steps between checkpoints (0: only at the end)", default=50_000
    )
    num_critics: int = option("critic ensemble size (2: SAC, 10: REDQ-style)", default=2)
    target_subset: int = option("critics in the random min of the target", default=2)
    critic_layer_norm: bool = option("LayerNorm in the critics (helps at high UTD)", default=False)
    actor_q: str = option(
        "how the actor's loss aggregates the critics: auto (min for 2, SAC's; mean for more, "
        "REDQ's), min or mean (REDQ's code for any size, so SynthER's online code's)",
        default="auto",
    )
    actor_lr: float = option("actor learning rate", default=3e-4)
    critic_lr: float = option("critic learning rate", default=3e-4)
    tau: float = option("Polyak rate of the target critics", default=5e-3)
    run_dir: str = option("directory for config, metrics, checkpoints", default="runs/sac")

    def __post_init__(self):
        super().__post_init__()
        check(
            self,
            positive=("steps", "num_envs", "utd", "buffer_size", "chunk", "num_critics")
            + ("target_subset",),
            non_negative=("warmup", "eval_every", "checkpoint_every"),
            choices={"actor_q": ("auto", "min", "mean")},
        )
        if self.warmup < self.batch_size:
            raise ValueError(f"warmup ({self.warmup}) must be >= batch_size ({self.batch_size})")

    def hparams(self) -> sac.HParams:
        """SAC's ``HParams`` from this config (the values a vmapped sweep may vary)."""
        return sac.HParams(
            actor_lr=self.actor_lr, critic_lr=self.critic_lr, gamma=self.gamma, tau=self.tau
        )

    def sac_agent(self, obs_dim: int, action_dim: int) -> Agent:
        auto_q = "mean" if self.num_critics > 2 else "min"
        config = sac.Config(
            obs_dim,
            action_dim,
            tuple(self.hidden),
            self.num_critics,
            self.target_subset,
            self.critic_layer_norm,
            auto_q if self.actor_q == "auto" else self.actor_q,
        )
        return sac.make_agent(config, self.hparams())


def enable_compilation_cache() -> None:
    """Persist compiled programs across processes (``JAX_COMPILATION_CACHE_DIR`` overrides)."""
    if jax.config.jax_compilation_cache_dir:
        return
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rlgen" / "jax"
    jax.config.update("jax_compilation_cache_dir", str(default))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


class OnlineRun:
    """Compiled phases of one multi-seed online run, and the host loop driving them."""

    def __init__(
        self,
        config: OnlineConfig,
        env=None,
        agent: Agent | None = None,
        devices=None,
        sweep: dict | None = None,
    ):
        """``sweep``: values per SAC hyperparameter (``{"tau": (0.005, 0.01)}``), vmapped with
        the seeds in one program (:mod:`rlgen.train.sweep`); results per lane, point-major."""
        self.config = config
        self.env = envs.make(config.env, backend=config.backend) if env is None else env
        self.vec_env = envs.AutoReset(self.env)
        self.agent = agent or config.sac_agent(self.env.observation_size, self.env.action_size)
        self.loop = LoopConfig(config.num_envs, config.utd, config.batch_size, config.buffer_size)
        self.grid = sweeps.Grid.of(sweep, config)
        self.lanes = config.seeds * len(self.grid)
        self.sharding = seed_sharding(self.lanes, devices)
        self.lane_hp = put(self.grid.lane_hparams(config.hparams(), config.seeds), self.sharding)
        self.run_dir = Path(config.run_dir)
        # per-batch rows of state.synthetic and of the replay, when a subclass adds a synthetic
        # buffer (read when train_fn is first traced, so set it before the first run)
        self.counts: tuple[int, ...] = ()
        self.max_episode_steps = getattr(self.env, "max_episode_steps", 1000)
        self.warmup_blocks = math.ceil(config.warmup / config.num_envs)
        train_steps = max(config.steps - self.warmup_blocks * config.num_envs, 0)
        self.num_chunks = math.ceil(train_steps / (config.chunk * config.num_envs))
        self.total_steps = (self.warmup_blocks + self.num_chunks * config.chunk) * config.num_envs
        self._compile()

    def _compile(self) -> None:
        agent, env, vec_env, loop, c = self.agent, self.env, self.vec_env, self.loop, self.config
        per_seed = functools.partial(seed_map, sharding=self.sharding)
        shard = dict(out_shardings=self.sharding)

        def init(key, hp):
            return init_run_state(key, with_hparams(agent, hp), vec_env, loop)

        def train(run):
            chunk = train_chunk(run, agent, vec_env, loop, c.chunk, counts=self.counts)
            run, metrics = episode_metrics(*chunk)
            return run, metrics, health.finite_flags(metrics, run.agent)

        def evaluate_seed(agent_state, key):
            return evaluate(agent, agent_state, env, key, c.eval_episodes, self.max_episode_steps)

        def warmup(run):
            return warmup_chunk(run, vec_env, self.warmup_blocks)

        self.init_fn = jax.jit(per_seed(init), **shard)
        self.warmup_fn = jax.jit(per_seed(warmup), donate_argnums=0, **shard)
        self.train_fn = jax.jit(per_seed(train), donate_argnums=0, **shard)
        self.eval_fn = jax.jit(per_seed(evaluate_seed))

    def seed_keys(self, salt: int = 0) -> jax.Array:
        """One key per lane (seed i of every sweep point gets seed i's key)."""
        c = self.config
        return seed_keys(c.seed, c.seeds, self.sharding, salt, repeats=len(self.grid))

    def after_chunk(self, state, prev: int, step: int, row: dict | None = None):
        """Host hook between compiled chunks (after the warm-up too), e.g. refreshing a
        generator's ``state.synthetic`` buffer; may add entries to the log ``row``. Returns
        the state."""
        return state

    def init_state(self):
        return self.init_fn(self.seed_keys(), self.lane_hp)

    def evaluate(self, state, step: int) -> np.ndarray:
        keys = jax.vmap(lambda k: jax.random.fold_in(k, step))(self.seed_keys(salt=1))
        return fetch(self.eval_fn(state.agent, keys))

    def _evaluate_and_log(self, state, step: int) -> np.ndarray:
        """Per-seed evaluation returns, recorded in ``self.eval_log`` (phase ``online``)."""
        returns = self.evaluate(state, step)
        self.eval_log.add("online", step, returns)
        return returns

    def run(self, until: int | None = None) -> dict:
        """Train to ``config.steps`` (or stop after the chunk reaching ``until`` env steps).

        Returns the final per-seed evaluation returns, every evaluation (phase ``online``, with
        D4RL-normalised scores; also in ``evaluations.jsonl``) and the wall time; the final
        state is kept in ``self.state``.
        """
        c = self.config
        until = self.total_steps if until is None else min(until, self.total_steps)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        mngr = checkpoint.manager(self.run_dir / "checkpoints")
        resumed = checkpoint.will_resume(mngr, c.resume)  # before anything is written
        write_json(self.run_dir / "config.json", dataclasses.asdict(c))
        write_json(self.run_dir / "system.json", runinfo.describe())
        start = time.perf_counter()
        state = self.init_state()
        if resumed:
            state = checkpoint.restore(mngr, state)
        self.eval_log = EvaluationLog(self.run_dir, c.env, resume=resumed)
        step = env_steps(state)
        logger = distributed.logger(self.run_dir, self.total_steps, c.progress)
        logger.bar.update(step)
        per_block_updates = c.utd * self.lanes
        self.point_logs = sweeps.PointLogs(self.run_dir, self.grid, c.seeds)
        last_eval = (-1, None)
        try:
            if step == 0 and self.warmup_blocks:
                state = self.warmup_fn(state)
                step = env_steps(state)
                logger.log(step, {"phase_warmup": 1.0}, step, 0, self.lanes)
                state = self.after_chunk(state, 0, step)
            while step < until:
                state, metrics, flags = self.train_fn(state)
                prev, step = step, env_steps(state)
                health.check(fetch(flags), step)
                per_lane = fetch(metrics)
                row = summarize(per_lane)
                self.point_logs.log("online", step, per_lane)
                state = self.after_chunk(state, prev, step, row)
                if crossed(c.eval_every, prev, step) or step >= until:
                    last_eval = (step, self._evaluate_and_log(state, step))
                    row.update(summarize({"eval_return": last_eval[1]}))
                logger.log(step, row, step - prev, c.chunk * per_block_updates, self.lanes)
                if crossed(c.checkpoint_every, prev, step) or step >= until:
                    checkpoint.save(mngr, step, state)
        finally:
            logger.close()
            self.point_logs.close()
        final = last_eval[1] if last_eval[0] == step else self._evaluate_and_log(state, step)
        results = {
            "env": c.env,
            "env_steps_per_seed": step,
            "final_eval_return_per_seed": final.tolist(),
            "final_eval_return_mean": float(final.mean()),
            "evaluations": self.eval_log.records(),
            "wall_time_s": time.perf_counter() - start,
        }
        if self.grid.names:  # lanes are point-major: point p's seeds are p*seeds ... (p+1)*seeds-1
            results["sweep"] = {"seeds": c.seeds, "points": self.grid.points}
        write_json(self.run_dir / "results.json", results)
        self.state = state
        return results


def crossed(every: int, prev: int, step: int) -> bool:
    """Whether a multiple of ``every`` (0: never) lies in (prev, step]."""
    return bool(every) and step // every > prev // every


def env_steps(state) -> int:
    """Env steps per seed taken so far (the same for every seed)."""
    return int(fetch(state.env_steps)[0])


def write_json(path: Path, obj) -> None:
    """Write ``obj`` atomically (process 0 only: the run directory is shared)."""
    if not distributed.is_main():
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)
