"""Running a paper protocol: tasks x arms of multi-seed runs, then a table and plots.

A protocol names its tasks (env, dataset), its arms (config overrides, e.g. Cal-QL vs CQL) and
two scales: ``full`` (the paper's budgets, for a GPU) and ``smoke`` (tiny budgets on a random
dataset, run in CI so every protocol stays runnable). Each run writes its own directory; the
report (``results.json``, ``results.md``, PNGs) aggregates the per-seed evaluations with the
interquartile mean and 95% stratified-bootstrap intervals across seeds (and tasks).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rlgen import budgets, plots, runinfo, stats
from rlgen.train import sweep


@dataclasses.dataclass(frozen=True)
class Arm:
    """One method of a comparison: a label and its config overrides (method settings only:
    they beat the scale's, so budgets belong in ``Protocol.scales``). With ``sweep`` (name ->
    values, :mod:`rlgen.train.sweep`), the arm is one row per point, ``"<label> name=value"``."""

    label: str
    overrides: dict
    sweep: dict = dataclasses.field(default_factory=dict)

    def labels(self) -> list[str]:
        """The arm's row labels: its own, or one per point of its sweep."""
        from rlgen.train.sweep import label

        if not self.sweep:
            return [self.label]
        points = itertools.product(*self.sweep.values())
        return [f"{self.label} {label(dict(zip(self.sweep, p, strict=True)))}" for p in points]


def finetune_config(overrides: dict):
    """The offline-to-online config (``rlgen.train.finetune``) of a run's overrides."""
    from rlgen.train.finetune import FinetuneConfig

    return FinetuneConfig(**overrides)


def finetune_run(config, sweep: dict | None = None):
    """An offline-to-online run (``rlgen.train.finetune``) of ``config`` (vmapping ``sweep``)."""
    from rlgen.train.finetune import FinetuneRun

    return FinetuneRun(config, sweep=sweep)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A paper's experiment. ``make_config(config_overrides)`` builds (and so validates) a run's
    config; ``make_run(config, vmapped_sweep) -> object with .run() -> results`` builds that
    multi-seed run; results carry ``evaluations`` (phase, step, score per seed)."""

    name: str
    claim: str  # what the paper reports, the reference for the comparison
    tasks: dict[str, dict]  # task label -> overrides (env, dataset, ...)
    arms: tuple[Arm, ...]
    scales: dict[str, dict]  # "full" / "smoke" -> shared overrides
    make_run: Callable[[object, dict | None], object]
    make_config: Callable[[dict], object] = finetune_config
    # the tasks of the cpu and smoke scales (default: the first full-scale task)
    small_tasks: dict[str, dict] | None = None
    ablation_task: str | None = None  # extra arms run on this task only (full scale)
    ablations: tuple[Arm, ...] = ()
    # per scale, the score for "env steps to reach" (if the paper counts them)
    thresholds: dict[str, float] = dataclasses.field(default_factory=dict)
    early_window: int = 20_000  # fine-tuning steps plotted separately ("dip" analysis)


# shared by the cpu scales: the largest runs that fit a few minutes per arm on a 2-core CPU, on
# datasets from rlgen's reference hopper policies (rlgen/policies; medium-replay also needs the
# behaviour run's directory, see rlgen.train.generate), cached after the first protocol
CPU = dict(
    **budgets.CPU.overrides(),
    generate_size=100_000,
    num_samples=4,
    progress=False,
)
# generator settings of the cpu scales (SynthER / EDIS): a 256-wide denoiser, short fits
CPU_DIFFUSION = dict(
    diffusion_width=256,
    diffusion_steps=3_000,
    sampler_steps=32,
    num_generated=20_000,
)

SMOKE = dict(
    **budgets.SMOKE.overrides(),
    dataset="random",
    generate_size=2_000,
    num_samples=2,
    backend="mujoco",
    diffusion_width=16,
    diffusion_steps=20,
    diffusion_batch=32,
    sampler_steps=16,
    num_generated=128,
    energy_steps=5,
    energy_examples=16,
    refresh_every=200,
    model_epochs=2,
    rollout_starts=16,
    rollout_every=100,
    progress=False,
)


def tasks_at(protocol: Protocol, scale: str) -> dict[str, dict]:
    """The tasks a scale runs: all at full scale, ``small_tasks`` (default: the first) below."""
    if scale == "full":
        return protocol.tasks
    return protocol.small_tasks or dict(list(protocol.tasks.items())[:1])


def run_overrides(protocol: Protocol, task: str, arm: Arm, scale: str) -> dict:
    """A run's config overrides: the scale's budgets (and smoke's dataset) beat the task's;
    the arm's settings win."""
    tasks = {**protocol.tasks, **tasks_at(protocol, scale)}
    return {**tasks[task], **protocol.scales[scale], **arm.overrides}


def _runs(protocol: Protocol, scale: str) -> list[tuple[str, Arm]]:
    runs = [(task, arm) for task in tasks_at(protocol, scale) for arm in protocol.arms]
    if scale == "full" and protocol.ablation_task:
        runs += [(protocol.ablation_task, arm) for arm in protocol.ablations]
    return runs


def run_protocol(protocol: Protocol, scale: str, out: str | os.PathLike) -> dict:
    """Run every (task, arm) at ``scale``, then write the report. Finished runs are read back
    and interrupted ones resume from their checkpoints, so the same command continues a
    protocol across calls (delete ``out`` to start over)."""
    if scale not in protocol.scales:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(protocol.scales)}")
    out = Path(out)
    records = []
    for task, arm in _runs(protocol, scale):
        run_dir = out / task / arm.label.replace(" ", "_").replace("/", "-")
        overrides = run_overrides(protocol, task, arm, scale)
        # resume: a run cut short (e.g. by a time limit) continues from its checkpoint
        overrides.update(run_dir=str(run_dir), resume=True)
        if arm.sweep:  # one compiled run per static value, finished ones read back
            print(f"[{protocol.name}] {task} / {arm.label}: sweep {arm.sweep}", flush=True)
            config = protocol.make_config(overrides)
            points = sweep.run(protocol.make_run, config, arm.sweep)["points"]
            for label, point in zip(arm.labels(), points, strict=True):
                records.append({"task": task, "arm": label, "results": point})
            continue
        done = run_dir / "results.json"
        if done.exists():
            results = json.loads(done.read_text())
        else:
            print(f"[{protocol.name}] {task} / {arm.label}", flush=True)
            start = time.perf_counter()
            results = protocol.make_run(protocol.make_config(overrides), None).run()
            print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
        records.append({"task": task, "arm": arm.label, "results": results})
    return report(protocol, scale, records, out)


# report column -> the evaluation phases it reads (online-only runs have phase "online")
COLUMNS = {"after offline": ("pretrain",), "after online": ("finetune", "online")}


def _evals(results: dict, column: str) -> list[dict]:
    return [e for e in results["evaluations"] if e["phase"] in COLUMNS[column]]


def _scores(records, column: str) -> dict[str, dict[str, list[float]]]:
    """arm -> task -> per-seed score at the last evaluation of the ``column``'s phase."""
    table: dict[str, dict[str, list[float]]] = {}
    for r in records:
        evals = _evals(r["results"], column)
        if evals:
            table.setdefault(r["arm"], {})[r["task"]] = evals[-1]["score"]
    return table


def _steps_to(evals: list[dict], threshold: float) -> list[float]:
    """Per seed, the first fine-tuning step whose score reaches ``threshold`` (inf: never)."""
    scores = np.array([e["score"] for e in evals])  # (evals, seeds)
    steps = np.array([e["step"] for e in evals], float)
    reached = scores >= threshold
    return [float(steps[np.argmax(col)]) if col.any() else float("inf") for col in reached.T]


def _interval(per_task: dict[str, list[float]]) -> tuple[float, float, float]:
    seeds = min(len(v) for v in per_task.values())
    matrix = np.array([v[:seeds] for v in per_task.values()]).T  # (seeds, tasks)
    return stats.bootstrap_ci(matrix)


def report(protocol: Protocol, scale: str, records: list[dict], out: Path) -> dict:
    """results.json (per-seed data and aggregates), results.md (table), PNG plots."""
    lines = [
        f"# {protocol.name} ({scale} scale)",
        "",
        f"Paper's claim: {protocol.claim}",
        "",
        "| task | arm | after offline | after online | wall s |",
        "|---|---|---:|---:|---:|",
    ]
    for r in records:
        res = r["results"]
        cells = []
        for column in COLUMNS:
            evals = _evals(res, column)
            cells.append(_fmt(stats.bootstrap_ci(evals[-1]["score"])) if evals else "-")
        lines.append(
            f"| {r['task']} | {r['arm']} | {cells[0]} | {cells[1]} | {res['wall_time_s']:.0f} |"
        )
    aggregates = {}
    for name, phases in COLUMNS.items():
        table = _scores(records, name)
        if table:
            aggregates[name] = {arm: _interval(per_task) for arm, per_task in table.items()}
            plots.interval_bars(
                aggregates[name],
                out / f"iqm_{phases[0]}.png",
                f"IQM D4RL-normalised score {name} (95% CI)",
                protocol.name,
            )
    lines += ["", "IQM over seeds and tasks, 95% stratified bootstrap CI:", ""]
    for name, per_arm in aggregates.items():
        for arm, interval in per_arm.items():
            lines.append(f"- {name}, {arm}: {_fmt(interval)}")
    threshold = protocol.thresholds.get(scale)
    if threshold is not None:
        lines += ["", f"Env steps to reach score {threshold} (per seed):", ""]
        for r in records:
            evals = _evals(r["results"], "after online")
            if evals:
                steps = _steps_to(evals, threshold)
                lines.append(f"- {r['task']} / {r['arm']}: {steps}")
    for task in dict.fromkeys(r["task"] for r in records):
        curves = {}
        for r in records:
            evals = _evals(r["results"], "after online")
            if r["task"] == task and evals:
                curves[r["arm"]] = ([e["step"] for e in evals], [e["score"] for e in evals])
        if curves:
            plots.score_curves(curves, out / f"curve_{task}.png", f"{protocol.name}: {task}")
            plots.score_curves(
                curves,
                out / f"curve_{task}_early.png",
                f"{protocol.name}: {task}, first {protocol.early_window} steps",
                xmax=protocol.early_window,
            )
    summary = {
        "protocol": protocol.name,
        "scale": scale,
        "claim": protocol.claim,
        "system": runinfo.describe(),
        "aggregates": aggregates,
        "runs": records,
    }
    write_report(out, summary, lines)
    return summary


def write_report(out: Path, summary: dict, lines: list[str]) -> None:
    """``out/results.json`` (``summary``) and ``out/results.md`` (``lines``), each written
    atomically; the table is printed too."""
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "results.json", json.dumps(summary, indent=2, default=str))
    _atomic_write(out / "results.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def _fmt(interval) -> str:
    value, low, high = interval
    return f"{value:.1f} [{low:.1f}, {high:.1f}]"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(protocol: Protocol, argv: list[str] | None = None) -> dict:
    """``python -m experiments.<name> [--scale full|smoke] [--out DIR]``."""
    from rlgen.train.runner import enable_compilation_cache

    parser = argparse.ArgumentParser(
        prog=f"experiments.{protocol.name}", description=protocol.claim
    )
    parser.add_argument("--scale", default="full", choices=tuple(protocol.scales))
    parser.add_argument("--out", default=f"results/experiments/{protocol.name}")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    return run_protocol(protocol, args.scale, args.out)
