"""World-model quality: open-loop 1- and 5-step prediction error of the dynamics ensemble on
held-out real trajectories, against the constant-delta baseline (obs + k * mean training delta).

Each task's dataset is split by trajectory: the last ``holdout`` share of its trajectories is
held out, and one ensemble per seed (vmapped) is fitted on ``train_rows`` random rows of the
rest -- 10k, the small-data protocol's size.

    python -m experiments.model_quality --scale full   # GPU
    python -m experiments.model_quality --scale cpu    # 2-core CPU, hopper only
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

from experiments.common import CPU, write_report
from rlgen import runinfo
from rlgen.data.returns import episode_ends
from rlgen.gen import dynamics
from rlgen.train.finetune import FinetuneConfig, load_dataset

HORIZONS = (1, 5)
SCALES = {
    "full": dict(tasks=("hopper", "walker2d"), seeds=5, train_rows=10_000, data={}),
    "cpu": dict(
        tasks=("hopper",),
        seeds=4,
        train_rows=10_000,
        data=dict(generate_size=CPU["generate_size"]),
    ),
    "smoke": dict(
        tasks=("hopper",),
        seeds=2,
        train_rows=1_000,
        max_epochs=2,
        dataset="random",
        data=dict(generate_size=2_000, backend="mujoco"),
    ),
}


def split_by_trajectory(data, holdout: float):
    """(training rows, held-out rows in order, their trajectory ends): the last ``holdout``
    share of trajectories is held out whole."""
    ends = np.asarray(episode_ends(data.terminal, data.truncated, data.obs, data.next_obs))
    last_rows = np.flatnonzero(ends)
    if len(last_rows) < 2:
        raise ValueError(f"need at least 2 trajectories to hold some out, got {len(last_rows)}")
    kept = min(max(int(len(last_rows) * (1 - holdout)), 1), len(last_rows) - 1)
    cut = last_rows[kept - 1] + 1
    train = jax.tree.map(lambda x: x[:cut], data)
    held = jax.tree.map(lambda x: x[cut:], data)
    return train, held, ends[cut:]


def measure(task: str, scale: dict, seed: int = 0) -> dict:
    """Fit one ensemble per seed on the task's training rows; errors on its held-out rows."""
    dataset = scale.get("dataset", "medium")
    config = FinetuneConfig(env=task, dataset=dataset, seed=seed, progress=False, **scale["data"])
    data, info = load_dataset(config)
    train, held, ends = split_by_trajectory(data, holdout=0.2)
    rows = np.random.default_rng(seed).permutation(len(train))[: scale["train_rows"]]
    train = jax.tree.map(lambda x: x[np.sort(rows)], train)
    model = dynamics.Config(data.obs_dim, data.action_dim, max_epochs=scale.get("max_epochs", 200))
    keys = jax.random.split(jax.random.key(seed), scale["seeds"])
    start = time.perf_counter()
    states, metrics = jax.jit(jax.vmap(lambda k: dynamics.fit(k, model, train)))(keys)
    errors = jax.vmap(lambda s: dynamics.prediction_error(s, held, ends, HORIZONS))(states)
    errors = jax.device_get(errors)
    return {
        "task": task,
        "dataset": dataset,
        "dataset_rows": info["rows"],
        "train_rows": len(train),
        "held_out_rows": len(held),
        "epochs_per_seed": np.asarray(metrics["num_epochs"]).tolist(),
        "fit_and_eval_s": time.perf_counter() - start,
        **{k: np.asarray(v).tolist() for k, v in errors.items()},
    }


def report(rows: list[dict], scale: str, out: Path) -> None:
    lines = [
        f"# model_quality ({scale} scale)",
        "",
        "Open-loop prediction MSE (mean over obs dims and starts) on held-out trajectories, "
        "mean +- std over seeds; baseline: obs + k * mean training delta.",
        "",
        "| task | train rows | held-out rows | k | model MSE | baseline MSE | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for k in HORIZONS:
            model, base = np.array(r[f"model_mse_{k}"]), np.array(r[f"baseline_mse_{k}"])
            lines.append(
                f"| {r['task']} | {r['train_rows']} | {r['held_out_rows']} | {k} "
                f"| {model.mean():.4g} +- {model.std():.2g} | {base.mean():.4g} "
                f"| {(model / base).mean():.3f} |"
            )
    write_report(out, {"scale": scale, "system": runinfo.describe(), "tasks": rows}, lines)


def main(argv: list[str] | None = None) -> None:
    from rlgen.train.runner import enable_compilation_cache

    parser = argparse.ArgumentParser(prog="experiments.model_quality", description=__doc__)
    parser.add_argument("--scale", default="full", choices=tuple(SCALES))
    parser.add_argument("--out", default="results/experiments/model_quality")
    args = parser.parse_args(argv)
    enable_compilation_cache()
    scale = SCALES[args.scale]
    rows = [measure(task, scale) for task in scale["tasks"]]
    report(rows, args.scale, Path(args.out))


if __name__ == "__main__":
    main()
