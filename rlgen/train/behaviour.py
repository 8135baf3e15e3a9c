"""Reference behaviour policies: one long SAC run per task whose actor snapshots become the
medium and expert policies of generated datasets (``rlgen dataset train-behaviour``).

The run is rlgen's online SAC (:class:`~rlgen.train.runner.OnlineRun`, one seed, one env,
UTD 1, 256x256 nets, batch 256: the SAC setup D4RL's datasets came from), evaluated over 10
deterministic episodes every ``eval_every`` env steps. Each evaluation also writes the actor's
parameters to ``run_dir/snapshots/step_<n>.npz`` with the return, so the medium point can be
chosen once the expert's return is known; checkpoints let the run continue across sessions
(``--resume``). The replay buffer holds the whole run, so medium-replay (every transition up
to the medium point) can be read back from the final checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path

import jax
import numpy as np
from flax import traverse_util

from rlgen.config import option
from rlgen.data.scores import REFERENCE_RETURNS, normalized_score
from rlgen.train.distributed import fetch, is_main
from rlgen.train.runner import OnlineConfig, OnlineRun, write_json


@dataclasses.dataclass(frozen=True)
class BehaviourConfig(OnlineConfig):
    """A long single-seed SAC run with actor snapshots at every evaluation."""

    steps: int = option("env steps, warm-up included", default=1_000_000)
    warmup: int = option("initial env steps with uniform random actions", default=10_000)
    buffer_size: int = option("replay capacity (the whole run: medium-replay)", default=1_000_000)
    eval_every: int = option("env steps between evaluations and snapshots", default=10_000)
    checkpoint_every: int = option("env steps between checkpoints", default=20_000)
    run_dir: str = option("directory for snapshots, metrics, checkpoints", default="runs/behaviour")

    def __post_init__(self):
        super().__post_init__()
        if self.seeds != 1:
            raise ValueError(f"a behaviour run has one seed, got seeds={self.seeds}")


class BehaviourRun(OnlineRun):
    """:class:`OnlineRun` that writes the actor of every evaluation to ``snapshots/``."""

    def _evaluate_and_log(self, state, step: int) -> np.ndarray:
        returns = super()._evaluate_and_log(state, step)
        actor = fetch(jax.tree.map(lambda x: x[0], state.agent.actor.params))
        if is_main():
            save_snapshot(self.run_dir / "snapshots", step, actor, float(returns[0]))
        return returns


def snapshot_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}.npz"


def save_snapshot(directory: Path, step: int, params, eval_return: float) -> Path:
    """Write actor ``params`` with their step and evaluation return, atomically."""
    path = snapshot_path(directory, step)
    arrays = {**_flat("params", params), "step": step, "eval_return": eval_return}
    _write_npz(path, arrays, compressed=False)
    return path


def load_snapshot(path: Path) -> tuple[dict, int, float]:
    """(actor params, step, evaluation return) of a snapshot file."""
    with np.load(path) as f:
        return _unflat(f, "params"), int(f["step"]), float(f["eval_return"])


def _flat(prefix: str, params) -> dict[str, np.ndarray]:
    """``params`` as ``{"prefix/layer/name": array}``, the layout of the npz files here."""
    flat = traverse_util.flatten_dict(params)
    return {"/".join((prefix, *k)): np.asarray(v) for k, v in flat.items()}


def _unflat(npz, prefix: str) -> dict:
    """The params a ``_flat(prefix, ...)`` layout holds in an opened npz file."""
    flat = {tuple(k.split("/")[1:]): npz[k] for k in npz.files if k.split("/")[0] == prefix}
    return traverse_util.unflatten_dict(flat)


def _write_npz(path: Path, arrays: dict, compressed: bool) -> None:
    """Write ``arrays`` to ``path`` atomically, readable by every user (mkstemp makes 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def snapshots(run_dir: str | os.PathLike) -> list[tuple[int, float, Path]]:
    """(step, evaluation return, path) of every snapshot of a run, by step."""
    found = []
    for path in sorted((Path(run_dir) / "snapshots").glob("step_*.npz")):
        _, step, ret = load_snapshot(path)
        found.append((step, ret, path))
    return found


POLICY_DIR = Path(__file__).parents[1] / "policies"
# The return an "expert" policy reaches at least (D4RL's experts: fully trained SAC), and the
# band of a "medium" one as fractions of D4RL's expert return (D4RL: "about 1/3 of the
# expert"). Checked on the mean return of deterministic evaluation episodes.
EXPERT_MIN_RETURN = {
    "hopper": 3_000.0,
    "halfcheetah": 10_000.0,
    "walker2d": 4_000.0,
    "ant": 3_500.0,
}
MEDIUM_BAND = (0.2, 0.6)


def level_band(env: str, kind: str) -> tuple[float, float]:
    """The (low, high) mean episode return a ``kind`` ("medium" or "expert") policy of ``env``
    must reach."""
    if kind == "expert":
        return EXPERT_MIN_RETURN[env], math.inf
    expert = REFERENCE_RETURNS[env][1]
    return MEDIUM_BAND[0] * expert, MEDIUM_BAND[1] * expert


def choose(env: str, found: list[tuple[int, float, Path]], medium_fraction: float = 1 / 3):
    """(medium, expert) snapshots of a run: expert the final one (the fully trained policy, as
    D4RL's), medium the first whose return reaches ``medium_fraction`` of D4RL's expert return
    (so a medium point exists before the run reaches the expert level, and a package remade
    from a longer run keeps it)."""
    target = medium_fraction * REFERENCE_RETURNS[env][1]
    medium = next((s for s in found if s[1] >= target), None)
    if medium is None:
        best = max((s[1] for s in found), default=float("nan"))
        raise ValueError(
            f"no snapshot reached the medium point ({target:.0f}, 1/3 of D4RL's {env} expert "
            f"return; best so far {best:.0f}): train longer (rlgen dataset train-behaviour "
            "--resume)"
        )
    return medium, found[-1]


def package(run_dir, env: str, out_dir=POLICY_DIR, medium_fraction: float = 1 / 3) -> Path:
    """Write the run's medium and expert actors (:func:`choose`) to ``out_dir/<env>.npz`` and
    what made them to ``out_dir/<env>.json``. Returns the ``.npz`` path."""
    picked = choose(env, snapshots(run_dir), medium_fraction)
    return write_package(
        run_dir, env, dict(zip(("medium", "expert"), picked, strict=True)), out_dir
    )


def write_package(run_dir, env: str, chosen: dict, out_dir=POLICY_DIR) -> Path:
    """``chosen``'s snapshots (kind -> (step, return, path)) as a package: the actors in
    ``<env>.npz``; steps, 10-episode returns, D4RL scores, whether each reached its level, the
    run's command, config and versions in ``<env>.json``."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    config = json.loads((run_dir / "config.json").read_text())
    system = json.loads((run_dir / "system.json").read_text())
    arrays, info = {}, {}
    for kind, (step, ret, path) in chosen.items():
        arrays.update(_flat(kind, load_snapshot(path)[0]))
        low, high = level_band(env, kind)
        info[kind] = {
            "step": step,
            "eval_return": ret,
            "eval_score": float(normalized_score(env, ret)),
            "eval_episodes": config["eval_episodes"],
            "level_reached": bool(low <= ret <= high),  # deterministic evaluation
        }
    rates = [
        r["env_steps_per_s"]
        for r in map(json.loads, open(run_dir / "metrics.jsonl"))
        if "phase_warmup" not in r and "env_steps_per_s" in r
    ]
    record = {
        "env": env,
        **info,
        "train_env_steps_per_s": float(np.median(rates)) if rates else math.nan,
        "hidden": config["hidden"],
        "command": behaviour_command(config),
        "run_config": config,
        "versions": system["versions"],
        "device": system["device"],
    }
    npz = out_dir / f"{env}.npz"
    _write_npz(npz, arrays, compressed=True)
    write_json(out_dir / f"{env}.json", record)
    return npz


def behaviour_command(config: dict) -> str:
    """The ``rlgen dataset train-behaviour`` command that reproduces a run's config."""
    defaults = dataclasses.asdict(BehaviourConfig())
    skip = ("resume", "progress")
    flags = []
    for name, value in config.items():
        if (
            name in skip
            or defaults.get(name) == value
            or (isinstance(value, list) and tuple(value) == defaults.get(name))
        ):
            continue
        text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
        flags.append(f"--{name.replace('_', '-')} {text}")
    return " ".join(["rlgen dataset train-behaviour", *flags])


REPLAY_FIELDS = ("obs", "action", "reward", "next_obs", "terminal", "truncated")


def replay_rows(run_dir, rows: int) -> dict[str, np.ndarray]:
    """The first ``rows`` transitions of a behaviour run's replay buffer (insertion order),
    from its latest checkpoint."""
    from rlgen.train import checkpoint

    run_dir = Path(run_dir)
    saved = json.loads((run_dir / "config.json").read_text())
    saved["hidden"] = tuple(saved["hidden"])
    run = BehaviourRun(BehaviourConfig(**{**saved, "progress": False}))
    if run.config.num_envs != 1:
        raise ValueError(f"{run_dir}: replay rows are in time order only with num_envs=1")
    state = checkpoint.restore(checkpoint.manager(run_dir / "checkpoints"), run.init_state())
    filled, steps = int(fetch(state.buffer.size)[0]), int(fetch(state.env_steps)[0])
    if filled < rows or steps > run.config.buffer_size:  # too few, or the start overwritten
        raise ValueError(
            f"{run_dir}'s latest checkpoint holds {filled} replay rows of {steps} env steps "
            f"(capacity {run.config.buffer_size}); the first {rows} are needed"
        )
    data = fetch(jax.tree.map(lambda x: x[0, :rows], state.buffer.data))
    return {k: np.asarray(getattr(data, k)) for k in REPLAY_FIELDS}


def load_policy(env: str, kind: str, directory=POLICY_DIR) -> tuple[dict, dict]:
    """(actor params, record) of a shipped ``kind`` ("medium" or "expert") policy of ``env``;
    the record is the package's JSON with ``hidden`` and this kind's returns."""
    directory = Path(directory)
    npz, record_path = directory / f"{env}.npz", directory / f"{env}.json"
    if not npz.exists():
        shipped = sorted(p.stem for p in directory.glob("*.npz"))
        raise FileNotFoundError(
            f"no reference policies for {env!r} in {directory} (shipped: {shipped}); train "
            f"them with `rlgen dataset train-behaviour --env {env}` and package the run"
        )
    if kind not in ("medium", "expert"):
        raise ValueError(f"kind must be medium or expert, got {kind!r}")
    with np.load(npz) as f:
        params = _unflat(f, kind)
    return params, json.loads(record_path.read_text())


def train_cli(args) -> None:
    """``rlgen dataset train-behaviour``: train (or continue) and print the evaluations."""
    from rlgen import config as flags

    config = flags.from_arguments(BehaviourConfig, args)
    results = BehaviourRun(config).run()
    for step, ret, _ in snapshots(config.run_dir):
        print(f"step {step:>8}: eval return {ret:.1f}")
    print(f"wall time {results['wall_time_s']:.1f} s; run directory {config.run_dir}")
