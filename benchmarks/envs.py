"""Env steps per second of rlgen.envs for each backend and batch size.

Each measurement runs `--steps` auto-resetting steps with random actions inside one jitted
`lax.scan` (compiled first, timed on a second call).

    python -m benchmarks.envs                                   # full table
    python -m benchmarks.envs --quick                           # hopper, batch 1 and 64
    python -m benchmarks.envs --envs hopper --batch 1 64 --backends mujoco
"""

from __future__ import annotations

import argparse
import time

import jax

import rlgen.envs as E
from benchmarks.common import print_table, write_results
from rlgen.envs.physics import DEFAULT_SOLVER


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
    first = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(run(state, jax.random.key(2)))
    seconds = time.perf_counter() - start
    return {
        "env": name,
        "backend": backend,
        "batch": batch,
        "steps": steps,
        "steps_per_s": batch * steps / seconds,
        "compile_s": max(first - seconds, 0.0),
        "solver": solver if backend == "mjx" else "C MuJoCo (model defaults)",
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="hopper, batch 1 and 64 (CPU)")
    parser.add_argument("--envs", nargs="+")
    parser.add_argument("--backends", nargs="+", help="default: mujoco, and mjx off the CPU")
    parser.add_argument("--batch", nargs="+", type=int)
    parser.add_argument("--steps", type=int, default=50, help="env steps per measurement")
    parser.add_argument("--iterations", type=int, default=DEFAULT_SOLVER["iterations"])
    parser.add_argument("--ls-iterations", type=int, default=DEFAULT_SOLVER["ls_iterations"])
    parser.add_argument("--solver", default=DEFAULT_SOLVER["solver"], choices=["newton", "cg"])
    parser.add_argument(
        "--integrator", choices=["euler", "rk4"], help="MJX integrator (default: the model file's)"
    )
    parser.add_argument("--out", default="results/bench_envs.json")
    args = parser.parse_args(argv)
    args.envs = args.envs or (["hopper"] if args.quick else sorted(E.ENVS))
    args.batch = args.batch or ([1, 64] if args.quick else [1, 64, 1024])
    on_cpu = jax.default_backend() == "cpu"
    args.backends = args.backends or (["mujoco"] if on_cpu else ["mujoco", "mjx"])
    solver = {
        "iterations": args.iterations,
        "ls_iterations": args.ls_iterations,
        "solver": args.solver,
        "integrator": args.integrator,
    }

    rows = []
    for name in args.envs:
        for backend in args.backends:
            for batch in args.batch:
                rows.append(measure(name, backend, batch, args.steps, solver))
                print({k: rows[-1][k] for k in ("env", "backend", "batch", "steps_per_s")})
    table = [{k: v for k, v in r.items() if k != "solver"} for r in rows]
    print_table(table, f"env steps/s on {jax.devices()[0].device_kind}")
    label = lambda r: f"{r['env']} {r['backend']}, batch {r['batch']}"
    summary = {f"steps/s, {label(r)}": r["steps_per_s"] for r in rows}
    compile_s = {f"rollout, {label(r)}": r["compile_s"] for r in rows}
    write_results(args.out, "envs", rows, summary, compile_s, mjx_solver=solver, quick=args.quick)


if __name__ == "__main__":
    main()
