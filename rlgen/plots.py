"""Plots: learning curves (mean +- std from ``metrics.jsonl``, or bootstrap bands from per-seed
scores) and interval plots (IQM with confidence intervals). PNGs are written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    with open(Path(run_dir) / "metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def learning_curves(
    runs: dict[str, str | os.PathLike],
    out: str | os.PathLike,
    metric: str = "eval_return",
    title: str = "",
) -> Path:
    """Plot ``metric`` against env steps for each named run; write a PNG atomically."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, run_dir in runs.items():
        rows = [r for r in read_metrics(run_dir) if metric in r]
        steps = [r["env_steps"] for r in rows]
        mean = [r[metric] for r in rows]
        std = [r.get(f"{metric}_std", 0.0) for r in rows]
        ax.plot(steps, mean, marker="o", label=label)
        ax.fill_between(
            steps,
            [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)],
            alpha=0.2,
        )
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, out)


def _save(fig, out: str | os.PathLike) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def score_curves(
    curves: dict[str, tuple[list[int], list[list[float]]]],
    out: str | os.PathLike,
    title: str = "",
    ylabel: str = "D4RL-normalised score",
    xmax: int | None = None,
    xlabel: str = "fine-tuning env steps per seed",
) -> Path:
    """Mean over seeds with a 95% bootstrap band, per label: ``curves[label] = (steps,
    per_step_seed_scores)``; ``xmax`` crops the x axis (e.g. the first 20k steps)."""
    from rlgen.stats import mean_ci

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (steps, scores) in curves.items():
        stats = [mean_ci(np.asarray(s), num_resamples=500) for s in scores]
        mean, low, high = (np.array(v) for v in zip(*stats, strict=True))
        ax.plot(steps, mean, marker="o", markersize=3, label=label)
        ax.fill_between(steps, low, high, alpha=0.2)
    if xmax is not None:
        ax.set_xlim(0, xmax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, out)


def interval_bars(
    intervals: dict[str, tuple[float, float, float]], out: str | os.PathLike, xlabel: str, title=""
) -> Path:
    """Horizontal point estimates with their intervals: ``intervals[label] = (value, low,
    high)``, e.g. IQM with its bootstrap CI."""
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(intervals) + 1.2))
    labels = list(intervals)
    for i, label in enumerate(labels):
        value, low, high = intervals[label]
        ax.plot([low, high], [i, i], linewidth=6, alpha=0.4)
        ax.plot([value], [i], "k|", markersize=14)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _save(fig, out)


def sweep_scores(points: list[dict], name: str, out: str | os.PathLike) -> Path:
    """Final IQM with its 95% interval against the swept value ``name``: one line per
    combination of the other swept values. ``points``: a sweep report's points (``values``,
    ``final`` with ``iqm`` / ``low`` / ``high``)."""
    lines: dict[str, list[dict]] = {}
    for point in points:
        others = ", ".join(f"{k}={v}" for k, v in point["values"].items() if k != name)
        lines.setdefault(others, []).append(point)
    numeric = all(isinstance(p["values"][name], int | float) for p in points)
    fig, ax = plt.subplots(figsize=(6, 4))
    for others, members in lines.items():
        xs = [p["values"][name] if numeric else str(p["values"][name]) for p in members]
        iqm = np.array([p["final"]["iqm"] for p in members])
        err = [
            iqm - [p["final"]["low"] for p in members],
            [p["final"]["high"] for p in members] - iqm,
        ]
        ax.errorbar(xs, iqm, yerr=err, marker="o", capsize=3, label=others or None)
    if numeric and min(p["values"][name] for p in points) > 0 and "lr" in name:
        ax.set_xscale("log")
    ax.set_xlabel(name)
    ax.set_ylabel("final D4RL-normalised score (IQM)")
    ax.grid(alpha=0.3)
    if any(lines):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)
