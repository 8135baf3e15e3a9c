"""sbx's SAC (Stable-Baselines-JAX) on Gymnasium's Hopper-v5: env steps/s, the peer row of
``benchmarks.online_sac`` on the same CPU.

    python -m benchmarks.sbx_sac --steps 2000 --out results/bench_sbx_sac.json

sbx is not an rlgen dependency (it pulls stable-baselines3 and torch), so run this from an
environment that has ``sbx-rl`` and ``gymnasium[mujoco]``; it imports nothing from rlgen. The
settings are rlgen's benchmark row: 1 env, 256x256 actor and critics, batch 256, lr 3e-4, 256
random warm-up steps, UTD ``--utd`` (sbx's ``gradient_steps`` per env step). The rate is that of
a second ``learn`` call of ``--steps`` env steps, after a first one that compiled the update.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from importlib import metadata


def measure(steps: int, utd: int, seed: int = 0) -> dict:
    import gymnasium as gym
    from sbx import SAC

    env = gym.make("Hopper-v5")
    model = SAC(
        "MlpPolicy",
        env,
        learning_rate=3e-4,
        buffer_size=100_000,
        learning_starts=256,
        batch_size=256,
        train_freq=1,
        gradient_steps=utd,
        policy_kwargs={"net_arch": [256, 256]},
        seed=seed,
        verbose=0,
    )
    begin = time.perf_counter()
    model.learn(total_timesteps=512)  # warm-up and the update's compile
    first_s = time.perf_counter() - begin
    begin = time.perf_counter()
    model.learn(total_timesteps=steps, reset_num_timesteps=False)
    seconds = time.perf_counter() - begin
    return {
        "learner": "sbx-sac",
        "seeds": 1,
        "envs_per_seed": 1,
        "utd": utd,
        "env_steps_per_s": steps / seconds,
        "updates_per_s": steps * utd / seconds,
        "first_512_steps_s": first_s,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2_000, help="timed env steps per row")
    parser.add_argument("--utd", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--out", default="results/bench_sbx_sac.json")
    args = parser.parse_args(argv)
    rows = []
    for utd in args.utd:
        rows.append(measure(max(args.steps // utd, 100), utd))
        print(rows[-1], flush=True)
    versions = {p: metadata.version(p) for p in ("sbx-rl", "jax", "gymnasium", "mujoco")}
    record = {"rows": rows, "versions": versions, "cpu": platform.processor() or None}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(args.out)), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=2)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
