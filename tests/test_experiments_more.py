"""The world-model quality measurement (experiments.model_quality) and its trajectory split."""

import json

import numpy as np
import pytest
from conftest import run_python

from experiments.model_quality import split_by_trajectory
from rlgen.data.transition import Transition


def test_split_by_trajectory_holds_out_whole_trajectories():
    # 4 trajectories of lengths 3, 2, 4, 1 (ends by terminal, timeout, an obs jump, the last row)
    obs = np.arange(10, dtype=np.float32)[:, None]
    next_obs = obs + 1
    next_obs[5, 0] = 99.0  # row 6 does not continue row 5
    terminal = np.zeros(10, np.float32)
    terminal[2] = 1
    truncated = np.zeros(10, np.float32)
    truncated[4] = 1
    data = Transition.zeros(1, 1, (10,)).replace(
        obs=obs, next_obs=next_obs, terminal=terminal, truncated=truncated
    )
    train, held, ends = split_by_trajectory(data, holdout=0.5)
    np.testing.assert_array_equal(train.obs[:, 0], np.arange(5))
    np.testing.assert_array_equal(held.obs[:, 0], np.arange(5, 10))
    np.testing.assert_array_equal(ends, [True, False, False, False, True])


@pytest.mark.slow
def test_model_quality_smoke_scale_reports_model_and_baseline_errors(tmp_path):
    out = tmp_path / "out"
    run_python(
        "-m", "experiments.model_quality", "--scale", "smoke", "--out", str(out),
        env={"RLGEN_DATA": str(tmp_path / "data")},
    )  # fmt: skip
    task = json.loads((out / "results.json").read_text())["tasks"][0]
    for k in (1, 5):
        assert len(task[f"model_mse_{k}"]) == 2 and np.all(np.isfinite(task[f"model_mse_{k}"]))
        assert task[f"baseline_mse_{k}"][0] > 0 and task[f"num_starts_{k}"][0] > 0
    assert "| hopper | 1000 |" in (out / "results.md").read_text()
