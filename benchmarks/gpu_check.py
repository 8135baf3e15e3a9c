"""The GPU check: every GPU figure rlgen owes, in one time-boxed call of a lent device.

    python -m benchmarks.gpu_check --out $OUT/gpu_check              # on the GPU, ~8 minutes
    python -m benchmarks.gpu_check --dry-run --out /tmp/gpu_check    # toy sizes, CPU, CI

Parts, in order (each skipped, and marked so, when its estimated cost no longer fits the
remaining ``--budget-s``; ``gpu_check.json`` and ``gpu_check.md`` are rewritten after every
part, so a killed call still returns what finished):

1. ``system``: device, versions, compilation-cache state;
2. ``mjx``: MJX parity with Gymnasium (float32, one step from the same states, every task) and
   env steps/s at batch 1 / 1024 / 8192;
3. ``online_sac``: rlgen's online SAC at S seeds x UTD (1 env per seed), aggregate env steps/s
   and updates/s, against Brax's SAC in the same call (goal: >= 10x Brax at UTD 20);
4. ``offline``: Cal-QL and IQL updates/s at 1 / 8 / 32 seeds against d3rlpy (goal: >= 50x
   per seed, >= 300x aggregate);
5. ``synther``: denoiser training steps/s and 100k-sample generation (128 Heun steps), widths
   1024 / 2048, fp32 / bf16, against the PyTorch reference (goal: >= 5x training, >= 10x
   sampling);
6. ``edis``: energy-guided against unguided generation of 100k samples;
7. ``finetune``: ``rlgen finetune calql`` with 8 seeds on MJX at a small budget: wall time,
   compile time and finite results.

Compile times are reported apart from steady-state rates. ``--dry-run`` runs every part at toy
size on the CPU without the peers, parity on MJX and the rest on C MuJoCo (CI runs it, so the
script is known to work before a GPU is drawn).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np

from benchmarks.common import peer_version, write_json
from rlgen import runinfo

GOALS = {
    "online_sac": "rlgen >= 10x Brax SAC, aggregate env steps/s at UTD 20",
    "offline": "rlgen >= 50x d3rlpy per seed, >= 300x aggregate",
    "synther": "rlgen >= 5x PyTorch training steps/s, >= 10x sampling",
}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The sizes of every part: ``GPU`` for the device, ``DRY`` for a CPU check of the code."""

    tasks: tuple[str, ...]
    parity_steps: int
    env_batches: tuple[int, ...]
    env_steps: int
    sac_seeds: tuple[int, ...]
    sac_utds: tuple[int, ...]
    sac_updates: int
    sac_hidden: tuple[int, ...]
    sac_batch: int
    brax_steps: int  # 0: no Brax peer
    offline_seeds: tuple[int, ...]
    offline_updates: int
    d3rlpy_steps: int  # 0: no d3rlpy peer
    widths: tuple[int, ...]
    precisions: tuple[str, ...]
    train_steps: int
    num_samples: int
    sampler_steps: int
    torch_peer: bool
    energy_hidden: tuple[int, ...]
    finetune: dict
    finetune_data: tuple[str, int, str]  # dataset kind, rows, physics backend generating it
    # estimated seconds of each part at these sizes (compiles included), for the time box
    cost_s: dict
    # physics of the throughput parts (parity is MJX's, fine-tuning runs on ``finetune_backend``)
    throughput_backend: str = "mjx"
    finetune_backend: str = "mjx"


GPU = Sizes(
    tasks=("hopper", "halfcheetah", "walker2d", "ant"),
    parity_steps=20,
    env_batches=(1, 1024, 8192),
    env_steps=200,
    sac_seeds=(1, 8, 32, 128),
    sac_utds=(1, 20),
    sac_updates=2_000,
    sac_hidden=(256, 256),
    sac_batch=256,
    brax_steps=4_000,
    offline_seeds=(1, 8, 32),
    offline_updates=2_000,
    d3rlpy_steps=500,
    widths=(1024, 2048),
    precisions=("fp32", "bf16"),
    train_steps=500,
    num_samples=100_000,
    sampler_steps=128,
    torch_peer=True,
    energy_hidden=(256, 256, 256),
    finetune=dict(
        seeds=8, pretrain_steps=5_000, steps=5_000, warmup=1_000, chunk=1_000, eval_every=5_000
    ),
    finetune_data=("medium", 100_000, "mjx"),
    cost_s=dict(system=5, mjx=60, online_sac=150, offline=60, synther=90, edis=30, finetune=60),
)
DRY = Sizes(
    tasks=("hopper",),
    parity_steps=3,
    env_batches=(2,),
    env_steps=5,
    sac_seeds=(2,),
    sac_utds=(2,),
    sac_updates=4,
    sac_hidden=(16, 16),
    sac_batch=16,
    brax_steps=0,
    offline_seeds=(2,),
    offline_updates=3,
    d3rlpy_steps=0,
    widths=(32,),
    precisions=("fp32", "bf16"),
    train_steps=3,
    num_samples=16,
    sampler_steps=4,
    torch_peer=False,
    energy_hidden=(16, 16),
    finetune=dict(
        seeds=2,
        pretrain_steps=20,
        steps=140,
        warmup=100,  # episodes of a policy pretrained on random data end well within 100 steps
        chunk=20,
        eval_every=140,
        eval_episodes=1,
        batch_size=16,
        num_samples=2,
        hidden=(16, 16),
    ),
    finetune_data=("random", 200, "mujoco"),  # the data is not what this checks
    cost_s=dict(system=1, mjx=20, online_sac=15, offline=10, synther=15, edis=5, finetune=30),
    # C MuJoCo on the CPU, where MJX compiles take 10-30 s each (test_envs_mjx.py trains and
    # checkpoints on MJX states on its own)
    throughput_backend="mujoco",
    finetune_backend="mujoco",
)


def part_system(sizes: Sizes) -> dict:
    cache = jax.config.jax_compilation_cache_dir
    entries = len(list(Path(cache).glob("*"))) if cache and Path(cache).is_dir() else 0
    return {
        **runinfo.describe(),
        "throughput_backend": sizes.throughput_backend,
        "finetune_backend": sizes.finetune_backend,
        "compilation_cache": {"dir": cache or "off", "entries_at_start": entries},
        "peers": {p: peer_version(p) for p in ("brax", "d3rlpy", "torch")},
    }


def part_mjx(sizes: Sizes) -> dict:
    import rlgen.envs as E
    from benchmarks.envs import measure
    from rlgen.envs.parity import compare_with_gymnasium, reference_env
    from rlgen.envs.physics import DEFAULT_SOLVER

    parity = []
    for name in sizes.tasks:
        env = E.make(name, backend="mjx")
        actions = np.random.default_rng(0).uniform(-1, 1, (sizes.parity_steps, env.action_size))
        out = compare_with_gymnasium(
            reference_env(name, env),
            jax.jit(env.reset),
            jax.jit(env.step),
            jax.random.key(1),
            actions.astype(np.float32),
        )
        parity.append(
            {
                "env": name,
                "steps": sizes.parity_steps,
                "obs_err_max": float(np.max(out["obs_err"])),
                "reward_err_max": float(np.max(out["reward_err"])),
                "terminations_agree": bool(
                    np.array_equal(out["terminated"], out["ref_terminated"])
                ),
            }
        )
    rates = [
        measure(name, sizes.throughput_backend, batch, sizes.env_steps, DEFAULT_SOLVER)
        for name in sizes.tasks[:1]
        for batch in sizes.env_batches
    ]
    return {"parity": parity, "env_steps": rates}


def part_online_sac(sizes: Sizes) -> dict:
    from benchmarks.online_sac import bench_brax, bench_config, start, steady_chunk_s

    rows = []
    for utd in sizes.sac_utds:
        for seeds in sizes.sac_seeds:
            blocks = max(sizes.sac_updates // utd, 1)
            config = bench_config(
                env="hopper",
                backend=sizes.throughput_backend,
                seeds=seeds,
                utd=utd,
                chunk=blocks,
                hidden=sizes.sac_hidden,
                batch_size=sizes.sac_batch,
            )
            _, state, compiled, compile_s = start(config)
            seconds = steady_chunk_s(compiled["train"], state)
            rows.append(
                {
                    "learner": "rlgen",
                    "seeds": seeds,
                    "utd": utd,
                    "env_steps_per_s": seeds * blocks / seconds,
                    "updates_per_s": seeds * blocks * utd / seconds,
                    **{f"{k}_compile_s": v for k, v in compile_s.items()},
                }
            )
        if sizes.brax_steps:
            rows.append(bench_brax("hopper", sizes.throughput_backend, utd, sizes.brax_steps))
    return {"rows": rows, "goal": GOALS["online_sac"], "vs_brax": _ratios(rows, "env_steps_per_s")}


def _ratios(rows: list[dict], rate: str) -> dict:
    """rlgen's aggregate rate over the peer's, per (UTD, seeds), where the peer ran."""
    peers = {r["utd"]: r[rate] for r in rows if r["learner"] != "rlgen"}
    return {
        f"UTD {r['utd']}, S={r['seeds']}": r[rate] / peers[r["utd"]]
        for r in rows
        if r["learner"] == "rlgen" and r["utd"] in peers
    }


def part_offline(sizes: Sizes) -> dict:
    from benchmarks import offline_updates as ou
    from rlgen.data import datasets, replay

    arrays = ou.hopper_like(100_000 if sizes is GPU else 2_000)
    buffer = replay.from_transitions(datasets.to_transitions(arrays))
    args = SimpleNamespace(
        seeds=sizes.offline_seeds,
        updates=sizes.offline_updates,
        repeats=2,
        d3rlpy_steps=sizes.d3rlpy_steps,
        no_d3rlpy=not sizes.d3rlpy_steps,
        torch_threads=None,
        d3rlpy_compile_graph=False,
    )
    rows = [row for algo in ("calql", "iql") for row in ou.bench_algo(algo, arrays, buffer, args)]
    return {"rows": rows, "goal": GOALS["offline"]}


def part_synther(sizes: Sizes) -> dict:
    from benchmarks import diffusion as bd

    args = SimpleNamespace(
        sampler_steps=sizes.sampler_steps,
        train_steps=sizes.train_steps,
        batch_size=256,
        num_samples=sizes.num_samples,
        chunk_size=sizes.num_samples,
        repeats=2,
        fidelity_width=sizes.widths[0],
        fidelity_steps=10 * sizes.train_steps,
        eval_samples=sizes.num_samples,
    )
    rows = []
    for width in sizes.widths:
        for precision in sizes.precisions:
            row = bd.bench_speed(width, precision, args)
            if sizes.torch_peer and bd.torch_synther is not None:
                peer = bd.torch_synther.bench(
                    bd.HOPPER_DIM,
                    width,
                    precision,
                    args.batch_size,
                    args.train_steps,
                    args.num_samples,
                    args.sampler_steps,
                    args.repeats,
                )
                row.update({f"torch_{k}": v for k, v in peer.items()})
                row["train_speedup"] = row["train_steps_per_s"] / peer["train_steps_per_s"]
                row["sample_speedup"] = row["samples_per_s"] / peer["samples_per_s"]
            rows.append(row)
    fidelity = bd.bench_fidelity(list(sizes.precisions), args)
    return {"rows": rows, "bf16_fidelity": fidelity, "goal": GOALS["synther"]}


def part_edis(sizes: Sizes) -> dict:
    from benchmarks.common import time_call
    from benchmarks.guided_sampling import samplers

    args = SimpleNamespace(
        width=sizes.widths[0],
        precision="fp32",
        energy_hidden=sizes.energy_hidden,
        sampler_steps=sizes.sampler_steps,
        num_samples=sizes.num_samples,
        chunk_size=sizes.num_samples,
    )
    rows = []
    for name, fn in samplers(args).items():
        seconds, compile_s = time_call(lambda fn=fn: fn(jax.random.key(3)), 2)
        rows.append({"sampler": name, "seconds": seconds, "compile_s": compile_s})
    return {"rows": rows, "guided_over_unguided": rows[1]["seconds"] / rows[0]["seconds"]}


def part_finetune(sizes: Sizes, out: Path) -> dict:
    from rlgen.train import generate
    from rlgen.train.finetune import FinetuneConfig, FinetuneRun

    kind, rows, data_backend = sizes.finetune_data
    data_dir = out / "data"
    dataset = generate.generate("hopper", kind, rows, data_dir=data_dir, backend=data_backend)
    events: dict[str, float] = {}
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, s, **_: events.__setitem__(name, events.get(name, 0.0) + s)
    )
    config = FinetuneConfig(
        algo="calql",
        backend=sizes.finetune_backend,
        dataset=str(dataset),
        run_dir=str(out / "finetune_calql"),
        progress=False,
        **sizes.finetune,
    )
    shutil.rmtree(config.run_dir, ignore_errors=True)  # each check is a new run
    start = time.perf_counter()
    run = FinetuneRun(config)
    results = run.run()
    compile_s = sum(v for k, v in events.items() if k.startswith("/jax/core/compile/"))
    online_rows = np.asarray(run.state.buffer.size)
    return {
        "seeds": config.seeds,
        "dataset": results["dataset"],
        "wall_s": time.perf_counter() - start,
        "compile_s": compile_s,
        "pretrain_updates": results["pretrain_updates"],
        "env_steps_per_seed": results["env_steps_per_seed"],
        "online_rows_per_seed": online_rows.tolist(),
        "offline_score_per_seed": results["offline_score_per_seed"],
        "final_score_per_seed": results["final_score_per_seed"],
        "final_return_per_seed": results["final_return_per_seed"],
        "finite": bool(np.all(np.isfinite(results["final_return_per_seed"]))),
    }


PARTS = {
    "system": part_system,
    "mjx": part_mjx,
    "online_sac": part_online_sac,
    "offline": part_offline,
    "synther": part_synther,
    "edis": part_edis,
    "finetune": part_finetune,
}


def markdown(report: dict) -> str:
    """The report as a page: each part's status, time and figures."""
    lines = [f"# GPU check ({report['mode']})", "", f"budget {report['budget_s']} s", ""]
    for name, part in report["parts"].items():
        lines.append(f"## {name}: {part['status']} ({part.get('seconds', 0):.1f} s)")
        if "goal" in part.get("result", {}):
            lines.append(f"goal: {part['result']['goal']}")
        lines += ["", "```", json.dumps(part.get("result", part.get("error")), indent=1), "```"]
        lines.append("")
    return "\n".join(lines)


def save(report: dict, out: Path) -> None:
    write_json(out / "gpu_check.json", report)
    tmp = out / "gpu_check.md.tmp"
    tmp.write_text(markdown(report))
    tmp.replace(out / "gpu_check.md")


def run(out: Path, budget_s: float, dry_run: bool) -> dict:
    """Run the parts in order within ``budget_s``; returns the report (also on disk)."""
    sizes = DRY if dry_run else GPU
    out.mkdir(parents=True, exist_ok=True)
    report = {"mode": "dry-run" if dry_run else "gpu", "budget_s": budget_s, "parts": {}}
    start = time.perf_counter()
    for name, fn in PARTS.items():
        left = budget_s - (time.perf_counter() - start)
        if sizes.cost_s[name] > left:
            report["parts"][name] = {
                "status": f"skipped: needs ~{sizes.cost_s[name]} s, {left:.0f} s left"
            }
            save(report, out)
            continue
        begin = time.perf_counter()
        print(f"[gpu_check] {name} ...", flush=True)
        try:
            args = (sizes, out) if name == "finetune" else (sizes,)
            entry = {"status": "ok", "result": fn(*args)}
        except Exception as err:  # a failed part is reported and the next one still runs
            entry = {"status": f"failed: {type(err).__name__}", "error": traceback.format_exc()}
        entry["seconds"] = time.perf_counter() - begin
        report["parts"][name] = entry
        save(report, out)
    report["total_s"] = time.perf_counter() - start
    save(report, out)
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/gpu_check")
    parser.add_argument("--budget-s", type=float, default=480.0)
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on the CPU")
    args = parser.parse_args(argv)
    report = run(Path(args.out), args.budget_s, args.dry_run)
    for name, part in report["parts"].items():
        print(f"{name}: {part['status']} ({part.get('seconds', 0):.1f} s)")
    print(f"wrote {Path(args.out) / 'gpu_check.md'} in {report['total_s']:.0f} s")


if __name__ == "__main__":
    main()
