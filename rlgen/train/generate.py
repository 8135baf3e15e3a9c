"""D4RL-style offline datasets generated on rlgen's envs: random, medium, medium-replay, expert,
medium-expert.

Construction (D4RL's own, DESIGN.md section 3):

- **random**: uniform actions in [-1, 1].
- One behaviour SAC run per (env, seed) serves the three policy kinds. It trains with
  ``num_envs`` parallel envs (one seed, :class:`~rlgen.train.runner.OnlineRun`'s compiled
  phases) for ``train_steps`` env steps, evaluating the deterministic policy every
  ``eval_every`` steps and keeping a device snapshot of the agent at every new best evaluation.
- **expert**: the fully trained policy (the final agent state).
- **medium**: the first evaluated policy whose return reaches ``medium_fraction`` (default
  1/3) of the expert return. ``medium_target="run"`` (default) takes the expert return to be the
  final evaluation return of *this* run, so "medium" is relative to the expert actually
  generated, on the v5 task, at the chosen budget; ``medium_target="reference"`` uses D4RL's
  published expert return (:data:`rlgen.data.scores.REFERENCE_RETURNS`), which small budgets
  never reach (then the best snapshot is used and ``medium_reached`` is 0 in the metadata).
- **medium-replay**: the run's replay buffer up to the medium point, in insertion order. The
  buffer's capacity is the whole run, so nothing is overwritten. Rows of the ``num_envs``
  interleaved envs are reordered so each env's stream is contiguous, and the last row of each
  stream is marked a timeout so trajectories never join. At most ``size`` rows are kept (the most
  recent ones, as a ring buffer of capacity ``size`` would hold), so this file can be smaller
  than ``size`` -- D4RL's medium-replay sizes also vary.
- **medium-expert**: the medium and expert files concatenated (``2 * size`` rows, as D4RL's
  2M-row medium-expert).

Policy rollouts use *sampled* actions with ``rollout_envs`` parallel auto-resetting envs and the
env's 1000-step limit: ``terminals`` mark terminations, ``timeouts`` the time limit (never both),
each env's stream is contiguous and its last row is a timeout (unless terminal).

Files are cached as ``{data_dir}/{env}-{kind}-{size}-seed{seed}.hdf5`` (``data_dir``:
argument, else ``$RLGEN_DATA``, else ``~/.cache/rlgen/datasets``); an existing file is returned
as is unless ``overwrite=True``. The file name does not encode the budgets: they are recorded in
the metadata, and a cached policy dataset made with other behaviour-run settings is an error
(naming the differing fields) rather than silently reused. Within one process the last
behaviour run is also kept in memory, so :func:`generate_all` (or successive :func:`generate`
calls with the same settings) train once.

    paths = generate_all("hopper", size=1_000_000, seed=0)          # all five kinds
    path = generate("hopper", "medium-replay", train_steps=300_000)  # one kind
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from rlgen import envs, runinfo
from rlgen.config import check, option
from rlgen.data.datasets import load_d4rl, read_metadata, save_d4rl
from rlgen.data.scores import REFERENCE_RETURNS
from rlgen.train import health

KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")
POLICY_KINDS = ("medium", "medium-replay", "expert")

# How often a behaviour SAC run / a dataset rollout actually ran in this process (tests use it
# to check that cached files and the in-memory behaviour run are reused).
STATS = {"train_runs": 0, "rollouts": 0}


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    """Budgets of the behaviour SAC run and the rollouts (``rlgen dataset generate``).

    The defaults aim at D4RL's scale (1M-step SAC) on a GPU with MJX; they were not tuned or
    timed here. Tests pass tiny budgets.
    """

    backend: str = option(
        "physics: auto (MJX on GPU, C MuJoCo on CPU), mjx or mujoco", default="auto"
    )
    train_steps: int = option(
        "env steps of the behaviour SAC run (the expert budget)", default=1_000_000
    )
    warmup: int = option("uniform-random warm-up steps of the behaviour run", default=10_000)
    num_envs: int = option("parallel envs of the behaviour run", default=8)
    utd: int = option("critic updates per block of the behaviour run", default=8)
    batch_size: int = option("SAC batch size", default=256)
    hidden: tuple[int, ...] = option("SAC hidden widths", default=(256, 256))
    eval_every: int = option(
        "env steps between evaluations (medium-point resolution)", default=10_000
    )
    eval_episodes: int = option("deterministic episodes per evaluation", default=10)
    medium_fraction: float = option(
        "medium = first policy reaching this fraction of expert", default=1 / 3
    )
    medium_target: str = option(
        "expert return for the medium point: run (this run's final eval) or reference (D4RL's)",
        default="run",
    )
    rollout_envs: int = option("parallel envs of the dataset rollouts", default=100)
    rollout_chunk: int = option(
        "rollout steps per compiled call (progress granularity)", default=1_000
    )
    progress: bool = option("print progress", default=True)

    def __post_init__(self):
        check(
            self,
            positive=("train_steps", "num_envs", "utd", "batch_size", "eval_every")
            + ("eval_episodes", "rollout_envs", "rollout_chunk"),
            choices={"medium_target": ("run", "reference")},
        )
        if self.warmup < self.batch_size:
            raise ValueError(f"warmup ({self.warmup}) must be >= batch_size ({self.batch_size})")
        if self.train_steps <= self.warmup:
            raise ValueError(f"train_steps ({self.train_steps}) must exceed warmup ({self.warmup})")
        if not 0 < self.medium_fraction <= 1:
            raise ValueError(f"medium_fraction must be in (0, 1], got {self.medium_fraction}")

    def behaviour_key(self) -> tuple:
        """The fields that determine the behaviour run (rollout settings excluded)."""
        skip = ("rollout_envs", "rollout_chunk", "progress")
        return tuple(
            (f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in skip
        )


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$RLGEN_DATA``, else ``~/.cache/rlgen/datasets``."""
    if path is not None:
        return Path(path)
    env = os.environ.get("RLGEN_DATA")
    return Path(env) if env else Path.home() / ".cache" / "rlgen" / "datasets"


def dataset_path(env: str, kind: str, size: int, seed: int, directory=None) -> Path:
    return data_dir(directory) / f"{env}-{kind}-{size}-seed{seed}.hdf5"


# --------------------------------------------------------------------------------------------
# Rollouts


def _log(config: GenerateConfig, msg: str) -> None:
    if config.progress:
        print(f"[rlgen generate] {msg}", flush=True)


def rollout(
    env,
    policy,
    policy_state,
    key: jax.Array,
    size: int,
    num_envs: int,
    chunk: int = 1_000,
    log=None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``size`` transitions of ``policy(policy_state, obs, key) -> actions`` on ``num_envs``
    auto-resetting copies of ``env``, as a D4RL dict (each env's stream contiguous, last row of
    each stream a timeout) and the returns of the episodes completed inside the data."""
    STATS["rollouts"] += 1
    vec = envs.AutoReset(env)
    num_envs = max(1, min(num_envs, size))
    steps = math.ceil(size / num_envs)
    chunk = min(chunk, steps)
    run_chunk = _rollout_chunk_fn(vec, policy, chunk)
    k_reset, k_run = jax.random.split(key)
    carry = (vec.reset(jax.random.split(k_reset, num_envs)), k_run)
    parts, done, start = [], 0, time.perf_counter()
    while done < steps:
        carry, rows = run_chunk(carry, policy_state)
        parts.append(jax.device_get(rows))
        done += chunk
        if log is not None:
            rate = min(done, steps) * num_envs / (time.perf_counter() - start)
            log(f"rollout {min(done, steps) * num_envs}/{steps * num_envs} steps ({rate:.0f}/s)")
    streams = {k: np.concatenate([p[k] for p in parts])[:steps].swapaxes(0, 1) for k in parts[0]}
    return _streams_to_d4rl(streams, size)


_ROLLOUT_FNS: dict[tuple, Any] = {}


def _rollout_chunk_fn(vec, policy, chunk: int):
    """The compiled ``chunk``-step rollout of ``policy`` on ``vec``, built once per
    (env, policy, chunk) so medium and expert (and repeated calls) share one compilation."""
    key = (vec.env, policy, chunk)
    if key in _ROLLOUT_FNS:
        return _ROLLOUT_FNS[key]

    def run_chunk(carry, policy_state):
        def step(carry, _):
            env_state, key = carry
            key, k_act = jax.random.split(key)
            action = policy(policy_state, env_state.obs, k_act)
            nxt = vec.step(env_state, action)
            row = dict(
                obs=env_state.obs,
                action=action,
                reward=nxt.reward,
                next_obs=nxt.info["final_obs"],
                terminal=nxt.info["terminated"],
                truncated=nxt.info["truncation"],
            )
            return (nxt, key), row

        return jax.lax.scan(step, carry, None, length=chunk)

    if len(_ROLLOUT_FNS) > 16:
        _ROLLOUT_FNS.clear()
    _ROLLOUT_FNS[key] = jax.jit(run_chunk)
    return _ROLLOUT_FNS[key]


_ENVS: dict[tuple[str, str], Any] = {}


def _make_env(name: str, backend: str):
    """One env object per (name, backend) in this process, so compiled rollouts are reused."""
    if (name, backend) not in _ENVS:
        _ENVS[name, backend] = envs.make(name, backend=backend)
    return _ENVS[name, backend]


_RANDOM_POLICIES: dict[Any, Any] = {}


def _random_policy(env):
    """Uniform actions in [-1, 1] (one function object per env, see :func:`_rollout_chunk_fn`)."""
    if env not in _RANDOM_POLICIES:
        size = env.action_size
        _RANDOM_POLICIES[env] = lambda _, obs, k: jax.random.uniform(
            k, (obs.shape[0], size), minval=-1.0, maxval=1.0
        )
    return _RANDOM_POLICIES[env]


def _streams_to_d4rl(
    streams: dict[str, np.ndarray], size: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(num_streams, T, ...) transition arrays -> flat D4RL dict of the first ``size`` rows, and
    the returns of the episodes that end (terminal or time limit) inside it."""
    n, t = streams["reward"].shape[:2]
    flat = {k: v.reshape((n * t,) + v.shape[2:])[:size] for k, v in streams.items()}
    terminal = flat["terminal"] > 0.5
    env_end = terminal | (flat["truncated"] > 0.5)
    stream_end = np.zeros(n * t, bool)
    stream_end[t - 1 :: t] = True
    stream_end = stream_end[:size]
    stream_end[-1] = True
    data = {
        "observations": flat["obs"].astype(np.float32),
        "actions": flat["action"].astype(np.float32),
        "rewards": flat["reward"].astype(np.float32),
        "next_observations": flat["next_obs"].astype(np.float32),
        "terminals": terminal,
        "timeouts": (env_end | stream_end) & ~terminal,
    }
    return data, _episode_returns(data["rewards"], env_end, stream_end)


def _episode_returns(rewards, env_end, stream_end) -> np.ndarray:
    """Returns of the episodes that end by termination or time limit (not cut by a stream end),
    and start inside the data: the first episode of each stream starts at a reset."""
    ends = env_end | stream_end
    ids = np.cumsum(ends) - ends
    sums = np.bincount(ids, weights=rewards)
    complete = np.zeros(len(sums), bool)
    complete[ids[env_end]] = True
    return sums[complete]


# --------------------------------------------------------------------------------------------
# The behaviour SAC run


@dataclasses.dataclass
class Behaviour:
    """One behaviour SAC run: the medium and expert agents (on the device, seed axis removed),
    the replay data up to the medium point and the evaluation curve."""

    env: Any
    agent: Any
    medium_state: Any
    expert_state: Any
    replay: dict[str, np.ndarray]  # (num_envs, blocks, ...) transitions up to the medium point
    info: dict[str, Any]

    def __post_init__(self):
        agent = self.agent
        self.policy = lambda state, obs, key: agent.act(state, obs, key, False)  # sampled


def _online_config(env_name: str, seed: int, c: GenerateConfig):
    from rlgen.train.runner import OnlineConfig

    chunk = max(1, c.eval_every // c.num_envs)
    warmup_blocks = math.ceil(c.warmup / c.num_envs)
    train = max(c.train_steps - warmup_blocks * c.num_envs, 0)
    total = (warmup_blocks + math.ceil(train / (chunk * c.num_envs)) * chunk) * c.num_envs
    return OnlineConfig(
        env=env_name,
        backend=c.backend,
        seeds=1,
        seed=seed,
        steps=c.train_steps,
        warmup=c.warmup,
        num_envs=c.num_envs,
        utd=c.utd,
        batch_size=c.batch_size,
        buffer_size=total,  # the whole run fits: medium-replay needs every row up to medium
        chunk=chunk,
        eval_every=0,
        eval_episodes=c.eval_episodes,
        checkpoint_every=0,
        hidden=tuple(c.hidden),
        progress=False,
    )


_BEHAVIOUR_CACHE: dict[tuple, Behaviour] = {}


def train_behaviour(env_name: str, seed: int, config: GenerateConfig) -> Behaviour:
    """Train the behaviour SAC (or reuse the last identical run of this process)."""
    key = (env_name, seed, config.behaviour_key())
    if key in _BEHAVIOUR_CACHE:
        return _BEHAVIOUR_CACHE[key]
    from rlgen.train.runner import OnlineRun

    STATS["train_runs"] += 1
    _BEHAVIOUR_CACHE.clear()  # keep at most one run's agents and replay data in memory
    run = OnlineRun(_online_config(env_name, seed, config), env=_make_env(env_name, config.backend))
    c, ne = run.config, run.config.num_envs
    _log(config, f"training behaviour SAC on {env_name}: {run.total_steps} env steps, {ne} envs")
    start = time.perf_counter()
    state = run.warmup_fn(run.init_state())
    step = int(np.asarray(state.env_steps)[0])
    snap = lambda s: jax.tree.map(lambda x: x[0], s.agent)  # noqa: E731  (a copy, not donated)
    evals: list[tuple[int, float]] = []
    best: list[tuple[int, float, Any]] = []  # snapshots at every new best evaluation

    def record(state, step):
        ret = float(run.evaluate(state, step)[0])
        evals.append((step, ret))
        if not best or ret > best[-1][1]:
            best.append((step, ret, snap(state)))
        return ret

    record(state, step)
    while step < run.total_steps:
        state, _, flags = run.train_fn(state)
        step = int(np.asarray(state.env_steps)[0])
        health.check(jax.device_get(flags), step)
        ret = record(state, step)
        rate = (step - c.warmup) / (time.perf_counter() - start)
        _log(config, f"train {step}/{run.total_steps} eval return {ret:.1f} ({rate:.0f} steps/s)")
    expert_return = evals[-1][1]
    if config.medium_target == "run":
        expert_ref = expert_return
    else:
        expert_ref = REFERENCE_RETURNS[env_name][1]
    target = config.medium_fraction * expert_ref
    reached = [b for b in best if b[1] >= target]
    medium_step, medium_return, medium_state = reached[0] if reached else best[-1]
    if not reached:
        _log(config, f"no evaluation reached the medium target {target:.1f}; using the best")
    blocks = medium_step // ne
    replay = {
        k: np.asarray(getattr(state.buffer.data, f)[0, : blocks * ne])
        .reshape((blocks, ne) + getattr(state.buffer.data, f).shape[2:])
        .swapaxes(0, 1)
        for k, f in (
            ("obs", "obs"),
            ("action", "action"),
            ("reward", "reward"),
            ("next_obs", "next_obs"),
            ("terminal", "terminal"),
            ("truncated", "truncated"),
        )
    }
    info = {
        "train_steps": step,
        "train_num_envs": ne,
        "train_utd": c.utd,
        "train_time_s": time.perf_counter() - start,
        "eval_steps": [e[0] for e in evals],
        "eval_returns": [e[1] for e in evals],
        "expert_eval_return": expert_return,
        "expert_reference_return": expert_ref,
        "medium_fraction": config.medium_fraction,
        "medium_target": config.medium_target,
        "medium_target_return": target,
        "medium_reached": int(bool(reached)),
        "medium_step": medium_step,
        "medium_eval_return": medium_return,
    }
    _log(
        config,
        f"expert eval return {expert_return:.1f}; medium at step {medium_step} "
        f"(eval return {medium_return:.1f}, target {target:.1f})",
    )
    behaviour = Behaviour(run.env, run.agent, medium_state, snap(state), replay, info)
    _BEHAVIOUR_CACHE[key] = behaviour
    return behaviour


# --------------------------------------------------------------------------------------------
# Public API


def _check_cached_behaviour(path: Path, config: GenerateConfig) -> None:
    """Raise if the cached file at ``path`` came from a different behaviour run."""
    recorded = read_metadata(path).get("config", {})
    differ = [
        f"{name} (cached {recorded[name]!r}, requested {value!r})"
        for name, value in config.behaviour_key()
        if name in recorded and _plain(recorded[name]) != _plain(value)
    ]
    if differ:
        raise ValueError(
            f"cached dataset {path} was generated with other behaviour-run settings: "
            f"{'; '.join(differ)}. Pass overwrite=True (--overwrite) or use another data_dir."
        )


def _plain(value):
    return list(value) if isinstance(value, tuple | list) else value


def generate(
    env: str,
    kind: str,
    size: int = 1_000_000,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    config: GenerateConfig | None = None,
    **overrides,
) -> Path:
    """The path of the ``kind`` dataset of ``env`` (generated, or the cached file).

    ``overrides`` are :class:`GenerateConfig` fields (e.g. ``train_steps=100_000``).
    """
    return generate_all(env, (kind,), size, seed, data_dir, overwrite, config, **overrides)[kind]


def generate_all(
    env: str,
    kinds=KINDS,
    size: int = 1_000_000,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    config: GenerateConfig | None = None,
    **overrides,
) -> dict[str, Path]:
    """Generate (or find cached) datasets of several kinds with at most one behaviour run."""
    config = dataclasses.replace(config or GenerateConfig(), **overrides)
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown dataset kind(s) {bad}; choose from {KINDS}")
    if env not in REFERENCE_RETURNS:
        raise ValueError(f"unknown env {env!r}; choose from {sorted(REFERENCE_RETURNS)}")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    needed = set(kinds)
    if "medium-expert" in needed:
        needed |= {"medium", "expert"}
    paths = {k: dataset_path(env, k, size, seed, data_dir) for k in KINDS}
    todo = [k for k in KINDS if k in needed and (overwrite or not paths[k].exists())]
    for k in KINDS:
        if k in needed and k not in todo:
            if k in POLICY_KINDS:
                _check_cached_behaviour(paths[k], config)
            _log(config, f"cached: {paths[k]}")
    base = {"env": env, "seed": seed, "requested_size": size, "backend": config.backend}
    base["versions"] = runinfo.versions()
    base["config"] = dataclasses.asdict(config)

    def policy_meta(returns):
        return {
            "policy_return": float(returns.mean()) if len(returns) else float("nan"),
            "policy_return_std": float(returns.std()) if len(returns) else float("nan"),
            "num_episodes": len(returns),
        }

    def rollout_key(kind):
        return jax.random.fold_in(jax.random.key(seed), 1_000 + KINDS.index(kind))

    if "random" in todo:
        _log(config, f"generating {env} random ({size} rows)")
        e = _make_env(env, config.backend)
        data, rets = rollout(
            e,
            _random_policy(e),
            None,
            rollout_key("random"),
            size,
            config.rollout_envs,
            config.rollout_chunk,
            lambda m: _log(config, m),
        )
        meta = {**base, "kind": "random", "size": len(data["rewards"]), **policy_meta(rets)}
        meta["rollout_envs"] = min(config.rollout_envs, size)
        _save(paths["random"], data, meta, config)

    if any(k in todo for k in POLICY_KINDS):
        b = train_behaviour(env, seed, config)
        train_meta = {f"behaviour_{k}": v for k, v in b.info.items()}
        for kind, state, eval_key in (
            ("medium", b.medium_state, "medium_eval_return"),
            ("expert", b.expert_state, "expert_eval_return"),
        ):
            if kind not in todo:
                continue
            _log(config, f"generating {env} {kind} ({size} rows, sampled actions)")
            data, rets = rollout(
                b.env,
                b.policy,
                state,
                rollout_key(kind),
                size,
                config.rollout_envs,
                config.rollout_chunk,
                lambda m: _log(config, m),
            )
            meta = {**base, **train_meta, "kind": kind, "size": len(data["rewards"])}
            meta.update(policy_meta(rets), policy_eval_return=b.info[eval_key])
            meta["rollout_envs"] = min(config.rollout_envs, size)
            _save(paths[kind], data, meta, config)
        if "medium-replay" in todo:
            keep = min(b.replay["reward"].shape[1], math.ceil(size / b.info["train_num_envs"]))
            streams = {k: v[:, v.shape[1] - keep :] for k, v in b.replay.items()}
            data, rets = _streams_to_d4rl(streams, size)
            meta = {**base, **train_meta, "kind": "medium-replay", "size": len(data["rewards"])}
            meta.update(policy_meta(rets), policy_eval_return=b.info["medium_eval_return"])
            _save(paths["medium-replay"], data, meta, config)

    if "medium-expert" in todo:
        (medium, m_meta), (expert, e_meta) = load_d4rl(paths["medium"]), load_d4rl(paths["expert"])
        data = {k: np.concatenate([medium[k], expert[k]]) for k in medium}
        meta = {k: v for k, v in e_meta.items() if k.startswith("behaviour_")}
        meta.update(base, kind="medium-expert", size=len(data["rewards"]))
        meta["medium_size"], meta["expert_size"] = m_meta["size"], e_meta["size"]
        meta["medium_policy_return"] = m_meta["policy_return"]
        meta["expert_policy_return"] = e_meta["policy_return"]
        n_m, n_e = m_meta["num_episodes"], e_meta["num_episodes"]
        total = np.nansum([m_meta["policy_return"] * n_m, e_meta["policy_return"] * n_e])
        meta["num_episodes"] = n_m + n_e
        meta["policy_return"] = float(total / (n_m + n_e)) if n_m + n_e else float("nan")
        _save(paths["medium-expert"], data, meta, config)
    return {k: paths[k] for k in kinds}


def _save(path: Path, data, meta, config: GenerateConfig) -> None:
    save_d4rl(path, data, meta)
    _log(
        config,
        f"wrote {path} ({meta['size']} rows, {meta['num_episodes']} complete episodes, "
        f"policy return {meta['policy_return']:.1f})",
    )


def cli(args) -> None:
    """``rlgen dataset generate``: print the path(s) and the policy returns."""
    from rlgen import config as flags

    config = flags.from_arguments(GenerateConfig, args)
    kinds = KINDS if args.kind == "all" else (args.kind,)
    paths = generate_all(
        args.env, kinds, args.size, args.seed, args.data_dir, args.overwrite, config
    )
    for kind, path in paths.items():
        _, meta = load_d4rl(path)
        line = f"{kind}: {path} ({meta.get('size')} rows) policy return {meta.get('policy_return')}"
        if "policy_eval_return" in meta:
            line += f", deterministic eval return {meta['policy_eval_return']}"
        print(line)
