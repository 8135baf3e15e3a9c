"""The main job: offline-to-online fine-tuning on D4RL-level data, two methods side by side.

1. **Dataset**: hopper "medium" transitions rolled out from rlgen's shipped medium behaviour
   policy (rlgen/policies; its level is checked and recorded as a D4RL-normalised score).
2. **The offline-to-online drop**: two arms pretrain TD3+BC on the dataset (same seeds, so the
   same offline policies) and fine-tune online with 50/50 offline/online batches, one as plain
   TD3 (the BC term off: the actor chases the critic's over-estimates of actions the data never
   had and unlearns), one with the BC term kept. The drop right after the switch is the problem
   Cal-QL and EDIS address; at CPU budgets CQL and Cal-QL are still near their initial policy
   after pretraining (their actors learn slowly), so they would show nothing here (see the
   README).

Prints a results table (IQM and 95% bootstrap intervals over seeds, after offline and after
online) and writes ``results.json``, ``results.md`` and ``learning_curve.png`` (both arms'
fine-tuning curves with CI bands). The scale follows the device: small on a CPU (a few minutes
on two cores), full on a GPU; ``ci`` is a seconds-scale check of the same path.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import jax

from rlgen import budgets, plots, stats
from rlgen.data import datasets
from rlgen.train import generate, sweep
from rlgen.train.finetune import FinetuneConfig, FinetuneRun

ENV = "hopper"
# label -> the BC weight of fine-tuning; both arms are one run, a vmapped sweep over it, so they
# compile once and pretrain with the same seeds' keys (the same offline policies)
ARMS = {"TD3+BC -> TD3": 0.0, "TD3+BC -> TD3+BC": 1.0}


@dataclasses.dataclass(frozen=True)
class Scale:
    """The demo's budgets at one scale: dataset rows and the fine-tuning run's budget."""

    rows: int
    budget: budgets.Budget
    rollout_envs: int = 100


SCALES = {
    "ci": Scale(
        rows=2_000,
        rollout_envs=4,
        budget=budgets.SMOKE.but(
            pretrain_steps=200, steps=600, eval_episodes=2, batch_size=64, hidden=(32, 32)
        ),
    ),
    "cpu": Scale(
        rows=50_000,
        budget=budgets.CPU.but(pretrain_steps=5_000, steps=5_000, pretrain_eval_every=0),
    ),
    # FinetuneConfig's own warm-up, chunk, batch size and 256-wide networks
    "gpu": Scale(
        rows=1_000_000,
        budget=budgets.Budget(
            seeds=5,
            pretrain_steps=200_000,
            steps=100_000,
            warmup=1_000,
            chunk=1_000,
            pretrain_eval_every=50_000,
            eval_every=5_000,
            eval_episodes=10,
            batch_size=256,
            hidden=(256, 256),
        ),
    ),
}


def run(out_dir: str = "results/demo", scale: str = "auto", progress: bool = True) -> dict:
    """Run the demo; returns the summary written to ``results.json``."""
    if scale == "auto":
        scale = "cpu" if jax.default_backend() == "cpu" else "gpu"
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from auto, {', '.join(SCALES)}")
    settings, out = SCALES[scale], Path(out_dir)
    device = jax.devices()[0].device_kind
    print(f"rlgen demo ({scale} scale on {device}): {ENV} medium, {' vs '.join(ARMS)}")
    start = time.perf_counter()

    print(f"1/2 dataset: {settings.rows} {ENV} medium rows from the shipped medium policy")
    path = generate.generate(
        ENV,
        "medium",
        settings.rows,
        data_dir=out / "data",
        rollout_envs=settings.rollout_envs,
        progress=progress,
    )
    meta = datasets.read_metadata(path)
    dataset_time = time.perf_counter() - start

    shutil.rmtree(out / "arms", ignore_errors=True)  # each demo is a new run
    print(f"2/2 {' and '.join(ARMS)}: one run, the BC weight of fine-tuning vmapped")
    config = FinetuneConfig(
        algo="td3bc",
        env=ENV,
        dataset=str(path),
        run_dir=str(out / "arms"),
        progress=progress,
        **settings.budget.overrides(),
    )
    run = FinetuneRun(config, sweep={"finetune_bc_weight": tuple(ARMS.values())})
    results = run.run()
    arms = {}
    for label, point in zip(
        ARMS, sweep.split_results(results, run.grid, config.seeds), strict=True
    ):
        arms[label] = {
            "config": point["values"],
            "offline_score_per_seed": point["offline_score_per_seed"],
            "final_score_per_seed": point["final_score_per_seed"],
            "offline_iqm_ci": stats.bootstrap_ci(point["offline_score_per_seed"]),
            "final_iqm_ci": stats.bootstrap_ci(point["final_score_per_seed"]),
            "evaluations": point["evaluations"],
        }
    summary = {
        "scale": scale,
        "device": device,
        "env": ENV,
        "dataset": {"path": str(path), "kind": "medium", "rows": meta["size"]},
        "policy_score": meta["policy_score"],
        "dataset_time_s": dataset_time,
        "seeds": settings.budget.seeds,
        "arms": arms,
        "run_time_s": results["wall_time_s"],
        "total_time_s": time.perf_counter() - start,
    }
    table = _table(summary)
    print("\n" + table)
    curves = {label: _finetune_curve(arm["evaluations"]) for label, arm in arms.items()}
    title = f"Hopper-v5 medium, {summary['seeds']} seeds (mean, 95% CI)"
    summary["plot"] = str(plots.score_curves(curves, out / "learning_curve.png", title))
    (out / "results.md").write_text(table + "\n")
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"wrote {out / 'results.json'}, {out / 'results.md'} and {summary['plot']}")
    return summary


def _finetune_curve(evaluations: list[dict]) -> tuple[list[int], list[list[float]]]:
    evals = [e for e in evaluations if e["phase"] == "finetune"]
    return [e["step"] for e in evals], [e["score"] for e in evals]


def _fmt(interval) -> str:
    value, low, high = interval
    return f"{value:.1f} [{low:.1f}, {high:.1f}]"


def _table(summary: dict) -> str:
    lines = [
        f"dataset: {summary['dataset']['rows']} {summary['env']} medium rows, behaviour policy "
        f"D4RL score {summary['policy_score']:.1f} ({summary['dataset_time_s']:.0f} s)",
        "",
        f"D4RL-normalised score, IQM [95% CI] over {summary['seeds']} seeds:",
        "",
        "| method | after offline | after online |",
        "|---|---:|---:|",
    ]
    for label, arm in summary["arms"].items():
        lines.append(f"| {label} | {_fmt(arm['offline_iqm_ci'])} | {_fmt(arm['final_iqm_ci'])} |")
    lines += [
        "",
        f"both arms in one run of {summary['run_time_s']:.0f} s; "
        f"wall time {summary['total_time_s']:.0f} s",
    ]
    return "\n".join(lines)
