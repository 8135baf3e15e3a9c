"""Learning parity: rlgen's learners against trusted peers, side by side on identical work.

    python -m benchmarks.parity --scale cpu             # ~90 min on a 2-core CPU, resumable
    python -m benchmarks.parity --scale full            # the GPU command (docs/gpu_runs.md)
    python -m benchmarks.parity --scale smoke --peers none   # CI: rlgen's side only, tiny
    python -m benchmarks.parity --only offline-iql --seeds 10 --out results/parity_iql10
    python -m benchmarks.parity --only offline-calql --updates 10000 --out results/parity_calql10k

Pairs, each with the same task, data, budgets, network sizes (256x256 at cpu and full scale),
batch size (256) and evaluation protocol (10 deterministic episodes per evaluation,
D4RL-normalised scores):

- ``offline-<algo>``: rlgen's TD3+BC, IQL, CQL and Cal-QL against d3rlpy 2.8's on one
  rlgen-generated hopper dataset (the scale's ``dataset`` kind; medium-replay is the replay of
  the reference behaviour run up to its medium checkpoint), the same number of updates;
- ``online-<task>``: rlgen's online SAC against sbx's SAC (defaults of both: lr 3e-4, 5k
  uniform random warm-up steps, 1 env, UTD 1), rlgen stepping its Gymnasium-parity env, sbx
  Gymnasium's; ``online-<task>-utd20`` (full scale): each at UTD 20 with its own high-UTD
  settings (``HIGH_UTD``).

Each peer runs in its own virtual environment under ``--venvs`` (made on first use from
``benchmarks.peers.PEERS``, so d3rlpy's gymnasium pin never touches rlgen's environment). rlgen
vmaps its seeds in one process; each peer seed is its own process. Throughput comes from the
same runs: rlgen's steady-state rate (median chunk, compile and evaluations excluded), the
peers' over their whole training calls (evaluations excluded).

Each finished job is a JSON file under ``OUT/jobs``; ``--resume`` skips those already there,
so the cpu scale can be spread over several calls. The report: ``OUT/parity.json``,
``OUT/parity.md`` and one learning-curve plot per pair (``OUT/<pair>.png``) with 95% bootstrap
bands. The verdict per pair compares final IQMs and their 95% stratified-bootstrap intervals:
``parity`` when the intervals overlap, else ``ahead`` or ``behind``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import steady_rate, write_json
from benchmarks.peers import PEERS
from rlgen import runinfo
from rlgen.data.scores import normalized_score
from rlgen.stats import bootstrap_ci

PEER_DIR = Path(__file__).parent / "peers"
GYM_IDS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
OFFLINE_ALGOS = ("td3bc", "iql", "cql", "calql")


@dataclasses.dataclass(frozen=True)
class Scale:
    seeds: int
    hidden: tuple[int, ...]
    batch_size: int
    eval_episodes: int
    dataset: tuple[str, str, int]  # task, kind, rows
    offline: tuple[tuple[str, int], ...]  # (algorithm, updates)
    offline_evals: int  # evaluations per offline run, evenly spaced
    online_tasks: tuple[str, ...]
    high_utd_tasks: tuple[str, ...]  # also at UTD 20: rlgen's 10 critics + LayerNorm, sbx's DroQ
    online_steps: int
    online_warmup: int
    online_eval_every: int


SCALES = {
    "smoke": Scale(
        seeds=2,
        hidden=(16, 16),
        batch_size=32,
        eval_episodes=1,
        dataset=("hopper", "random", 2_000),
        offline=(("td3bc", 20),),  # the other learners' code paths are the suite's elsewhere
        offline_evals=2,
        online_tasks=("hopper",),
        high_utd_tasks=(),
        online_steps=300,
        online_warmup=200,
        online_eval_every=100,
    ),
    # about 60-90 minutes of a 2-core CPU with both peers: the offline pairs at 5k updates (2k
    # for CQL / Cal-QL, so those pairs compare early learning), the online pairs at 30k env steps
    "cpu": Scale(
        seeds=3,
        hidden=(256, 256),
        batch_size=256,
        eval_episodes=10,
        dataset=("hopper", "medium-replay", 250_000),
        # d3rlpy on this CPU: TD3+BC ~60 updates/s, CQL / Cal-QL ~10 (2 torch threads), so the
        # penalised pair runs fewer updates: too few for either actor to leave its start (both
        # libraries' seeds leave it between 4k and 7.5k; ``--updates 10000`` compares learning)
        offline=(("td3bc", 5_000), ("iql", 5_000), ("cql", 2_000), ("calql", 2_000)),
        offline_evals=4,
        online_tasks=("hopper", "halfcheetah"),
        high_utd_tasks=(),  # rlgen's 10-critic UTD 20 SAC steps ~2 env steps/s on this CPU
        online_steps=30_000,
        online_warmup=5_000,
        online_eval_every=5_000,
    ),
    "full": Scale(
        seeds=5,
        hidden=(256, 256),
        batch_size=256,
        eval_episodes=10,
        dataset=("hopper", "medium-replay", 250_000),
        offline=tuple((algo, 1_000_000) for algo in OFFLINE_ALGOS),
        offline_evals=20,
        online_tasks=("hopper", "halfcheetah", "walker2d"),
        high_utd_tasks=("hopper", "halfcheetah", "walker2d"),
        online_steps=100_000,
        online_warmup=5_000,
        online_eval_every=5_000,
    ),
}


# --------------------------------------------------------------------------------------------
# Peer environments and jobs


def peer_python(name: str, venvs: Path) -> Path:
    """The Python of peer ``name``'s virtual environment, created on first use."""
    venv = venvs / name
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists():
        print(f"creating {venv} with {' '.join(PEERS[name])} (a few minutes, once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS[name]], check=True)
        stamp.write_text(" ".join(PEERS[name]))
    return python


def run_peer(name: str, script: str, job: dict, result: Path, venvs: Path) -> dict:
    """Run a peer script on ``job`` in its environment; returns its result record."""
    result.parent.mkdir(parents=True, exist_ok=True)
    job_file = result.with_suffix(".job.json")
    job_file.write_text(json.dumps(job))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    env.pop("XLA_FLAGS", None)  # the suite's compile flags are rlgen's, not the peers'
    cmd = [str(peer_python(name, venvs)), str(PEER_DIR / script), str(job_file), str(result)]
    log = result.with_suffix(".log")
    print(f"{name} {result.stem}: running (output in {log})", flush=True)
    with open(log, "w") as f:
        proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"{name} failed on {job_file}:\n{log.read_text()[-3000:]}")
    job_file.unlink()
    return json.loads(result.read_text())


def cached(path: Path, resume: bool, make, budget: int, seeds: int | None = None) -> dict:
    """``path``'s record when resuming and it exists, else ``make()`` written there. A cached
    record must end at ``budget`` (its last evaluation's step) and, for a multi-seed record,
    hold ``seeds`` seeds."""
    if resume and path.exists():
        print(f"resume: {path.name} already done", flush=True)
        record = json.loads(path.read_text())
        held = len(record["evaluations"][0]["return"])
        if seeds is not None and held != seeds:
            raise SystemExit(
                f"{path} holds {held} seeds, this call asks for {seeds}: use another --out"
            )
        ran = record["evaluations"][-1]["step"]
        if ran != budget:
            raise SystemExit(
                f"{path} ran {ran} steps, this call asks for {budget}: use another --out"
            )
        return record
    record = make()
    write_json(path, record)
    return record


# --------------------------------------------------------------------------------------------
# rlgen's side


def curve(records: list[dict], phase: str) -> list[dict]:
    return [{"step": r["step"], "return": r["return"]} for r in records if r["phase"] == phase]


def fresh(run_dir: Path) -> Path:
    """``run_dir`` emptied: a job that did not finish starts over (its record is the unit of
    resumption)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    return run_dir


def rlgen_offline(scale: Scale, algo: str, updates: int, dataset: Path, run_dir: Path) -> dict:
    from rlgen.train.finetune import FinetuneConfig, FinetuneRun

    config = FinetuneConfig(
        env=scale.dataset[0],
        backend="mujoco",
        algo=algo,
        dataset=str(dataset),
        seeds=scale.seeds,
        hidden=scale.hidden,
        batch_size=scale.batch_size,
        eval_episodes=scale.eval_episodes,
        pretrain_steps=updates,
        pretrain_eval_every=updates // scale.offline_evals,
        chunk=math.gcd(1_000, updates // scale.offline_evals),  # evaluate where the peer does
        steps=0,
        run_dir=str(fresh(run_dir)),
        progress=False,
    )
    results = FinetuneRun(config).run()
    rate = steady_rate(run_dir / "pretrain" / "metrics.jsonl", "updates_per_s") / scale.seeds
    return {
        "evaluations": curve(results["evaluations"], "pretrain"),
        "updates_per_s_per_seed": rate,
        "wall_s": results["wall_time_s"],
    }


# UTD 20 settings: rlgen's REDQ-style ensemble (10 critics, LayerNorm, a random 2 in the
# target) and sbx's DroQ (2 critics with dropout 0.01 and LayerNorm), each library's own
HIGH_UTD = {
    "rlgen": dict(utd=20, num_critics=10, critic_layer_norm=True),
    "sbx": dict(utd=20, n_critics=2, layer_norm=True, dropout_rate=0.01),
}


def rlgen_online(scale: Scale, task: str, run_dir: Path, high_utd: bool = False) -> dict:
    from rlgen.train.runner import OnlineConfig, OnlineRun

    config = OnlineConfig(
        env=task,
        backend="mujoco",
        seeds=scale.seeds,
        hidden=scale.hidden,
        batch_size=scale.batch_size,
        eval_episodes=scale.eval_episodes,
        steps=scale.online_steps,
        warmup=scale.online_warmup,
        eval_every=scale.online_eval_every,
        chunk=math.gcd(1_000, scale.online_eval_every),
        checkpoint_every=0,
        run_dir=str(fresh(run_dir)),
        progress=False,
        **(HIGH_UTD["rlgen"] if high_utd else {}),
    )
    results = OnlineRun(config).run()
    rate = steady_rate(run_dir / "metrics.jsonl", "env_steps_per_s") / scale.seeds
    return {
        "evaluations": curve(results["evaluations"], "online"),
        "env_steps_per_s_per_seed": rate,
        "wall_s": results["wall_time_s"],
    }


# --------------------------------------------------------------------------------------------
# Pairs


def offline_pair(scale, algo, updates, dataset, out, args) -> dict:
    jobs = out / "jobs" / f"offline-{algo}"
    learners = {
        "rlgen": cached(
            jobs / "rlgen.json",
            args.resume,
            lambda: rlgen_offline(scale, algo, updates, dataset, out / "runs" / f"offline-{algo}"),
            updates,
            scale.seeds,
        )
    }
    if args.peers != "none":
        seeds = []
        for seed in range(scale.seeds):
            job = dict(
                algo=algo,
                dataset=str(dataset),
                env_id=GYM_IDS[scale.dataset[0]],
                updates=updates,
                eval_every=updates // scale.offline_evals,
                eval_episodes=scale.eval_episodes,
                seed=seed,
                batch_size=scale.batch_size,
                hidden=list(scale.hidden),
                threads=os.cpu_count(),
            )
            path = jobs / f"d3rlpy-seed{seed}.json"
            make = lambda job=job, path=path: run_peer(  # noqa: E731
                "d3rlpy", "d3rlpy_offline.py", job, path, args.venvs
            )
            seeds.append(cached(path, args.resume, make, updates))
        learners["d3rlpy"] = merge_seeds(seeds, "updates_per_s", "updates_per_s_per_seed")
    return {"task": scale.dataset[0], "steps": "updates", **compare(scale.dataset[0], learners)}


def online_pair(scale, task, out, args, high_utd: bool = False) -> dict:
    name = f"online-{task}" + ("-utd20" if high_utd else "")
    jobs = out / "jobs" / name
    learners = {
        "rlgen": cached(
            jobs / "rlgen.json",
            args.resume,
            lambda: rlgen_online(scale, task, out / "runs" / name, high_utd),
            scale.online_steps,
            scale.seeds,
        )
    }
    if args.peers != "none":
        seeds = []
        for seed in range(scale.seeds):
            job = dict(
                env_id=GYM_IDS[task],
                steps=scale.online_steps,
                warmup=scale.online_warmup,
                eval_every=scale.online_eval_every,
                eval_episodes=scale.eval_episodes,
                seed=seed,
                batch_size=scale.batch_size,
                hidden=list(scale.hidden),
                buffer_size=1_000_000,
                **(HIGH_UTD["sbx"] if high_utd else {"utd": 1}),
            )
            path = jobs / f"sbx-seed{seed}.json"
            make = lambda job=job, path=path: run_peer(  # noqa: E731
                "sbx", "sbx_online.py", job, path, args.venvs
            )
            seeds.append(cached(path, args.resume, make, scale.online_steps))
        learners["sbx"] = merge_seeds(seeds, "env_steps_per_s", "env_steps_per_s_per_seed")
    return {"task": task, "steps": "env steps", **compare(task, learners)}


def merge_seeds(records: list[dict], rate: str, name: str) -> dict:
    """One learner record from per-seed peer results: returns stacked per evaluation step."""
    steps = [e["step"] for e in records[0]["evaluations"]]
    evaluations = [
        {"step": step, "return": [r["evaluations"][i]["return"] for r in records]}
        for i, step in enumerate(steps)
    ]
    return {
        "evaluations": evaluations,
        name: float(np.mean([r[rate] for r in records])),
        "versions": records[0]["versions"],
    }


def seed_scores(task: str, evaluation: dict) -> np.ndarray:
    """Per-seed D4RL-normalised score of one evaluation: the mean over its episodes (rlgen
    records the per-seed mean already; peers record every episode of every seed)."""
    returns = np.asarray(evaluation["return"], np.float64)
    per_seed = returns.mean(axis=-1) if returns.ndim == 2 else returns
    return normalized_score(task, per_seed)


def verdict(ours: tuple[float, float, float], peer: tuple[float, float, float]) -> str:
    """parity when the (value, low, high) intervals overlap, else ahead or behind."""
    if ours[1] <= peer[2] and peer[1] <= ours[2]:
        return "parity"
    return "ahead" if ours[0] > peer[0] else "behind"


def compare(task: str, learners: dict[str, dict]) -> dict:
    """Final IQM with its 95% interval per learner, and rlgen's verdict against the peer."""
    finals = {}
    for name, record in learners.items():
        scores = seed_scores(task, record["evaluations"][-1])
        finals[name] = dict(zip(("iqm", "low", "high"), bootstrap_ci(scores), strict=True))
        finals[name]["scores"] = scores.tolist()
    out = {"learners": learners, "final": finals}
    peers = [n for n in learners if n != "rlgen"]
    if peers:
        ours, theirs = (
            tuple(finals[n][k] for k in ("iqm", "low", "high")) for n in ("rlgen", peers[0])
        )
        out["peer"] = peers[0]
        out["verdict"] = verdict(ours, theirs)
    return out


# --------------------------------------------------------------------------------------------
# Report


def plot(name: str, pair: dict, out: Path) -> Path:
    from rlgen import plots

    curves = {}
    for learner, record in pair["learners"].items():
        evaluations = record["evaluations"]
        steps = [e["step"] for e in evaluations]
        curves[learner] = (steps, [seed_scores(pair["task"], e) for e in evaluations])
    return plots.score_curves(
        curves, out / f"{name}.png", title=name, xlabel=f"{pair['steps']} per seed"
    )


def rate_of(learner: str, record: dict, seeds: int) -> str:
    """``per seed / whole machine`` rate: rlgen runs its seeds at once (the machine's rate is
    seeds x the per-seed one), a peer one seed at a time (the two are the same)."""
    for key, unit in (
        ("updates_per_s_per_seed", "updates/s"),
        ("env_steps_per_s_per_seed", "env steps/s"),
    ):
        if key in record:
            together = record[key] * (seeds if learner == "rlgen" else 1)
            return f"{record[key]:.1f} / {together:.1f} {unit}"
    return ""


def dataset_record(path: Path, task: str, kind: str, rows: int) -> dict:
    """The offline pairs' dataset: its file, how to make it again and what its metadata says."""
    from rlgen.data.datasets import read_metadata
    from rlgen.train import behaviour

    meta = read_metadata(path)
    _, package = behaviour.load_policy(task, "medium")
    behaviour_command = package["command"]
    if kind == "medium-replay":  # the run replayed up to its own medium point
        behaviour_command += f" --steps {meta['policy_step']}"
    keys = ("size", "policy_step", "policy_return", "policy_score", "data_return", "num_episodes")
    return {
        "file": path.name,
        "command": f"rlgen dataset generate --env {task} --kind {kind} --size {rows}",
        "behaviour_command": behaviour_command,
        **{k: meta[k] for k in keys if k in meta},
    }


def device(system: dict) -> str:
    d, v = system["device"], system["versions"]
    return (
        f"{d.get('cpu_model', '')} ({d.get('cpu_count', '?')} cores), {d['device_kind']} x "
        f"{d['device_count']}; " + ", ".join(f"{k} {v[k]}" for k in sorted(v))
    )


def markdown(report: dict) -> str:
    s = report["scale"]
    lines = [
        f"# Parity ({report['scale_name']} scale, {report['date']})",
        "",
        f"device: {device(report['system'])}; seeds {s['seeds']}, hidden {s['hidden']}, "
        f"batch {s['batch_size']}, {s['eval_episodes']} deterministic evaluation episodes",
        "",
        "| pair | learner | final IQM [95% CI] | per-seed scores | rate: per seed / machine "
        "| verdict |",
        "|---|---|---|---|---|---|",
    ]
    data = report.get("dataset")
    if data:
        lines[3:3] = [
            f"offline dataset: {data['file']}, {data.get('size', '?')} rows (`{data['command']}`)"
            f"; policy step {data.get('policy_step')}, return {data.get('policy_return', 0):.1f} "
            f"(D4RL {data.get('policy_score', 0):.1f}); behaviour run: "
            f"`{data.get('behaviour_command')}`",
            "",
        ]
    for name, pair in report["pairs"].items():
        for learner, final in pair["final"].items():
            scores = ", ".join(f"{v:.1f}" for v in final["scores"])
            cell = f"{final['iqm']:.1f} [{final['low']:.1f}, {final['high']:.1f}]"
            rate = rate_of(learner, pair["learners"][learner], s["seeds"])
            mark = pair.get("verdict", "") if learner == "rlgen" else ""
            lines.append(f"| {name} | {learner} | {cell} | {scores} | {rate} | {mark} |")
    lines += ["", f"command: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="cpu")
    parser.add_argument("--out", type=Path, default=Path("results/parity"))
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="PAIR",
        help="run these pairs (e.g. offline-iql) or halves (offline, online); default: all",
    )
    parser.add_argument("--seeds", type=int, help="seeds per learner (default: the scale's)")
    parser.add_argument(
        "--updates", type=int, help="updates of every offline pair (default: the scale's)"
    )
    parser.add_argument("--peers", choices=("run", "none"), default="run")
    parser.add_argument("--venvs", type=Path, default=Path("results/parity/venvs"))
    parser.add_argument("--resume", action="store_true", help="skip jobs already in OUT/jobs")
    parser.add_argument("--data-dir", help="dataset cache (default: rlgen's)")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    if args.seeds is not None:
        if args.seeds < 2:
            raise SystemExit(f"--seeds must be >= 2 (an interval needs two), got {args.seeds}")
        scale = dataclasses.replace(scale, seeds=args.seeds)
    if args.updates is not None:
        if args.updates <= 0 or args.updates % scale.offline_evals:
            raise SystemExit(
                f"--updates must be a positive multiple of the scale's {scale.offline_evals} "
                f"evaluations, got {args.updates}"
            )
        scale = dataclasses.replace(
            scale, offline=tuple((algo, args.updates) for algo, _ in scale.offline)
        )

    def wanted(name: str) -> bool:
        return not args.only or any(p in (name, name.split("-")[0]) for p in args.only)

    args.out.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    pairs, data_record = {}, None
    offline = [(a, n) for a, n in scale.offline if wanted(f"offline-{a}")]
    if offline:
        from rlgen.train import generate

        task, kind, rows = scale.dataset
        dataset = generate.generate(task, kind, rows, data_dir=args.data_dir, backend="mujoco")
        data_record = dataset_record(dataset, task, kind, rows)
        for algo, updates in offline:
            pairs[f"offline-{algo}"] = offline_pair(scale, algo, updates, dataset, args.out, args)
            print(f"offline-{algo}: {pairs[f'offline-{algo}'].get('verdict', 'done')}", flush=True)
    runs = [(task, False) for task in scale.online_tasks]
    runs += [(task, True) for task in scale.high_utd_tasks]
    for task, high_utd in runs:
        name = f"online-{task}" + ("-utd20" if high_utd else "")
        if wanted(name):
            pairs[name] = online_pair(scale, task, args.out, args, high_utd)
            print(f"{name}: {pairs[name].get('verdict', 'done')}", flush=True)
    report = {
        "scale_name": args.scale,
        "scale": dataclasses.asdict(scale),
        "date": time.strftime("%Y-%m-%d"),
        "system": runinfo.describe(),
        "command": "python -m benchmarks.parity " + " ".join(argv or sys.argv[1:]),
        "wall_s": time.perf_counter() - begin,
        "dataset": data_record,
        "pairs": pairs,
    }
    for name, pair in pairs.items():
        plot(name, pair, args.out)
    write_json(args.out / "parity.json", report)
    page = args.out / "parity.md"
    page.with_suffix(".md.tmp").write_text(markdown(report))
    page.with_suffix(".md.tmp").replace(page)
    print(markdown(report))


if __name__ == "__main__":
    main()
