"""Every paper protocol builds a valid config for every run at every scale, and protocols run
end to end at smoke scale and write their tables and plots.

End to end, as commands: calql and edis_iql here, synther_online and mbaug_small_data in
test_experiments_more.py (parallel workers). edis_calql and synther_offline are left out of the
end-to-end set to keep CI short: their run types are Cal-QL + EDIS (test_generators.py) and
SynthER pretraining (the demo, test_cli.py), and their configs are checked here.
"""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
from conftest import run_python

from experiments.common import _runs, _steps_to, finetune_run, run_overrides

ALL = (
    "calql",
    "synther_offline",
    "synther_online",
    "edis_calql",
    "edis_iql",
    "mbaug_small_data",
)


@pytest.mark.parametrize("name", ALL)
def test_every_run_of_every_scale_has_a_valid_config(name):
    """Catches a bad budget in the full (GPU) or cpu scale before anyone spends a GPU on it."""
    protocol = importlib.import_module(f"experiments.{name}").PROTOCOL
    assert {"full", "cpu", "smoke"} <= set(protocol.scales)
    for scale in protocol.scales:
        runs = _runs(protocol, "full")  # every task, arm and ablation
        for task, arm in runs:
            config = protocol.make_config(run_overrides(protocol, task, arm, scale))
            assert config.env == protocol.tasks[task]["env"]


def test_steps_to_threshold_per_seed():
    evals = [
        {"step": 0, "score": [1.0, 5.0]},
        {"step": 10, "score": [3.0, 2.0]},
        {"step": 20, "score": [4.0, 6.0]},
    ]
    assert _steps_to(evals, 4.0) == [20.0, 0.0]
    assert _steps_to(evals, 9.0) == [np.inf, np.inf]


def check_smoke_scale(name, tmp_path):
    """Run protocol ``name`` at smoke scale, as its command, and check its report."""
    out = tmp_path / "out"
    args = ("-m", f"experiments.{name}", "--scale", "smoke", "--out", str(out))
    run_python(*args, env={"RLGEN_DATA": str(tmp_path / "data")})
    protocol = importlib.import_module(f"experiments.{name}").PROTOCOL
    arms = [a.label for a in protocol.arms]
    saved = json.loads((out / "results.json").read_text())
    assert [r["arm"] for r in saved["runs"]] == arms
    assert saved["protocol"] == name
    online = protocol.scales["smoke"].get("steps", 1) > 0
    columns = {"after offline"} if protocol.make_run is finetune_run else set()
    assert set(saved["aggregates"]) == columns | ({"after online"} if online else set())
    assert all(set(per_arm) == set(arms) for per_arm in saved["aggregates"].values())
    table = (tmp_path / "out" / "results.md").read_text()
    assert all(f"| {arm} |" in table for arm in arms)
    assert len(list(out.glob("iqm_*.png"))) == len(saved["aggregates"])
    if online:
        assert list(out.glob("curve_*_early.png"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["calql", "edis_iql"])
def test_protocol_smoke_scale(name, tmp_path):
    check_smoke_scale(name, tmp_path)
