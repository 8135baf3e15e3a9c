"""Online SAC throughput: rlgen's jit(vmap(chunk)) over seeds vs Brax's own SAC trainer.

    python -m benchmarks.online_sac                       # GPU defaults: S in 1,8,32,128 x UTD 1,20
    python -m benchmarks.online_sac --quick               # CPU-sized check of the same code

Both learners step the same rlgen env (Gymnasium-v5 Hopper; MJX on a GPU). Rates are aggregate
over seeds: env steps/s = seeds * envs * blocks / s; updates/s counts critic updates. A timed
chunk holds ``--updates`` critic updates per seed (``updates / utd`` blocks). rlgen's phases
are compiled ahead of time and each compile is timed; Brax's rate is its own ``training/sps`` of
its second epoch, and its compile time the first epoch's time minus the second's. Brax runs on
one seed, 1 env, UTD critic updates per env step.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from benchmarks.common import aot, peer_version, print_table, write_results
from rlgen import envs
from rlgen.train.runner import OnlineConfig, OnlineRun


def bench_config(**overrides) -> OnlineConfig:
    """An OnlineConfig for throughput runs: no progress bar, a 100k replay, 256 warm-up steps."""
    overrides.setdefault("warmup", max(256, overrides.get("num_envs", 1)))
    defaults = dict(steps=10**9, buffer_size=100_000, progress=False, run_dir="/tmp/rlgen-bench")
    return OnlineConfig(**{**defaults, **overrides})


def start(config: OnlineConfig, evaluate: bool = False):
    """Init and warm up an OnlineRun through phases compiled ahead of time.

    Returns the run, its state after the warm-up, the compiled ``train`` (and ``eval``) phases,
    and the compile seconds of each phase (init, warmup, train_chunk, eval).
    """
    run = OnlineRun(config)
    keys = run.seed_keys()
    init, init_s = aot(run.init_fn, keys, run.lane_hp)
    state = init(keys, run.lane_hp)
    warmup, warmup_s = aot(run.warmup_fn, state)
    compiled = {}
    compiled["train"], train_s = aot(run.train_fn, state)
    compile_s = {"init": init_s, "warmup": warmup_s, "train_chunk": train_s}
    if evaluate:
        compiled["eval"], compile_s["eval"] = aot(run.eval_fn, state.agent, run.seed_keys(1))
    state = jax.block_until_ready(warmup(state))
    return run, state, compiled, compile_s


def steady_chunk_s(train, state) -> float:
    """Seconds of a compiled train chunk, timed on the second of two calls."""
    for _ in range(2):
        begin = time.perf_counter()
        state, metrics, _ = train(state)
        jax.block_until_ready(metrics)
    return time.perf_counter() - begin


def bench_rlgen(env_name, backend, seeds, utd, num_envs, updates, **agent):
    """Aggregate env steps/s and critic updates/s of a steady chunk, with compile seconds;
    ``agent``: OnlineConfig overrides (e.g. num_critics=10, critic_layer_norm=True)."""
    blocks = max(updates // utd, 1)
    run = dict(env=env_name, backend=backend, seeds=seeds, utd=utd, num_envs=num_envs)
    config = bench_config(**run, chunk=blocks, **agent)
    _, state, compiled, compile_s = start(config)
    seconds = steady_chunk_s(compiled["train"], state)
    return {
        "learner": "rlgen" + (" 10 critics + LN" if agent else ""),
        "seeds": seeds,
        "envs_per_seed": num_envs,
        "utd": utd,
        "env_steps_per_s": seeds * num_envs * blocks / seconds,
        "updates_per_s": seeds * blocks * utd / seconds,
        **{f"{phase}_compile_s": t for phase, t in compile_s.items()},
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
    epochs = []  # (env steps at the epoch's end, its training/sps) per training epoch

    def progress(step, metrics):
        if step:  # not the evaluation before training
            epochs.append((step, float(metrics["training/sps"])))

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
    (s1, sps1), (s2, sps2) = epochs
    return {
        "learner": "brax-sac",
        "seeds": 1,
        "envs_per_seed": 1,
        "utd": utd,
        "env_steps_per_s": sps2,
        "updates_per_s": sps2 * utd,
        "train_compile_s": max((s2 - s1) / sps1 - (s2 - s1) / sps2, 0.0),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU-sized: 1 seed, short chunks")
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--utd", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--many-envs", type=int, help="envs per seed for that row")
    parser.add_argument("--updates", type=int, help="critic updates per seed per timed chunk")
    parser.add_argument("--brax-steps", type=int, help="env steps of the Brax SAC run")
    parser.add_argument("--no-brax", action="store_true")
    parser.add_argument("--out", default="results/bench_online_sac.json")
    args = parser.parse_args(argv)
    quick = args.quick
    args.seeds = args.seeds or ([1] if quick else [1, 8, 32, 128])
    args.many_envs = args.many_envs or (16 if quick else 64)
    args.updates = args.updates or (200 if quick else 20_000)
    args.brax_steps = args.brax_steps or (1_000 if quick else 30_000)
    rows = []
    for utd in args.utd:
        for seeds in args.seeds:
            rows.append(bench_rlgen(args.env, args.backend, seeds, utd, 1, args.updates))
            print(rows[-1], flush=True)
        rows.append(bench_rlgen(args.env, args.backend, 1, utd, args.many_envs, args.updates))
        print(rows[-1], flush=True)
        if utd > 1:  # the high-UTD setting users run (REDQ / DroQ-style ensembles)
            ensemble = dict(num_critics=10, critic_layer_norm=True)
            rows.append(bench_rlgen(args.env, args.backend, 1, utd, 1, args.updates, **ensemble))
            print(rows[-1], flush=True)
        if not args.no_brax:
            rows.append(bench_brax(args.env, args.backend, utd, args.brax_steps))
            print(rows[-1], flush=True)
    print_table(rows, f"online SAC on {args.env}, {jax.devices()[0].device_kind}")
    summary, compile_s = {}, {}
    for r in rows:
        label = f"{r['learner']} UTD {r['utd']}, S={r['seeds']}, {r['envs_per_seed']} env/seed"
        summary[f"env steps/s, {label}"] = r["env_steps_per_s"]
        compile_s.update(
            {f"{k[:-10]}, {label}": v for k, v in r.items() if k.endswith("_compile_s")}
        )
    for utd in args.utd:
        same = {
            r["learner"]: r["env_steps_per_s"]
            for r in rows
            if r["utd"] == utd and r["seeds"] == r["envs_per_seed"] == 1
        }
        for learner, rate in same.items():  # rlgen's rows on 1 seed x 1 env vs Brax SAC's
            if learner != "brax-sac" and "brax-sac" in same:
                ratio = rate / same["brax-sac"]
                summary[f"{learner} / Brax SAC, UTD {utd}, S=1, 1 env/seed"] = f"{ratio:.3g}x"
    peer = "skipped" if args.no_brax else peer_version("brax")
    settings = {"quick": quick, "updates_per_chunk": args.updates, "brax_steps": args.brax_steps}
    write_results(
        args.out,
        "online_sac",
        rows,
        summary,
        compile_s,
        peer,
        env=args.env,
        backend=args.backend,
        settings=settings,
    )


if __name__ == "__main__":
    main()
