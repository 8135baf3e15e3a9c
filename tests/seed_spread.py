"""The measured distribution behind each learning check's threshold: its statistic over many
base seeds, on this machine, as the tests compute it.

    python -m tests.seed_spread sac_online --seeds 10
    python -m tests.seed_spread offline_iql --seeds 10 --broken   # with the update broken

Prints min / median / max per statistic and appends a record to
``docs/results/learning_checks.jsonl``. ``--broken`` runs the same check with the actor's
learning rate at 0, the proof that the check fails when learning breaks. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import tests.conftest  # noqa: F401  (sets the suite's platform and XLA flags before jax loads)
from rlgen import runinfo

RESULTS = Path(__file__).parents[1] / "docs" / "results" / "learning_checks.jsonl"


def _random_hopper():
    from rlgen.data import datasets
    from rlgen.train import generate

    path = generate.generate(
        "hopper", "random", size=3000, data_dir=tempfile.mkdtemp(), progress=False
    )
    return datasets.to_transitions(datasets.load(path)[0])


def _sac_online(seed: int, broken: bool) -> dict:
    from tests.test_online import measure_sac_learning

    off = dict(actor_lr=0.0) if broken else {}
    return {"mean_final_return": measure_sac_learning(seed, tempfile.mkdtemp(), **off)}


def _td3_online(seed: int, broken: bool, dataset=None) -> dict:
    from tests.test_finetune import measure_td3_online

    off = dict(actor_lr=0.0) if broken else {}
    return measure_td3_online(seed, dataset, tempfile.mkdtemp(), **off)


def _offline(name: str):
    def measure(seed: int, broken: bool) -> dict:
        import jax

        from tests import test_offline_learning as t

        module, config, steps = t.AGENTS[name]
        hp = module.HParams(actor_lr=0.0) if broken else None
        return {
            "score": float(t.train_and_evaluate(module, config, steps, jax.random.key(seed), hp))
        }

    return measure


CHECKS = {
    "sac_online": _sac_online,
    "td3_online": _td3_online,
    **{f"offline_{n}": _offline(n) for n in ("cql", "calql", "iql", "td3bc")},
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=sorted(CHECKS))
    parser.add_argument("--seeds", type=int, default=10, help="base seeds 0 .. N-1")
    parser.add_argument("--broken", action="store_true", help="learning switched off")
    args = parser.parse_args(argv)
    measure = CHECKS[args.check]
    extra = {"dataset": _random_hopper()} if args.check == "td3_online" else {}
    values: dict[str, list[float]] = {}
    start = time.perf_counter()
    for seed in range(args.seeds):
        for k, v in measure(seed, args.broken, **extra).items():
            values.setdefault(k, []).append(v)
        print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in values.items()))
    spread = {
        k: {"min": min(v), "median": float(np.median(v)), "max": max(v), "values": v}
        for k, v in values.items()
    }
    for k, s in spread.items():
        print(f"{args.check} {k}: min {s['min']:.3f}  median {s['median']:.3f}  max {s['max']:.3f}")
    record = {
        "check": args.check,
        "broken": args.broken,
        "seeds": args.seeds,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.perf_counter() - start, 1),
        "cpu": runinfo.cpu_model(),
        "spread": spread,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
