"""d3rlpy 2.8 offline training on a D4RL-layout HDF5 file, evaluated on Gymnasium's v5 task.

    python d3rlpy_offline.py JOB.json RESULT.json

``JOB.json``: ``algo`` (td3bc, iql, cql, calql), ``dataset`` (HDF5 path), ``env_id``
(e.g. Hopper-v5), ``updates``, ``eval_every``, ``eval_episodes``, ``seed``, ``batch_size``,
``hidden``, ``threads``. Writes ``RESULT.json``: the evaluation returns by update and the
seconds spent in updates alone (evaluation excluded), and per evaluation the mean Q(s, a) of a
fixed sample of dataset rows (``q_data``, comparable with rlgen's metric of that name) and the
fitter's epoch-mean losses (``metrics``). Settings mirror rlgen's defaults for each
algorithm (see ``benchmarks.parity``): learning rates, critics, penalty weight, backups,
observation / reward scaling.
"""

from __future__ import annotations

import json
import sys
import time

import d3rlpy
import gymnasium as gym
import h5py
import numpy as np
import torch
from common import evaluate, write_json

Q_PROBE_ROWS = 1024


def load_dataset(path: str) -> tuple[d3rlpy.dataset.MDPDataset, dict]:
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in ("observations", "actions", "rewards", "terminals")}
        data["timeouts"] = f["timeouts"][()]
    ends = (data["terminals"] > 0) | (data["timeouts"] > 0)
    ends[-1] = True  # d3rlpy needs the last row to close an episode
    dataset = d3rlpy.dataset.MDPDataset(
        observations=data["observations"].astype(np.float32),
        actions=data["actions"].astype(np.float32),
        rewards=data["rewards"].astype(np.float32),
        terminals=(data["terminals"] > 0).astype(np.float32),
        timeouts=(ends & ~(data["terminals"] > 0)).astype(np.float32),
    )
    return dataset, data


def make_algo(job: dict):
    encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=list(job["hidden"]))
    common = dict(
        batch_size=job["batch_size"],
        actor_encoder_factory=encoder,
        critic_encoder_factory=encoder,
    )
    algo = job["algo"]
    if algo == "td3bc":
        return d3rlpy.algos.TD3PlusBCConfig(
            actor_learning_rate=3e-4,
            critic_learning_rate=3e-4,
            alpha=2.5,
            observation_scaler=d3rlpy.preprocessing.StandardObservationScaler(),
            **common,
        )
    if algo == "iql":
        decay = d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=job["updates"])
        return d3rlpy.algos.IQLConfig(
            actor_learning_rate=3e-4,
            critic_learning_rate=3e-4,
            actor_optim_factory=d3rlpy.optimizers.AdamFactory(lr_scheduler_factory=decay),
            expectile=0.7,
            weight_temp=3.0,
            max_weight=100.0,
            reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0),
            value_encoder_factory=encoder,
            **common,
        )
    if algo in ("cql", "calql"):
        config = d3rlpy.algos.CalQLConfig if algo == "calql" else d3rlpy.algos.CQLConfig
        return config(
            actor_learning_rate=1e-4,
            critic_learning_rate=3e-4,
            temp_learning_rate=1e-4,
            alpha_learning_rate=0.0,  # fixed penalty weight, as rlgen's default (no Lagrange)
            initial_alpha=1.0,
            conservative_weight=5.0,
            n_action_samples=10,
            max_q_backup=algo == "calql",  # rlgen's auto: on for Cal-QL, off for CQL
            **common,
        )
    raise ValueError(f"algo must be td3bc, iql, cql or calql, got {algo!r}")


def main(job_path: str, result_path: str) -> None:
    job = json.loads(open(job_path).read())
    torch.set_num_threads(job.get("threads", 1))
    d3rlpy.seed(job["seed"])
    dataset, data = load_dataset(job["dataset"])
    probe = np.random.default_rng(0).choice(len(data["rewards"]), Q_PROBE_ROWS, replace=False)
    probe_obs = data["observations"][probe].astype(np.float32)
    probe_actions = data["actions"][probe].astype(np.float32)
    algo = make_algo(job).create(device="cpu:0")
    evaluations, update_s = [], 0.0
    fitter = algo.fitter(
        dataset,
        n_steps=job["updates"],
        n_steps_per_epoch=job["eval_every"],
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
        show_progress=False,
        save_interval=10**9,
    )
    begin = time.perf_counter()
    for epoch, metrics in fitter:
        update_s += time.perf_counter() - begin
        returns = evaluate(
            lambda obs: algo.predict(obs[None].astype(np.float32))[0],
            job["env_id"],
            job["eval_episodes"],
            job["seed"],
        )
        q_data = float(np.mean(algo.predict_value(probe_obs, probe_actions)))
        evaluations.append(
            {
                "step": epoch * job["eval_every"],
                "return": returns,
                "q_data": q_data,
                "metrics": {k: float(v) for k, v in metrics.items()},
            }
        )
        print(
            f"{job['algo']} seed {job['seed']} step {evaluations[-1]['step']}: "
            f"mean return {np.mean(returns):.1f}, Q on data rows {q_data:.1f}",
            flush=True,
        )
        begin = time.perf_counter()
    result = {
        "job": job,
        "evaluations": evaluations,
        "update_s": update_s,
        "updates_per_s": job["updates"] / update_s,
        "versions": {
            "d3rlpy": d3rlpy.__version__,
            "torch": torch.__version__,
            "gymnasium": gym.__version__,
        },
    }
    write_json(result_path, result)


if __name__ == "__main__":
    main(*sys.argv[1:3])
