"""D4RL-style offline datasets generated on rlgen's envs: random, medium, medium-replay, expert,
medium-expert.

Construction (D4RL's own, DESIGN.md section 3), from the reference behaviour policies shipped in
``rlgen/policies`` (one long rlgen SAC run per task, :mod:`rlgen.train.behaviour`):

- **random**: uniform actions in [-1, 1].
- **expert**: rollouts of the run's final (fully trained) policy.
- **medium**: rollouts of the run's first evaluated policy whose return reached 1/3 of D4RL's
  expert return (the expert level rlgen's own expert must reach too).
- **medium-replay**: the run's replay buffer up to its medium point, in insertion order (at
  most ``size`` rows, the most recent, as a ring buffer of capacity ``size`` would hold). It is
  read from the behaviour run's directory (its final checkpoint holds the whole buffer), the
  medium point chosen from that run's own snapshots (a run replayed elsewhere may reach it at
  another step); without the directory, the error gives the command that replays the run.
- **medium-expert**: the medium and expert files concatenated (``2 * size`` rows).

Levels are checked, never assumed: a policy kind's file records the D4RL-normalised score of its
policy, measured again when the file is made as the runner measures every evaluation (and the
package its ``eval_return``): the mean return of ``level_episodes`` deterministic episodes from
reset. A policy whose level falls outside the kind's band
(:func:`rlgen.train.behaviour.level_band`) is refused with a :class:`LevelError` instead of
written under that name. The data's own return (its complete episodes, sampled actions) is
recorded too, as ``data_return``: it sits below the level, since a stochastic policy stumbles
now and then (the shipped hopper expert: level 3,445, data 2,960-3,260 by file size), and it is not
the level because the episodes that end inside a file over-count short ones.

Policy rollouts use *sampled* actions with ``rollout_envs`` parallel auto-resetting envs and the
env's 1000-step limit: ``terminals`` mark terminations, ``timeouts`` the time limit (never both),
each env's stream is contiguous and its last row is a timeout (unless terminal). Like D4RL's, the
rollout files (random, medium, expert, medium-expert) also hold ``infos/qpos`` and ``infos/qvel``
(the simulator state each row's observation was taken in) and ``infos/action_log_probs`` (log
density of the sampled action; ``-action_dim * log 2`` for uniform actions). medium-replay has no
``infos``: the behaviour run's replay buffer keeps neither the simulator state nor log-probs.

Files are cached as ``{data_dir}/{env}-{kind}-{size}-seed{seed}.hdf5`` (``data_dir``:
argument, else ``$RLGEN_DATA``, else ``~/.cache/rlgen/datasets``); an existing file is returned
as is unless ``overwrite=True``, and a cached policy file made from other policies is an error.

    paths = generate_all("hopper", size=1_000_000, seed=0)          # all five kinds
    path = generate("hopper", "medium")
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rlgen import envs, runinfo
from rlgen.agents import sac
from rlgen.config import check, option
from rlgen.data.datasets import load_d4rl, read_metadata, save_d4rl
from rlgen.data.scores import REFERENCE_RETURNS, normalized_score
from rlgen.train import behaviour, online

KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")
POLICY_KINDS = ("medium", "medium-replay", "expert")
# rollout row fields written as D4RL's per-row ``infos``
INFO_FIELDS = {"qpos": "infos/qpos", "qvel": "infos/qvel", "log_prob": "infos/action_log_probs"}
# How often a dataset rollout actually ran in this process (tests use it to check the cache).
STATS = {"rollouts": 0}


class LevelError(ValueError):
    """A policy falls short of (or above) the level of the dataset kind it was asked for."""


@dataclasses.dataclass(frozen=True)
class GenerateConfig:
    """Where the behaviour policies come from and how the rollouts run (``rlgen dataset
    generate``)."""

    backend: str = option(
        "physics: auto (MJX on GPU, C MuJoCo on CPU), mjx or mujoco", default="auto"
    )
    policy_dir: str | None = option(
        "directory of packaged behaviour policies (default: the ones shipped with rlgen)",
        default=None,
    )
    behaviour_run: str | None = option(
        "medium-replay: the behaviour run directory (default: the one the package records)",
        default=None,
    )
    rollout_envs: int = option("parallel envs of the dataset rollouts", default=100)
    rollout_chunk: int = option(
        "rollout steps per compiled call (progress granularity)", default=1_000
    )
    level_episodes: int = option(
        "deterministic episodes that measure a medium / expert policy's level",
        default=10,
    )
    progress: bool = option("print progress", default=True)

    def __post_init__(self):
        check(self, positive=("rollout_envs", "rollout_chunk", "level_episodes"))

    @property
    def policies(self) -> Path:
        return Path(self.policy_dir) if self.policy_dir else behaviour.POLICY_DIR


def check_level(env: str, kind: str, level: float) -> float:
    """The D4RL-normalised score of a policy's ``level`` (its mean evaluation return); a
    LevelError unless it lies in the kind's band (:func:`rlgen.train.behaviour.level_band`)."""
    low, high = behaviour.level_band(env, kind)
    score = float(normalized_score(env, level))
    if not low <= level <= high:
        raise LevelError(
            f"the {env} {kind} policy returns {level:.1f} on average (D4RL score "
            f"{score:.1f}), outside the {kind} band [{low:.1f}, {high:.1f}]; the file is not "
            f"written under that name. Train the behaviour run further (rlgen dataset "
            f"train-behaviour --env {env} --resume) and package it again"
        )
    return score


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
    """``size`` transitions of ``policy(policy_state, obs, key) -> (actions, log_probs)`` on
    ``num_envs`` auto-resetting copies of ``env``, as a D4RL dict with ``infos`` (each env's
    stream contiguous, last row of each stream a timeout) and the returns of the episodes
    completed inside the data."""
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
            action, log_prob = policy(policy_state, env_state.obs, k_act)
            nxt = vec.step(env_state, action)
            row = dict(
                obs=env_state.obs,
                qpos=env_state.pipeline_state.qpos,
                qvel=env_state.pipeline_state.qvel,
                action=action,
                log_prob=log_prob,
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
    """Uniform actions in [-1, 1] and their log density, ``-action_size * log 2`` (one function
    object per env, see :func:`_rollout_chunk_fn`)."""
    if env not in _RANDOM_POLICIES:
        size = env.action_size

        def uniform(_, obs, key):
            action = jax.random.uniform(key, (obs.shape[0], size), minval=-1.0, maxval=1.0)
            return action, jnp.full(obs.shape[0], -size * math.log(2.0))

        _RANDOM_POLICIES[env] = uniform
    return _RANDOM_POLICIES[env]


def _streams_to_d4rl(
    streams: dict[str, np.ndarray], size: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(num_streams, T, ...) transition arrays -> flat D4RL dict of the first ``size`` rows
    (with the :data:`INFO_FIELDS` the streams have), and the returns of the episodes that end
    (terminal or time limit) inside it."""
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
    data.update({info: flat[k].astype(np.float32) for k, info in INFO_FIELDS.items() if k in flat})
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


_LEVEL_FNS: dict[tuple, Any] = {}


def policy_level(env, hidden, params, key: jax.Array, episodes: int) -> float:
    """Mean return of ``episodes`` deterministic episodes of a packaged SAC actor from reset
    (:func:`rlgen.train.online.evaluate`, as every evaluation of a run)."""
    config = sac.Config(env.observation_size, env.action_size, tuple(hidden))
    cache_key = (env, config, episodes)
    if cache_key not in _LEVEL_FNS:
        agent = sac.make_agent(config)

        def level(state, key):
            return online.evaluate(agent, state, env, key, episodes, env.max_episode_steps)

        _LEVEL_FNS[cache_key] = (sac.init(jax.random.key(0), config), jax.jit(level))
    state, level = _LEVEL_FNS[cache_key]
    state = state.replace(actor=state.actor.replace(params=params))
    return float(level(state, key))


# --------------------------------------------------------------------------------------------
# The shipped behaviour policies


_POLICIES: dict[tuple, Any] = {}


def _policy_fn(obs_dim: int, action_dim: int, hidden) -> Any:
    """(action, log prob) sampled from a packaged SAC actor's parameters, as the agent's own
    ``act`` samples them (one function object per architecture, see
    :func:`_rollout_chunk_fn`)."""
    key = (obs_dim, action_dim, tuple(hidden))
    if key not in _POLICIES:
        config = sac.Config(obs_dim, action_dim, tuple(hidden))
        _POLICIES[key] = lambda params, obs, k: sac.sample_action(config, params, obs, k)
    return _POLICIES[key]


def _provenance(record: dict) -> dict:
    """What identifies the policies a file came from (compared on a cache hit)."""
    return {f"{k}_step": record[k]["step"] for k in ("medium", "expert")} | {
        "expert_eval_return": record["expert"]["eval_return"]
    }


def _check_cached(path: Path, record: dict) -> None:
    """Raise if the cached file at ``path`` came from other policies than ``record``'s."""
    cached = read_metadata(path).get("policy_package", {})
    if cached and cached != _provenance(record):
        raise ValueError(
            f"cached dataset {path} was generated from other behaviour policies ({cached}; now "
            f"{_provenance(record)}). Pass overwrite=True (--overwrite) or use another data_dir."
        )


def _medium_replay(
    env: str, record: dict, config: GenerateConfig, size: int
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[int, float]]:
    """The behaviour run's replay rows up to its medium point (at most the last ``size``) as a
    D4RL dict, the returns of the episodes completed inside them, and that point's (step,
    evaluation return).

    The medium point is the run's own, chosen as the package chooses it (its first snapshot at
    1/3 of D4RL's expert): the packaged run's is the package's medium step, while a run replayed
    on another CPU can differ in floating-point order and reach the level at another step."""
    recorded_dir = record["run_config"]["run_dir"]
    run_dir = Path(config.behaviour_run or recorded_dir)
    if not (run_dir / "checkpoints").is_dir():
        step = record["medium"]["step"]
        minutes = step / record.get("train_env_steps_per_s", math.nan) / 60
        command = record["command"].replace(recorded_dir, str(run_dir))
        raise FileNotFoundError(
            f"medium-replay is the behaviour run's replay buffer up to its medium point, and "
            f"{run_dir} holds no run. Replay the run to that point ({step} env steps; about "
            f"{minutes:.0f} min at the packaged run's speed): {command} --steps {step}; "
            f"or pass --behaviour-run DIR"
        )
    (step, level, _), _ = behaviour.choose(env, behaviour.snapshots(run_dir))
    rows = behaviour.replay_rows(run_dir, step)
    keep = min(step, size)
    streams = {k: v[None, step - keep :] for k, v in rows.items()}
    return (*_streams_to_d4rl(streams, size), (step, level))


# --------------------------------------------------------------------------------------------
# Public API


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

    ``overrides`` are :class:`GenerateConfig` fields (e.g. ``rollout_envs=10``).
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
    """Generate (or find cached) datasets of several kinds of ``env``."""
    config = dataclasses.replace(config or GenerateConfig(), **overrides)
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown dataset kind(s) {bad}; choose from {KINDS}")
    if env not in REFERENCE_RETURNS:
        raise ValueError(f"unknown env {env!r}; choose from {sorted(REFERENCE_RETURNS)}")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    needed = set(kinds) | ({"medium", "expert"} if "medium-expert" in kinds else set())
    paths = {k: dataset_path(env, k, size, seed, data_dir) for k in KINDS}
    record = None
    if needed & {*POLICY_KINDS, "medium-expert"}:
        _, record = behaviour.load_policy(env, "expert", config.policies)
    todo = [k for k in KINDS if k in needed and (overwrite or not paths[k].exists())]
    for k in KINDS:
        if k in needed and k not in todo:
            if record is not None and k != "random":
                _check_cached(paths[k], record)
            _log(config, f"cached: {paths[k]}")
    base = {"env": env, "seed": seed, "requested_size": size, "backend": config.backend}
    base["versions"] = runinfo.versions()
    if record is not None:
        base["policy_package"] = _provenance(record)

    def data_meta(returns):
        """The returns of the episodes complete inside the data."""
        return {
            "data_return": float(returns.mean()) if len(returns) else float("nan"),
            "data_return_std": float(returns.std()) if len(returns) else float("nan"),
            "num_episodes": len(returns),
        }

    def rollout_key(kind, purpose=0):
        return jax.random.fold_in(jax.random.key(seed), 1_000 * (1 + purpose) + KINDS.index(kind))

    def run_rollout(kind, policy, params):
        _log(config, f"generating {env} {kind} ({size} rows)")
        return rollout(
            _make_env(env, config.backend),
            policy,
            params,
            rollout_key(kind),
            size,
            config.rollout_envs,
            config.rollout_chunk,
            lambda m: _log(config, m),
        )

    if "random" in todo:
        e = _make_env(env, config.backend)
        data, rets = run_rollout("random", _random_policy(e), None)
        meta = {**base, "kind": "random", "size": len(data["rewards"]), **data_meta(rets)}
        meta["policy_return"] = meta["data_return"]  # short episodes: the data holds many
        meta["policy_score"] = float(normalized_score(env, meta["policy_return"]))
        meta["rollout_envs"] = min(config.rollout_envs, size)
        _save(paths["random"], data, meta, config)

    for kind in ("medium", "expert"):
        if kind not in todo:
            continue
        params, _ = behaviour.load_policy(env, kind, config.policies)
        e = _make_env(env, config.backend)
        policy = _policy_fn(e.observation_size, e.action_size, record["hidden"])
        _log(config, f"measuring the {kind} policy's level ({config.level_episodes} episodes)")
        level = policy_level(
            e, record["hidden"], params, rollout_key(kind, 1), config.level_episodes
        )
        score = check_level(env, kind, level)
        data, rets = run_rollout(kind, policy, params)
        meta = {**base, "kind": kind, "size": len(data["rewards"]), **data_meta(rets)}
        meta.update(policy_return=level, level_episodes=config.level_episodes, policy_score=score)
        meta.update(policy_eval_return=record[kind]["eval_return"])
        meta.update(policy_step=record[kind]["step"], rollout_envs=min(config.rollout_envs, size))
        _save(paths[kind], data, meta, config)

    if "medium-replay" in todo:  # the replay up to the medium point: labelled by its policy
        data, rets, (step, level) = _medium_replay(env, record, config, size)
        score = check_level(env, "medium", level)
        meta = {**base, "kind": "medium-replay", "size": len(data["rewards"]), **data_meta(rets)}
        meta.update(policy_return=level, policy_score=score, policy_eval_return=level)
        meta.update(policy_step=step, package_medium_step=record["medium"]["step"])
        _save(paths["medium-replay"], data, meta, config)

    if "medium-expert" in todo:
        (medium, m_meta), (expert, e_meta) = load_d4rl(paths["medium"]), load_d4rl(paths["expert"])
        data = {k: np.concatenate([medium[k], expert[k]]) for k in medium}
        meta = {**base, "kind": "medium-expert", "size": len(data["rewards"])}
        meta["medium_size"], meta["expert_size"] = m_meta["size"], e_meta["size"]
        meta["medium_policy_score"] = m_meta["policy_score"]
        meta["expert_policy_score"] = e_meta["policy_score"]
        n_m, n_e = m_meta["num_episodes"], e_meta["num_episodes"]
        total = np.nansum([m_meta["data_return"] * n_m, e_meta["data_return"] * n_e])
        meta["num_episodes"] = n_m + n_e
        meta["data_return"] = float(total / (n_m + n_e)) if n_m + n_e else float("nan")
        # equal halves of the data from each policy: their levels' mean
        meta["policy_return"] = (m_meta["policy_return"] + e_meta["policy_return"]) / 2
        meta["policy_score"] = float(normalized_score(env, meta["policy_return"]))
        _save(paths["medium-expert"], data, meta, config)
    return {k: paths[k] for k in kinds}


def _save(path: Path, data, meta, config: GenerateConfig) -> None:
    save_d4rl(path, data, meta)
    _log(
        config,
        f"wrote {path} ({meta['size']} rows, {meta['num_episodes']} complete episodes "
        f"returning {meta['data_return']:.1f}; policy return {meta['policy_return']:.1f})",
    )


def cli(args) -> None:
    """``rlgen dataset generate``: print the path(s) and the policy returns and scores."""
    from rlgen import config as flags

    config = flags.from_arguments(GenerateConfig, args)
    kinds = KINDS if args.kind == "all" else (args.kind,)
    paths = generate_all(
        args.env, kinds, args.size, args.seed, args.data_dir, args.overwrite, config
    )
    for kind, path in paths.items():
        meta = read_metadata(path)
        print(
            f"{kind}: {path} ({meta['size']} rows) policy return {meta['policy_return']:.1f}, "
            f"D4RL score {meta['policy_score']:.1f}; the data's {meta['num_episodes']} complete "
            f"episodes return {meta['data_return']:.1f}"
        )
