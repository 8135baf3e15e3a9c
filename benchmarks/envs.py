"""Env steps per second of rlgen.envs for each backend and batch size.

Each measurement runs `--steps` auto-resetting steps with random actions inside one jitted
`lax.scan` (compiled first, timed on a second call).

    python benchmarks/envs.py                                   # full table
    python benchmarks/envs.py --envs hopper --batch 1 64 --backends mujoco
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import mujoco

import rlgen.envs as E
from rlgen.envs.mjx_physics import DEFAULT_SOLVER


def rollout_fn(env: E.AutoReset, steps: int):
    """Jitted (state, key) -> state after `steps` auto-reset steps with uniform actions."""

    def one(carry, _):
        state, key = carry
        key, sub = jax.random.split(key)
        action = jax.random.uniform(sub, state.obs.shape[:1] + (env.action_size,), minval=-1)
        return (env.step(state, action), key), None

    return jax.jit(lambda state, key: jax.lax.scan(one, (state, key), length=steps)[0][0])


def measure(name: str, backend: str, batch: int, steps: int, solver: dict) -> dict:
    env = E.AutoReset(E.make(name, backend=backend, **solver))
    state = jax.jit(env.reset)(jax.random.split(jax.random.key(0), batch))
    run = rollout_fn(env, steps)
    start = time.perf_counter()
    state = jax.block_until_ready(run(state, jax.random.key(1)))
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(run(state, jax.random.key(2)))
    seconds = time.perf_counter() - start
    return {
        "env": name,
        "backend": backend,
        "batch": batch,
        "steps": steps,
        "steps_per_s": batch * steps / seconds,
        "first_call_s": compile_s,
        "solver": solver if backend == "mjx" else "C MuJoCo (model defaults)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=sorted(E.ENVS))
    parser.add_argument("--backends", nargs="+", default=["mujoco", "mjx"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 64, 1024])
    parser.add_argument("--steps", type=int, default=50, help="env steps per measurement")
    parser.add_argument("--iterations", type=int, default=DEFAULT_SOLVER["iterations"])
    parser.add_argument("--ls-iterations", type=int, default=DEFAULT_SOLVER["ls_iterations"])
    parser.add_argument("--solver", default=DEFAULT_SOLVER["solver"], choices=["newton", "cg"])
    parser.add_argument("--out", default="results/bench_envs.json")
    args = parser.parse_args()
    solver = {
        "iterations": args.iterations,
        "ls_iterations": args.ls_iterations,
        "solver": args.solver,
    }

    device = jax.devices()[0]
    meta = {
        "device": f"{device.platform}: {device.device_kind}",
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "mujoco": mujoco.__version__,
        "mjx_solver": solver,
    }
    print(json.dumps(meta))
    print(f"{'env':<12} {'backend':<7} {'batch':>6} {'steps/s':>10} {'first call s':>13}")
    rows = []
    for name in args.envs:
        for backend in args.backends:
            for batch in args.batch:
                row = measure(name, backend, batch, args.steps, solver)
                rows.append(row)
                print(
                    f"{name:<12} {backend:<7} {batch:>6} {row['steps_per_s']:>10,.0f}"
                    f" {row['first_call_s']:>13.1f}",
                    flush=True,
                )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**meta, "results": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
