"""How close online SAC runs to this CPU's float32 matmul throughput, and what the speed goals
would need.

    python -m benchmarks.cpu_ceiling                # hopper, 256x256, batch 256; Brax at UTD 20

Three measurements in one run:

1. **Matmul throughput**: a jitted float32 ``(S, 256, 256) @ (S, 256, 256)`` (one SAC layer on a
   256 batch, S seeds batched as the seed ``vmap`` batches them) for S = 1 and 8, and a
   2048-cube matmul (the machine's large-matmul rate).
2. **FLOPs per block**: XLA's own count (``cost_analysis``) of one critic update and one actor +
   temperature update at batch 256, per seed; a block of UTD U costs U critic updates + one
   actor update (the env step, sampling and bookkeeping add well under 1%).
3. **Rates**: env steps/s of rlgen's train chunk (``benchmarks.online_sac``) for each workload
   and of Brax's SAC at UTD 20 in the same run; achieved GFLOP/s = rate x FLOPs per block.

From these, each speed goal of the online loop becomes the GFLOP/s it needs, next to the large
matmul's rate (the most this CPU does in float32; the ensemble and multi-seed layers are batched
matmuls, which reach more than one 256-wide layer does alone): a goal needing more than that
cannot be met by any change to the loop on this CPU. Writes ``results/bench/cpu_ceiling.json``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import peer_version, print_table, write_results
from benchmarks.online_sac import bench_brax, bench_rlgen
from rlgen import envs
from rlgen.agents import sac
from rlgen.data.transition import Transition

WORKLOADS = (  # (seeds, utd, num_critics + LayerNorm?)
    (1, 1, 2, False),
    (8, 1, 2, False),
    (1, 20, 2, False),
    (8, 20, 2, False),
    (1, 20, 10, True),
)


def matmul_gflops(seeds: int, size: int, repeats: int = 20) -> float:
    """Steady float32 GFLOP/s of a jitted batched ``(seeds, size, size)`` matmul."""
    keys = jax.random.split(jax.random.key(0))
    a, b = (jax.random.normal(k, (seeds, size, size), jnp.float32) for k in keys)
    matmul = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(matmul(a, b))
    start = time.perf_counter()
    for _ in range(repeats):
        out = matmul(a, b)
    jax.block_until_ready(out)
    seconds = (time.perf_counter() - start) / repeats
    return 2 * seeds * size**3 / seconds / 1e9


def flops(fn, *args) -> float:
    """XLA's FLOP count of ``jit(fn)(*args)``."""
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost["flops"])


def update_flops(env_name: str, num_critics: int, layer_norm: bool, batch_size: int = 256):
    """(critic update, actor + temperature update) FLOPs of one seed's SAC at ``batch_size``."""
    env = envs.make(env_name, backend="mujoco")
    obs_dim, act_dim = env.observation_size, env.action_size
    subset = 2
    config = sac.Config(
        obs_dim,
        act_dim,
        (256, 256),
        num_critics,
        subset,
        layer_norm,
        "mean" if num_critics > 2 else "min",
    )
    state = sac.init(jax.random.key(0), config)
    rng = np.random.default_rng(0)
    rows = lambda d: jnp.asarray(rng.normal(size=(batch_size, d)), jnp.float32)  # noqa: E731
    zeros = jnp.zeros(batch_size)
    batch = Transition(rows(obs_dim), rows(act_dim), zeros, rows(obs_dim), zeros, zeros, zeros)
    key = jax.random.key(1)
    critic = flops(lambda s, b, k: sac.update_critic(config, s, b, k), state, batch, key)
    actor = flops(lambda s, b, k: sac.update_actor(config, s, b, k), state, batch, key)
    return critic, actor


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--updates", type=int, default=400, help="critic updates per chunk")
    parser.add_argument("--brax-steps", type=int, default=1_000)
    parser.add_argument("--out", default="results/bench/cpu_ceiling.json")
    args = parser.parse_args(argv)

    peak = {s: matmul_gflops(s, 256) for s in (1, 8)}
    peak["large"] = matmul_gflops(1, 2048, repeats=5)
    print(
        f"matmul GFLOP/s: 256-layer x1 {peak[1]:.1f}, x8 {peak[8]:.1f}, 2048^3 {peak['large']:.1f}"
    )

    costs = {
        (critics, ln): update_flops(args.env, critics, ln)
        for critics, ln in {(w[2], w[3]) for w in WORKLOADS}
    }
    rows = []
    for seeds, utd, critics, ln in WORKLOADS:
        agent = dict(num_critics=critics, critic_layer_norm=True) if ln else {}
        rate = bench_rlgen(args.env, "mujoco", seeds, utd, 1, args.updates, **agent)
        critic, actor = costs[critics, ln]
        per_block = seeds * (utd * critic + actor)
        blocks_per_s = rate["env_steps_per_s"]  # 1 env per seed: one block = `seeds` env steps
        achieved = blocks_per_s / seeds * per_block / 1e9
        matmul = peak["large"]
        rows.append(
            {
                "learner": rate["learner"],
                "seeds": seeds,
                "utd": utd,
                "num_critics": critics,
                "env_steps_per_s": blocks_per_s,
                "gflop_per_block": per_block / 1e9,
                "achieved_gflops": achieved,
                "matmul_gflops": matmul,
                "share_of_matmul": achieved / matmul,
                "env_steps_per_s_at_matmul_rate": seeds * matmul * 1e9 / per_block,
            }
        )
        print(rows[-1], flush=True)
    brax = bench_brax(args.env, "mujoco", 20, args.brax_steps)
    print(brax, flush=True)

    by = {(r["seeds"], r["utd"], r["num_critics"]): r for r in rows}
    goals = []
    for utd in (1, 20):  # 8 seeds at >= 2x one seed's aggregate rate
        one, eight = by[1, utd, 2], by[8, utd, 2]
        need = 2 * one["env_steps_per_s"]
        goals.append(
            {
                "goal": f"8 seeds >= 2x one seed's aggregate env steps/s, UTD {utd}",
                "needed_env_steps_per_s": need,
                "measured": eight["env_steps_per_s"],
                "needed_gflops": need / 8 * eight["gflop_per_block"],
                "matmul_gflops": eight["matmul_gflops"],
            }
        )
    ens = by[1, 20, 10]
    need = 1.5 * brax["env_steps_per_s"]
    goals.append(
        {
            "goal": "10 critics + LayerNorm >= 1.5x Brax SAC (2 critics), UTD 20, 1 seed",
            "needed_env_steps_per_s": need,
            "measured": ens["env_steps_per_s"],
            "needed_gflops": need * ens["gflop_per_block"],
            "matmul_gflops": ens["matmul_gflops"],
        }
    )
    for g in goals:
        g["feasible_at_matmul_rate"] = g["needed_gflops"] <= g["matmul_gflops"]
    print_table(rows, f"online SAC vs the matmul rate, {args.env}, {jax.devices()[0].device_kind}")
    print_table(goals, "speed goals as GFLOP/s")
    summary = {
        g["goal"]: f"needs {g['needed_gflops']:.0f} GFLOP/s; matmul {g['matmul_gflops']:.0f}"
        for g in goals
    }
    summary["brax-sac UTD 20 env steps/s"] = brax["env_steps_per_s"]
    write_results(
        args.out,
        "cpu_ceiling",
        rows,
        summary,
        {},
        peer_version("brax"),
        matmul_gflops={str(k): v for k, v in peak.items()},
        update_flops={
            f"{c} critics{' + LN' if ln else ''}": {"critic": v[0], "actor": v[1]}
            for (c, ln), v in costs.items()
        },
        goals=goals,
        brax=brax,
    )


if __name__ == "__main__":
    main()
