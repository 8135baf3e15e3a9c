"""Dynamics-ensemble throughput: training epochs/s, MOPO rollout and next-state replacement rates.

Hopper-sized synthetic data (obs 11, action 3, 10k transitions), batch 256, the default ensemble
(7 members, 4 x 200 SiLU, fp32 "highest" matmuls), for 1 and 8 seeds vmapped. Training runs a
fixed number of epochs (patience above it, so early stopping never ends it early); rollouts are
horizon-5 MOPO rollouts of a tanh-linear policy from dataset states; replacement is
``replace_next_states`` on (20, 256) batch stacks (UTD 20) at fraction 0.5.

    python -m benchmarks.dynamics            # full sizes
    python -m benchmarks.dynamics --quick    # CPU-sized: 1 epoch, 1k rollout starts
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks.common import print_table, time_call, write_results
from rlgen import envs
from rlgen.data.transition import Transition
from rlgen.gen import dynamics

OBS_DIM, ACTION_DIM = 11, 3  # hopper
TERMINATED = envs.make("hopper", backend="mujoco").terminated


def synthetic_data(n: int) -> Transition:
    """Smooth random dynamics; only the shapes matter for speed."""
    k_obs, k_act, k_w, k_noise = jax.random.split(jax.random.key(0), 4)
    obs = jax.random.normal(k_obs, (n, OBS_DIM))
    action = jax.random.uniform(k_act, (n, ACTION_DIM), minval=-1.0, maxval=1.0)
    w = jax.random.normal(k_w, (OBS_DIM + ACTION_DIM, OBS_DIM)) / 4
    delta = jnp.tanh(jnp.concatenate([obs, action], -1) @ w)
    zero = jnp.zeros(n)
    return Transition(
        obs=obs,
        action=action,
        reward=delta.sum(-1),
        next_obs=obs + delta + 0.01 * jax.random.normal(k_noise, (n, OBS_DIM)),
        terminal=(obs[:, 0] > 2.5).astype(jnp.float32),
        truncated=zero,
        mc_return=zero,
    )


def policy(obs: jax.Array, key: jax.Array) -> jax.Array:
    w = jnp.linspace(-1.0, 1.0, OBS_DIM * ACTION_DIM).reshape(OBS_DIM, ACTION_DIM)
    return jnp.tanh(obs @ w + 0.1 * jax.random.normal(key, (*obs.shape[:-1], ACTION_DIM)))


def bench(seeds: int, data: Transition, args) -> dict:
    config = dynamics.Config(
        OBS_DIM, ACTION_DIM, batch_size=args.batch, max_epochs=args.epochs, patience=args.epochs + 1
    )
    keys = jax.random.split(jax.random.key(1), seeds)
    fit = jax.jit(jax.vmap(lambda k, d: dynamics.fit(k, config, d), in_axes=(0, None)))
    train_s, train_c = time_call(lambda: fit(keys, data), repeats=args.repeats)
    states, _ = fit(keys, data)

    starts = data.obs[: args.starts]
    roll = jax.jit(
        jax.vmap(lambda s, k: dynamics.rollout(s, k, policy, starts, args.horizon, 1.0, TERMINATED))
    )
    roll_s, roll_c = time_call(lambda: roll(states, keys), repeats=args.repeats)

    idx = jnp.arange(args.utd * args.batch).reshape(args.utd, args.batch)
    batches = jax.tree.map(lambda a: a[idx], data)
    replace = jax.jit(
        jax.vmap(
            lambda s, k: dynamics.replace_next_states(s, k, batches, 0.5, terminated=TERMINATED)
        )
    )
    replace_s, replace_c = time_call(lambda: replace(states, keys), repeats=args.repeats)

    train_rows = len(data) - min(round(config.holdout_fraction * len(data)), config.max_holdout)
    return {
        "seeds": seeds,
        "train_epochs_per_s": seeds * args.epochs / train_s,
        "train_sgd_steps_per_s": seeds * args.epochs * -(-train_rows // args.batch) / train_s,
        "rollout_transitions_per_s": seeds * args.starts * args.horizon / roll_s,
        "replace_rows_per_s": seeds * args.utd * args.batch / replace_s,
        "compile_s": {"fit": train_c, "rollout": roll_c, "replace": replace_c},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="CPU-sized: 1 epoch, 1k starts, 1 and 4 seeds"
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="default 1 8 (--quick: 1 4)")
    parser.add_argument("--transitions", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--utd", type=int, default=20)
    parser.add_argument("--out", default="results/bench_dynamics.json")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or ([1, 4] if args.quick else [1, 8])
    args.epochs = 1 if args.quick else 5
    args.starts = 1_000 if args.quick else 50_000
    args.repeats = 1 if args.quick else 3

    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", ".jax_cache")
    data = synthetic_data(args.transitions)
    rows = [bench(seeds, data, args) for seeds in args.seeds]
    print_table(
        [{k: v for k, v in r.items() if k != "compile_s"} for r in rows],
        f"dynamics ensemble (7 x 4x200, hopper dims) on {jax.devices()[0].device_kind}",
    )
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    summary, compile_s = {}, {}
    for r in rows:
        summary[f"train epochs/s, S={r['seeds']}"] = r["train_epochs_per_s"]
        summary[f"rollout transitions/s, S={r['seeds']}"] = r["rollout_transitions_per_s"]
        for phase, seconds in r["compile_s"].items():
            compile_s[f"{phase}, S={r['seeds']}"] = seconds
    write_results(args.out, "dynamics", rows, summary, compile_s, settings=settings)


if __name__ == "__main__":
    main()
