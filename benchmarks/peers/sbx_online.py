"""sbx's SAC (Stable-Baselines-JAX) on a Gymnasium v5 task, evaluated as rlgen evaluates.

    python sbx_online.py JOB.json RESULT.json

``JOB.json``: ``env_id`` (e.g. Hopper-v5), ``steps``, ``warmup`` (uniform random actions
before learning, sbx's ``learning_starts``), ``eval_every``, ``eval_episodes``, ``seed``,
``batch_size``, ``hidden``, ``utd``, ``buffer_size``, optionally ``n_critics``, ``layer_norm``,
``dropout_rate`` (sbx's high-UTD DroQ settings). Everything else is sbx's default
(lr 3e-4, tau 0.005, gamma 0.99, automatic entropy with target -|A|). Writes ``RESULT.json``:
deterministic evaluation returns by env step and the seconds spent in ``learn`` alone.
"""

from __future__ import annotations

import json
import sys
import time
from importlib import metadata

import gymnasium as gym
import numpy as np
from common import evaluate, write_json
from sbx import SAC


def main(job_path: str, result_path: str) -> None:
    job = json.loads(open(job_path).read())
    model = SAC(
        "MlpPolicy",
        gym.make(job["env_id"]),
        learning_rate=3e-4,
        buffer_size=job["buffer_size"],
        learning_starts=job["warmup"],
        batch_size=job["batch_size"],
        train_freq=1,
        gradient_steps=job["utd"],
        policy_kwargs={
            "net_arch": list(job["hidden"]),
            **{k: job[k] for k in ("n_critics", "layer_norm", "dropout_rate") if k in job},
        },
        seed=job["seed"],
        verbose=0,
    )
    evaluations, learn_s, done = [], 0.0, 0
    while done < job["steps"]:
        segment = min(job["eval_every"], job["steps"] - done)
        begin = time.perf_counter()
        model.learn(total_timesteps=segment, reset_num_timesteps=done == 0)
        learn_s += time.perf_counter() - begin
        done += segment
        returns = evaluate(
            lambda obs: model.predict(obs, deterministic=True)[0],
            job["env_id"],
            job["eval_episodes"],
            job["seed"],
        )
        evaluations.append({"step": done, "return": returns})
        print(
            f"sbx {job['env_id']} seed {job['seed']} step {done}: "
            f"mean return {np.mean(returns):.1f}",
            flush=True,
        )
    result = {
        "job": job,
        "evaluations": evaluations,
        "learn_s": learn_s,
        "env_steps_per_s": job["steps"] / learn_s,
        "versions": {p: metadata.version(p) for p in ("sbx-rl", "jax", "gymnasium", "mujoco")},
    }
    write_json(result_path, result)


if __name__ == "__main__":
    main(*sys.argv[1:3])
