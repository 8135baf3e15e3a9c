"""What the peer scripts share: the evaluation protocol and atomic result files. Imported
as ``common`` from the scripts' own directory (Python puts it first on the path)."""

from __future__ import annotations

import json
import os
import tempfile

import gymnasium as gym
import numpy as np


def evaluate(policy, env_id: str, episodes: int, seed: int) -> list[float]:
    """Undiscounted returns of ``episodes`` episodes of ``policy(obs) -> action`` (deterministic),
    episode ``i`` reset with seed ``1000 * seed + i``."""
    env = gym.make(env_id)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def write_json(path: str, record: dict) -> None:
    """``record`` to ``path`` through a temporary file in the same directory and a rename."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def write_npz(path: str, arrays: dict) -> None:
    """``arrays`` to ``path`` (.npz) through a temporary file in the same directory and a rename."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
