"""UTD sweep: online SAC on hopper at UTD 1, 5, 10, 20, 40 -- speed and final return.

A static sweep over UTD (:func:`rlgen.train.sweep.run`, the code behind ``rlgen train sac
--sweep utd=1,5``): one compiled run per UTD of S vmapped seeds to a fixed env-step budget, one
after another, in ``--run-dir/{sac,redq}/utd=N``. UTD >= 10 uses REDQ-style critics: 10 with
LayerNorm, a random 2 of them in the target. Networks are 256 x 256; ``--quick`` uses 64 x 64
(a 10-critic 256-wide update is ~30 ms on a 2-core CPU), so its figures check the code path,
not the method. On a CPU the critic ensemble's cost grows with its size: at 64 x 64, batch 256,
one SAC update took 0.26 ms with 2 critics, 0.54 ms with 2 + LayerNorm, 1.17 ms with 10 and
1.83 ms with 10 + LayerNorm (2-core CPU, jax 0.10.2), which is the drop in env steps/s from
UTD 5 to UTD 10 in ``--quick``. Per UTD:

- ``env_steps_per_s_per_seed``: the rate of the steady training chunks (median logged chunk;
  not the first, which compiles, nor the warm-up), all S seeds stepping at once;
- ``implied_s_per_100k``: 100k / that rate, the wall time per 100k env steps per seed it
  implies (a rate; the run itself is ``env_steps_per_seed`` long);
- ``run_s``: wall time of the whole run (compiles, warm-up, chunks, final evaluation);
- ``first_chunk_env_steps_per_s``: the first chunk's rate, its compile included;
- ``final_return``: deterministic evaluation return at the budget, mean and per seed.

    python -m benchmarks.utd_sweep                # GPU: 5 seeds x 100k env steps per UTD
    python -m benchmarks.utd_sweep --quick        # CPU-sized: 1 seed x 1,250 steps, 64 x 64
    python -m benchmarks.utd_sweep --utd 20 40    # a subset (a GPU call at a time)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

from benchmarks.common import print_table, steady_rate, write_results
from benchmarks.online_sac import bench_config
from rlgen.train import sweep
from rlgen.train.runner import OnlineRun


def sweep_group(utds: list[int], redq: bool, args) -> list[dict]:
    """One static sweep over ``utds`` (:func:`rlgen.train.sweep.run`: one compiled run per UTD,
    one after another, in ``--run-dir``), 2 critics or REDQ-style 10 with LayerNorm; a row per
    UTD from its run's logged chunks and final evaluation."""
    config = bench_config(
        env=args.env,
        backend=args.backend,
        seeds=args.seeds,
        steps=args.steps,
        warmup=args.warmup,
        chunk=args.chunk,
        eval_every=0,
        checkpoint_every=0,
        eval_episodes=args.eval_episodes,
        num_critics=10 if redq else 2,
        critic_layer_norm=redq,
        hidden=tuple(args.hidden),
        run_dir=str(Path(args.run_dir) / ("redq" if redq else "sac")),
    )
    make_run = lambda c, grid: OnlineRun(c, sweep=grid)  # noqa: E731
    report = sweep.run(make_run, config, {"utd": utds})
    rows = []
    for point in report["points"]:
        utd = point["values"]["utd"]
        run_dir = Path(config.run_dir) / sweep.label({"utd": utd})
        per_seed_rate = steady_rate(run_dir / "metrics.jsonl", "env_steps_per_s") / args.seeds
        logged = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        first = next(r for r in logged if "phase_warmup" not in r)
        results = json.loads((run_dir / "results.json").read_text())
        returns = np.asarray(point["final_eval_return_per_seed"])
        rows.append(
            {
                "utd": utd,
                "critics": config.num_critics,
                "layer_norm": config.critic_layer_norm,
                "seeds": args.seeds,
                "env_steps_per_seed": results["env_steps_per_seed"],
                "env_steps_per_s_per_seed": per_seed_rate,
                "env_steps_per_s": args.seeds * per_seed_rate,
                "updates_per_s": args.seeds * per_seed_rate * utd,
                "implied_s_per_100k": 100_000 / per_seed_rate,
                "run_s": results["wall_time_s"],
                "first_chunk_env_steps_per_s": first["env_steps_per_s"],  # with the compile
                "final_return": float(returns.mean()),
                "final_return_per_seed": returns.tolist(),
            }
        )
        print({k: v for k, v in rows[-1].items() if k != "final_return_per_seed"}, flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="CPU-sized: 1 seed, 1,250 steps, 64 x 64"
    )
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--utd", type=int, nargs="+", default=[1, 5, 10, 20, 40])
    parser.add_argument("--seeds", type=int, help="vmapped seeds per run")
    parser.add_argument("--steps", type=int, help="env steps per seed, warm-up included")
    parser.add_argument("--warmup", type=int, help="random-action env steps per seed")
    parser.add_argument("--chunk", type=int, help="env steps per compiled chunk")
    parser.add_argument("--eval-episodes", type=int, help="final evaluation episodes per seed")
    parser.add_argument("--hidden", type=int, nargs="+", help="hidden widths (default 256 256)")
    parser.add_argument("--out", default="results/bench_utd_sweep.json")
    parser.add_argument(
        "--run-dir", default="runs/utd_sweep", help="the sweep's runs (utd=N per UTD)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.seeds = args.seeds or (1 if quick else 5)
    args.steps = args.steps or (1_250 if quick else 100_000)
    args.warmup = args.warmup or (1_000 if quick else 5_000)
    args.chunk = args.chunk or (125 if quick else 1_000)
    args.eval_episodes = args.eval_episodes or (3 if quick else 10)
    args.hidden = args.hidden or ([64, 64] if quick else [256, 256])

    rows = []
    for redq in (False, True):
        utds = [u for u in args.utd if (u >= 10) == redq]
        rows += sweep_group(utds, redq, args) if utds else []
    width = "x".join(map(str, args.hidden))
    title = (
        f"online SAC on {args.env}, {args.seeds} seeds x {args.steps:,} env steps, {width} "
        f"networks, {jax.devices()[0].device_kind}"
    )
    print_table([{k: v for k, v in r.items() if k != "final_return_per_seed"} for r in rows], title)
    summary = {}
    for r in rows:
        steps = f"{r['env_steps_per_seed']:,}"
        key = f"UTD {r['utd']}, {width}: env steps/s per seed (implied s / 100k), return at {steps}"
        summary[key] = (
            f"{r['env_steps_per_s_per_seed']:.4g} ({r['implied_s_per_100k']:,.0f} s), "
            f"{r['final_return']:.1f}"
        )
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    write_results(args.out, "utd_sweep", rows, summary, settings=settings)


if __name__ == "__main__":
    main()
