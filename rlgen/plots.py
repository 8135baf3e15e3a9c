"""Learning-curve plots from a run's ``metrics.jsonl`` (mean over seeds with a +-1 std band)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, out)
    return out
