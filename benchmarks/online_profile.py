"""Where the time of one online SAC block goes: each stage timed alone in a compiled loop.

    python -m benchmarks.online_profile                 # hopper, 1 seed, 1 env, UTD 1 and 20
    python -m benchmarks.online_profile --seeds 8 --utd 1

A block of :func:`rlgen.train.online.train_chunk` is act -> env step (with auto-reset) ->
staging the new row -> (U, B) sample -> U critic updates -> actor + temperature update ->
metrics. Each stage runs ``--blocks`` times in one ``lax.scan`` under the same ``vmap`` over
seeds as the runner, on the state a warmed-up run holds (``--buffer-size`` rows of replay); the
table gives microseconds per block and the share of the whole block (the stages do not add up
exactly: XLA fuses and schedules the whole block as one program). Writes
``results/bench/online_profile.json``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from benchmarks.common import print_table, write_results
from benchmarks.online_sac import bench_config
from rlgen.agents import sac
from rlgen.data import replay
from rlgen.train.online import env_step, staging_buffer, train_chunk
from rlgen.train.runner import OnlineRun


def stages(run: OnlineRun) -> dict:
    """name -> fn(run_state) -> run_state doing one block's share of that stage."""
    agent, vec_env, loop = run.agent, run.vec_env, run.loop
    config = run.agent_config

    def act(s):
        key, k = jax.random.split(s.key)
        action = agent.act(s.agent, s.env.obs, k, False)
        return s.replace(key=key, episode_return=s.episode_return + action[..., 0])

    def env_only(s):
        action = jnp.zeros((loop.num_envs, vec_env.action_size))
        return s.replace(env=vec_env.step(s.env, action))

    def step_and_stage(s):
        action = jnp.zeros((loop.num_envs, vec_env.action_size))
        return env_step(s, staging_buffer(s, 1), vec_env, action)[0]

    def sample(s):
        key, k = jax.random.split(s.key)
        batch = replay.sample(s.buffer, k, loop.batch_size, loop.utd)
        return s.replace(key=key, episode_return=s.episode_return + batch.reward.sum())

    def critic_updates(s):
        key, k_sample, k_update = jax.random.split(s.key, 3)
        batches = replay.sample(s.buffer, k_sample, loop.batch_size, loop.utd)

        def one(a, xs):
            return sac.update_critic(config, a, *xs)

        keys = jax.random.split(k_update, loop.utd)
        state, _ = jax.lax.scan(one, s.agent, (batches, keys))
        return s.replace(key=key, agent=state)

    def actor_update(s):
        key, k_sample, k_update = jax.random.split(s.key, 3)
        batch = replay.sample(s.buffer, k_sample, loop.batch_size)
        return s.replace(key=key, agent=sac.update_actor(config, s.agent, batch, k_update)[0])

    return {
        "act": act,
        "env step + auto-reset": env_only,
        "env step + staging the row": step_and_stage,
        "sample (U, B)": sample,
        "U critic updates (with their sample)": critic_updates,
        "actor + temperature update (with its sample)": actor_update,
    }


def time_stage(run: OnlineRun, fn, state, blocks: int) -> float:
    """Microseconds per block of ``fn`` scanned ``blocks`` times under the seed vmap."""

    def loop(s):
        return jax.lax.scan(lambda c, _: (fn(c), None), s, None, length=blocks)[0]

    compiled = jax.jit(jax.vmap(loop)).lower(state).compile()
    out = jax.block_until_ready(compiled(state))
    start = time.perf_counter()
    jax.block_until_ready(compiled(out))
    return (time.perf_counter() - start) / blocks * 1e6


def time_block(run: OnlineRun, state, blocks: int) -> float:
    """Microseconds per block of the runner's own train chunk (metrics included)."""

    def chunk(s):
        return train_chunk(s, run.agent, run.vec_env, run.loop, blocks)

    compiled = jax.jit(jax.vmap(chunk)).lower(state).compile()
    out, _ = jax.block_until_ready(compiled(state))
    start = time.perf_counter()
    jax.block_until_ready(compiled(out))
    return (time.perf_counter() - start) / blocks * 1e6


def profile(env: str, seeds: int, utd: int, num_envs: int, blocks: int, **kw) -> list[dict]:
    config = bench_config(env=env, seeds=seeds, utd=utd, num_envs=num_envs, chunk=blocks, **kw)
    run = OnlineRun(config)
    run.agent_config = sac.Config(
        run.env.observation_size,
        run.env.action_size,
        tuple(config.hidden),
        config.num_critics,
        config.target_subset,
        config.critic_layer_norm,
        "mean" if config.num_critics > 2 else "min",
    )
    state = jax.block_until_ready(run.warmup_fn(run.init_state()))
    whole = time_block(run, state, blocks)
    rows = [{"stage": "whole block (train_chunk)", "us_per_block": whole, "share": 1.0}]
    for name, fn in stages(run).items():
        us = time_stage(run, fn, state, blocks)
        rows.append({"stage": name, "us_per_block": us, "share": us / whole})
    for r in rows:
        r.update(seeds=seeds, utd=utd, envs_per_seed=num_envs, buffer_size=config.buffer_size)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--utd", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=200, help="blocks per timed loop")
    parser.add_argument(
        "--buffer-size", type=int, default=1_000_000, help="replay rows (OnlineConfig's default)"
    )
    parser.add_argument("--out", default="results/bench/online_profile.json")
    args = parser.parse_args(argv)
    rows = []
    for utd in args.utd:
        for seeds in args.seeds:
            extra = dict(num_critics=10, critic_layer_norm=True) if utd > 1 else {}
            extra["buffer_size"] = args.buffer_size
            rows += profile(args.env, seeds, utd, args.num_envs, args.blocks, **extra)
    title = f"online SAC block profile on {args.env}, {jax.devices()[0].device_kind}"
    print_table(rows, title)
    summary = {
        f"{r['stage']}, S={r['seeds']}, UTD {r['utd']} (us/block)": r["us_per_block"] for r in rows
    }
    write_results(args.out, "online_profile", rows, summary, {}, "none", env=args.env)


if __name__ == "__main__":
    main()
