"""The main job at a small default: multi-seed online SAC on MJX/MuJoCo Hopper-v5.

Until the dataset, Cal-QL and generator phases land in the demo, this is rlgen's best end to
end: vmapped seeds, warm-up, UTD-scanned updates, evaluation, checkpoints, a results table and
a learning-curve plot. The scale follows the device: small on a CPU (under 10 minutes on two
cores), full on a GPU.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax

from rlgen.data import normalized_score
from rlgen.plots import learning_curves
from rlgen.train.runner import OnlineConfig, OnlineRun

SCALES = {
    # per-seed env steps, seeds, UTD, chunk, hidden widths
    "ci": dict(
        steps=1_500,
        seeds=2,
        utd=1,
        warmup=500,
        chunk=250,
        eval_every=500,
        eval_episodes=2,
        hidden=(64, 64),
        buffer_size=10_000,
    ),
    "cpu": dict(
        steps=12_000,
        seeds=4,
        utd=1,
        warmup=2_000,
        chunk=1_000,
        eval_every=2_000,
        eval_episodes=5,
        hidden=(256, 256),
        buffer_size=100_000,
    ),
    "gpu": dict(
        steps=100_000,
        seeds=5,
        utd=20,
        warmup=5_000,
        chunk=1_000,
        eval_every=10_000,
        eval_episodes=10,
        hidden=(256, 256),
        buffer_size=1_000_000,
        num_critics=10,
        critic_layer_norm=True,
    ),
}


def run(out_dir: str = "results/demo", scale: str = "auto", progress: bool = True) -> dict:
    """Run the demo; prints a table, writes ``results.json`` and ``learning_curve.png``."""
    if scale == "auto":
        scale = "cpu" if jax.default_backend() == "cpu" else "gpu"
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from auto, {', '.join(SCALES)}")
    out = Path(out_dir)
    config = OnlineConfig(
        env="hopper", run_dir=str(out / "sac"), progress=progress, **SCALES[scale]
    )
    print(
        f"rlgen demo ({scale} scale on {jax.devices()[0].device_kind}): SAC on hopper, "
        f"{config.seeds} seeds x {config.steps} env steps, UTD {config.utd}"
    )
    results = OnlineRun(config).run()
    returns = results["final_eval_return_per_seed"]
    print("\n| seed | final return | D4RL-normalised score |\n|---:|---:|---:|")
    for i, ret in enumerate(returns):
        print(f"| {i} | {ret:.1f} | {float(normalized_score('hopper', ret)):.1f} |")
    mean = results["final_eval_return_mean"]
    print(f"| mean | {mean:.1f} | {float(normalized_score('hopper', mean)):.1f} |")
    print(f"\nwall time {results['wall_time_s']:.0f} s")
    plot = learning_curves(
        {"SAC": config.run_dir},
        out / "learning_curve.png",
        title=f"Hopper-v5, {config.seeds} seeds (mean +- std)",
    )
    summary = {"scale": scale, "config": dataclasses.asdict(config), **results, "plot": str(plot)}
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"wrote {out / 'results.json'} and {plot}")
    return summary
