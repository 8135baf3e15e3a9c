"""Record d3rlpy 2.8's IQL update on fixed batches, for ``tests/test_iql.py``'s reference test.

    python d3rlpy_iql_steps.py OUT.npz     # in the d3rlpy venv benchmarks.parity makes

Small networks (16 x 16), 11-dim observations, 3-dim actions, 10 updates on seeded random
batches of 32. Writes d3rlpy's initial weights (``init/<module>/<name>``), the batches, the
losses of every update (value, actor, Q) and the weights after the last (``final/...``).
"""

from __future__ import annotations

import sys

import d3rlpy
import numpy as np
import torch
from common import write_npz
from d3rlpy_offline import make_algo

UPDATES, BATCH, OBS, ACT, HIDDEN = 10, 32, 11, 3, [16, 16]


def batches(rng: np.random.Generator) -> dict[str, np.ndarray]:
    obs = rng.normal(size=(UPDATES, BATCH, OBS))
    return {
        "obs": obs,
        "next_obs": obs + 0.1 * rng.normal(size=obs.shape),
        "action": rng.uniform(-1, 1, size=(UPDATES, BATCH, ACT)),
        "reward": 0.3 + 0.1 * rng.normal(size=(UPDATES, BATCH)),
        "terminal": (rng.uniform(size=(UPDATES, BATCH)) < 0.1).astype(np.float64),
    }


def weights(modules, prefix: str) -> dict[str, np.ndarray]:
    return {
        f"{prefix}/{name}/{key}": value.detach().numpy().copy()
        for name in ("policy", "q_funcs", "targ_q_funcs", "value_func")
        for key, value in getattr(modules, name).state_dict().items()
    }


def main(out: str) -> None:
    torch.set_num_threads(1)
    d3rlpy.seed(0)
    data = {k: v.astype(np.float32) for k, v in batches(np.random.default_rng(0)).items()}
    # the parity pair's IQL settings; the reward scaler goes unused (batches skip d3rlpy's scaling)
    job = {"algo": "iql", "updates": UPDATES, "hidden": HIDDEN, "batch_size": BATCH}
    algo = make_algo(job).create(device="cpu:0")
    algo.create_impl((OBS,), ACT)
    modules = algo.impl._modules
    record = weights(modules, "init")
    tensor = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    losses = []
    for i in range(UPDATES):
        batch = d3rlpy.torch_utility.TorchMiniBatch(
            observations=tensor(data["obs"][i]),
            actions=tensor(data["action"][i]),
            rewards=tensor(data["reward"][i][:, None]),
            next_observations=tensor(data["next_obs"][i]),
            next_actions=tensor(data["action"][i]),
            returns_to_go=tensor(data["reward"][i][:, None]),
            terminals=tensor(data["terminal"][i][:, None]),
            intervals=torch.ones(BATCH, 1),
            device="cpu:0",
        )
        metrics = algo.impl.update(batch, i)
        losses.append([metrics["v_loss"], metrics["actor_loss"], metrics["q_loss"]])
    record.update(weights(modules, "final"))
    record.update({f"batch/{k}": v for k, v in data.items()})
    record["losses"] = np.array(losses, np.float32)
    record["versions"] = np.array(f"d3rlpy {d3rlpy.__version__}, torch {torch.__version__}")
    write_npz(out, record)


if __name__ == "__main__":
    main(sys.argv[1])
