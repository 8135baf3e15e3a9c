"""Sweeps: grids of hyperparameters x seeds in one compiled program, other values one by one.

A name of the agent's ``HParams`` (learning rates, ``cql_alpha``, ``expectile``, ``tau``, ...) is
**vmapped**: the grid's points x ``seeds`` become the lanes of the run's one seed axis, so the
whole grid is one compile. Lane ``p * seeds + s`` is point ``p`` with seed ``s``, and uses the
keys seed ``s`` uses in a run without a sweep: each point of a sweep is the run it stands for.

Any other config field (``utd``, ``hidden``, ``batch_size``, ``num_critics``, ...) shapes the
compiled program, so it is **static**: one run per value, one after another, each in
``run_dir/<name>=<value>`` (and each may hold a vmapped grid). Static runs are resumable: with
``resume`` a finished one is read back and an unfinished one continues from its checkpoint.

The report of a sweep (``run_dir/sweep.json``, ``sweep.md``, ``sweep_<name>.png`` per swept
name, ``sweep_curves.png``) has one entry per point: its values, per-seed scores after offline
pretraining and at the end, their IQM with a 95% bootstrap interval, and its evaluations, also
written as plain files (``run_dir/points/<label>/evaluations.{jsonl,csv}``, with per-point
metrics beside them) for readers without rlgen.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rlgen.stats import bootstrap_ci
from rlgen.train import distributed
from rlgen.train.logger import Logger, summarize

# run-level fields that are not experiment settings
UNSWEEPABLE = ("run_dir", "resume", "progress", "seeds")
# HParams that also shape data outside the agent (Monte-Carlo returns of the dataset and the
# online episodes use the run's gamma), so they are swept as static values
DATA_HPARAMS = ("gamma",)


def parse(specs: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``["NAME=v1,v2", ...]`` as ``{name: (v1, v2)}`` (raw strings), in the order given."""
    sweep: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        items = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not name or not items:
            raise ValueError(f"--sweep takes NAME=V1,V2,..., got {spec!r}")
        if name in sweep:
            raise ValueError(f"--sweep {name} given twice")
        sweep[name] = items
    return sweep


def vmappable(config) -> set[str]:
    """Names a vmapped sweep of a run of ``config`` may vary: the fields of its agent's
    ``HParams`` (``config.hparams()``; but those in ``DATA_HPARAMS``) and the config's
    ``TRACED_SETTINGS`` (run-level values that are arrays in the compiled program)."""
    hp_names = {f.name for f in dataclasses.fields(config.hparams())}
    return hp_names - set(DATA_HPARAMS) | set(getattr(config, "TRACED_SETTINGS", ()))


def split(sweep: Mapping[str, Sequence], config) -> tuple[dict, dict]:
    """(vmapped, static) parts of ``sweep`` for a run of ``config``; values converted to the
    field's type. Unknown names raise."""
    hp_names = vmappable(config)
    config_fields = {f.name: f for f in dataclasses.fields(config)}
    vmapped, static = {}, {}
    for name, values in sweep.items():
        if name in hp_names:
            vmapped[name] = tuple(float(v) for v in values)
        elif name in config_fields and name not in UNSWEEPABLE:
            kind = typing.get_type_hints(type(config))[name]
            static[name] = tuple(_convert(name, kind, v) for v in values)
        else:
            known = sorted(hp_names | (set(config_fields) - set(UNSWEEPABLE)))
            raise ValueError(f"cannot sweep {name!r}: not a setting of this run; known: {known}")
    return vmapped, static


def _convert(name: str, kind, value):
    if not isinstance(value, str):
        return value
    if typing.get_origin(kind) is tuple:  # hidden=256x256
        return tuple(int(v) for v in value.split("x"))
    base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
    if base is bool:
        if value.lower() not in ("true", "false"):
            raise ValueError(f"--sweep {name} takes true or false, got {value!r}")
        return value.lower() == "true"
    try:
        return base(value)
    except ValueError:
        raise ValueError(f"--sweep {name}: {value!r} is not a {base.__name__}") from None


@dataclasses.dataclass(frozen=True)
class Grid:
    """The points of a vmapped sweep: every combination of the names' values."""

    names: tuple[str, ...] = ()
    values: tuple[tuple[float, ...], ...] = ()

    @classmethod
    def of(cls, sweep: Mapping[str, Sequence[float]] | None, config) -> Grid:
        """The grid of ``sweep`` over the :func:`vmappable` names of a run of ``config``;
        another name is refused, with a pointer to static sweeps."""
        sweep = dict(sweep or {})
        allowed = vmappable(config)
        for name, values in sweep.items():
            if name not in allowed:
                raise ValueError(
                    f"{name!r} cannot be vmapped: only the agent's hyperparameters and traced "
                    f"settings ({', '.join(sorted(allowed))}) can share one compiled "
                    f"program; {name} changes the program (or, for gamma, the data's returns), so "
                    "sweep it as a static value: one run per value with the CLI's --sweep, or "
                    "rlgen.train.sweep.run"
                )
            if not len(values):
                raise ValueError(f"sweep {name!r} has no values")
        return cls(tuple(sweep), tuple(tuple(float(v) for v in vs) for vs in sweep.values()))

    def __len__(self) -> int:
        return math.prod(len(v) for v in self.values)

    @property
    def points(self) -> list[dict[str, float]]:
        return [dict(zip(self.names, p, strict=True)) for p in itertools.product(*self.values)]

    def lane_hparams(self, hp, seeds: int):
        """``hp`` with one float32 value per lane (points x seeds, point-major), or None
        without a sweep (the agent keeps its own)."""
        if not self.names:
            return None
        lanes = len(self) * seeds
        leaves = {f.name: getattr(hp, f.name) for f in dataclasses.fields(hp)}
        full = {
            k: None if v is None else jnp.full((lanes,), v, jnp.float32) for k, v in leaves.items()
        }
        full.update((name, self.lane_values(name, seeds)) for name in self.names if name in full)
        return hp.replace(**full)

    def lanes(self, point: int, seeds: int) -> slice:
        """The lanes of point ``point`` (point-major: ``point * seeds`` onwards)."""
        return slice(point * seeds, (point + 1) * seeds)

    def lane_values(self, name: str, seeds: int) -> jax.Array:
        """Swept ``name``'s value per lane (points x seeds, point-major), float32."""
        values = [point[name] for point in self.points]
        return jnp.asarray(np.repeat(values, seeds), jnp.float32)


def label(point: Mapping) -> str:
    """``name=value,...`` of a point (``run`` for the empty one), safe as a directory name."""
    if not point:
        return "run"
    return ",".join(f"{k}={_text(v)}" for k, v in point.items())


def _text(value) -> str:
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


class PointLogs:
    """Per-point metrics of a vmapped sweep: ``run_dir/points/<label>/<phase>/metrics.*``, the
    mean and spread over that point's seeds (nothing without a sweep)."""

    def __init__(self, run_dir: Path, grid: Grid, seeds: int):
        self.grid, self.seeds = grid, seeds
        self.run_dir = Path(run_dir)
        self._loggers: dict[tuple[str, int], Logger] = {}

    def log(
        self, phase: str, step: int, per_lane: dict[str, np.ndarray], step_name="env_steps"
    ) -> None:
        if not (self.grid.names and distributed.is_main()):
            return
        for p, point in enumerate(self.grid.points):
            key = (phase, p)
            if key not in self._loggers:
                path = self.run_dir / "points" / label(point) / phase
                path.mkdir(parents=True, exist_ok=True)
                self._loggers[key] = Logger(path, 0, progress=False, step_name=step_name)
            lanes = self.grid.lanes(p, self.seeds)
            row = summarize({k: np.asarray(v)[lanes] for k, v in per_lane.items()})
            self._loggers[key].log(step, row, 0, 0)

    def close(self) -> None:
        for logger in self._loggers.values():
            logger.close()


# --------------------------------------------------------------------------------------------
# Splitting results, running static values, the report


def split_results(results: dict, grid: Grid, seeds: int) -> list[dict]:
    """A run's results per point: its scalars (``wall_time_s``, ...), every per-lane
    ``*_per_seed`` list and every evaluation's
    ``return`` / ``score`` cut to that point's seeds."""
    points = []
    for p, point in enumerate(grid.points if grid.names else [{}]):
        lanes = grid.lanes(p, seeds)
        out = {k: v for k, v in results.items() if not isinstance(v, list | dict)}
        out.update(
            (k, v[lanes])
            for k, v in results.items()
            if k.endswith("_per_seed") and isinstance(v, list)
        )
        out["evaluations"] = [
            {**e, "return": e["return"][lanes], "score": e["score"][lanes]}
            for e in results.get("evaluations", [])
        ]
        points.append({"values": point, **out})
    return points


def run(make_run: Callable, config, sweep: Mapping[str, Sequence]) -> dict:
    """Run ``sweep`` (raw or typed values) for ``config`` (a run config with ``hparams()``):
    each static combination is one run, made by ``make_run(config, vmapped_sweep)``, in
    ``config.run_dir/<label>`` (or ``run_dir`` itself when nothing is static), one after
    another; returns the report (also written)."""
    vmapped, static = split(sweep, config)
    grid = Grid.of(vmapped, config)
    run_dir = Path(config.run_dir)
    combos = [dict(zip(static, c, strict=True)) for c in itertools.product(*static.values())]
    points = []
    for combo in combos:
        sub_dir = run_dir / label(combo) if combo else run_dir
        done = sub_dir / "results.json"
        if config.resume and done.exists():
            print(f"sweep: {label(combo)} already finished, read back from {done}", flush=True)
            results = json.loads(done.read_text())
        else:
            if combo:
                print(f"sweep: {label(combo)}", flush=True)
            sub = dataclasses.replace(config, run_dir=str(sub_dir), **combo)
            results = make_run(sub, vmapped).run()
        for point in split_results(results, grid, config.seeds):
            point["values"] = {**combo, **point["values"]}
            points.append(point)
    return write_report(run_dir, config.env, points, list(static) + list(vmapped))


def cli(make_run: Callable, config, specs: Sequence[str]) -> dict:
    """The CLI's ``--sweep NAME=V1,V2`` (repeatable): :func:`run`, then the table and where the
    files are."""
    report = run(make_run, config, parse(specs))
    print("\n" + markdown(report))
    print(f"run directory {config.run_dir} (sweep.json, sweep.md, plots, points/)")
    return report


def _interval(scores) -> dict[str, float]:
    value, low, high = bootstrap_ci(np.asarray(scores, np.float64))
    return {"iqm": value, "low": low, "high": high}


def write_report(run_dir: Path, env: str, points: list[dict], names: list[str]) -> dict:
    """``sweep.json``, ``sweep.md``, plots and per-point evaluation files for ``points``."""
    from rlgen import plots
    from rlgen.train.runner import write_json

    for point in points:  # the last evaluation is the run's final one, offline or online
        if "offline_score_per_seed" in point:
            point["offline"] = _interval(point["offline_score_per_seed"])
        point["final"] = _interval(point["evaluations"][-1]["score"])
        _write_evaluations(run_dir / "points" / label(point["values"]), point["evaluations"])
    report = {"env": env, "names": names, "points": points}
    write_json(run_dir / "sweep.json", report)
    tmp = run_dir / "sweep.md.tmp"
    tmp.write_text(markdown(report))
    tmp.replace(run_dir / "sweep.md")
    for name in names:
        plots.sweep_scores(points, name, run_dir / f"sweep_{name}.png")
    curves = {
        label(p["values"]): (
            [e["step"] for e in p["evaluations"]],
            [e["score"] for e in p["evaluations"]],
        )
        for p in points
        if p["evaluations"]
    }
    if curves:
        plots.score_curves(
            curves, run_dir / "sweep_curves.png", title="sweep", xlabel="step per seed"
        )
    return report


def _write_evaluations(directory: Path, evaluations: list[dict]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "evaluations.jsonl.tmp", "w") as f:
        for e in evaluations:
            f.write(json.dumps(e) + "\n")
    (directory / "evaluations.jsonl.tmp").replace(directory / "evaluations.jsonl")
    with open(directory / "evaluations.csv.tmp", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["phase", "step", "seed", "return", "score"])
        for e in evaluations:
            for seed, (ret, score) in enumerate(zip(e["return"], e["score"], strict=True)):
                writer.writerow([e.get("phase", ""), e["step"], seed, ret, score])
    (directory / "evaluations.csv.tmp").replace(directory / "evaluations.csv")


def markdown(report: dict) -> str:
    names = report["names"]
    offline = any("offline" in p for p in report["points"])
    head = [*names, *(["after offline, IQM [95% CI]"] if offline else []), "final, IQM [95% CI]"]
    lines = [
        f"# Sweep on {report['env']} (D4RL-normalised score)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for point in report["points"]:
        cells = [_text(point["values"][n]) for n in names]
        for key in (("offline",) if offline else ()) + ("final",):
            i = point[key]
            cells.append(f"{i['iqm']:.1f} [{i['low']:.1f}, {i['high']:.1f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
