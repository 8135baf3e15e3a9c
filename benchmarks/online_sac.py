"""Online SAC throughput: rlgen's jit(vmap(chunk)) over seeds vs Brax's own SAC trainer.

    python -m benchmarks.online_sac                       # GPU defaults: S in 1,8,32,128 x UTD 1,20
    python -m benchmarks.online_sac --quick               # CPU-sized check of the same code

Both learners step the same rlgen env (Gymnasium-v5 Hopper; MJX on a GPU). Rates are aggregate
over seeds: env steps/s = seeds * envs * blocks / s; updates/s counts critic updates. Compile
time is the first chunk's time minus a steady chunk's. Brax runs on one seed, 1 env per UTD.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from benchmarks.common import print_table, write_results
from rlgen import envs
from rlgen.train.runner import OnlineConfig, OnlineRun


def bench_rlgen(env_name, backend, seeds, utd, num_envs, blocks, hidden):
    config = OnlineConfig(
        env=env_name,
        backend=backend,
        seeds=seeds,
        utd=utd,
        num_envs=num_envs,
        chunk=blocks,
        warmup=max(256, num_envs),
        steps=10**9,
        buffer_size=100_000,
        hidden=hidden,
        progress=False,
        run_dir="/tmp/rlgen-bench",
    )
    run = OnlineRun(config)
    state = run.warmup_fn(run.init_state())
    jax.block_until_ready(state)
    start = time.perf_counter()
    state, metrics, _ = run.train_fn(state)
    jax.block_until_ready(metrics)
    first = time.perf_counter() - start
    start = time.perf_counter()
    state, metrics, _ = run.train_fn(state)
    jax.block_until_ready(metrics)
    steady = time.perf_counter() - start
    steps = seeds * num_envs * blocks
    return {
        "learner": "rlgen",
        "seeds": seeds,
        "envs_per_seed": num_envs,
        "utd": utd,
        "env_steps_per_s": steps / steady,
        "updates_per_s": seeds * blocks * utd / steady,
        "compile_s": max(first - steady, 0.0),
    }


def as_brax(env):
    """rlgen env seen through brax's Env/State types, so brax's trainer and wrappers accept it."""
    from brax.envs.base import Env as BraxEnv
    from brax.envs.base import State as BraxState

    def to_brax(s, info):
        return BraxState(
            pipeline_state=s.pipeline_state,
            obs=s.obs,
            reward=s.reward,
            done=s.done,
            metrics=s.metrics,
            info=info,
        )

    class AsBrax(BraxEnv):
        observation_size = env.observation_size
        action_size = env.action_size
        backend = "mjx"

        def reset(self, key):
            s = env.reset(key)
            return to_brax(s, {"rlgen": s.info})

        def step(self, state, action):
            ours = envs.State(
                pipeline_state=state.pipeline_state,
                obs=state.obs,
                reward=state.reward,
                done=state.done,
                metrics=state.metrics,
                info=state.info["rlgen"],
            )
            s = env.step(ours, action)
            s = s.replace(metrics={**state.metrics, **s.metrics})
            return to_brax(s, {**state.info, "rlgen": s.info})

    return AsBrax()


def bench_brax(env_name, backend, utd, num_steps):
    from brax.training.agents.sac import train as brax_sac

    if not hasattr(jax, "device_put_replicated"):  # removed in jax 0.11; brax still calls it
        jax.device_put_replicated = lambda x, devices: jax.tree.map(
            lambda a: jnp.stack([a] * len(devices)), x
        )
    env = as_brax(envs.make(env_name, backend=backend))
    times = []
    progress = lambda step, metrics: times.append((time.perf_counter(), step))  # noqa: E731
    brax_sac.train(
        env,
        num_timesteps=num_steps,
        episode_length=1000,
        num_envs=1,
        num_eval_envs=1,
        num_evals=3,
        batch_size=256,
        grad_updates_per_step=utd,
        min_replay_size=256,
        max_replay_size=100_000,
        progress_fn=progress,
        wrap_env=True,
        seed=0,
    )
    (t0, s0), (t1, s1) = times[-2], times[-1]
    return {
        "learner": "brax-sac",
        "seeds": 1,
        "envs_per_seed": 1,
        "utd": utd,
        "env_steps_per_s": (s1 - s0) / (t1 - t0),
        "updates_per_s": (s1 - s0) * utd / (t1 - t0),
        "compile_s": float("nan"),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--utd", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--many-envs", type=int, default=64, help="envs per seed for that row")
    parser.add_argument("--blocks", type=int, default=1_000, help="blocks per timed chunk")
    parser.add_argument("--brax-steps", type=int, default=30_000)
    parser.add_argument("--no-brax", action="store_true")
    parser.add_argument("--quick", action="store_true", help="CPU-sized: few seeds, short chunks")
    parser.add_argument("--out", default="results/bench_online_sac.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.blocks, args.brax_steps, args.many_envs = 200, 3_000, 16
    hidden = (256, 256)
    rows = []
    for utd in args.utd:
        for seeds in args.seeds:
            rows.append(bench_rlgen(args.env, args.backend, seeds, utd, 1, args.blocks, hidden))
            print(rows[-1], flush=True)
        rows.append(
            bench_rlgen(args.env, args.backend, 1, utd, args.many_envs, args.blocks, hidden)
        )
        if not args.no_brax:
            rows.append(bench_brax(args.env, args.backend, utd, args.brax_steps))
        print(rows[-1], flush=True)
    print_table(rows, f"online SAC on {args.env}, {jax.devices()[0].device_kind}")
    write_results(args.out, "online_sac", rows, env=args.env, backend=args.backend)


if __name__ == "__main__":
    main()
