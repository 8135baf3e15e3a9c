"""Every paper protocol builds a valid config for every run at every scale, and assembles its
report (table, aggregates, plots) from its arms' results through its command's entry point.

The protocols' run types run end to end elsewhere, each at its own tiny budget: Cal-QL vs CQL
in the demo (test_cli.py), Cal-QL / TD3+BC / IQL fine-tuning and world-model augmentation in
test_finetune.py, EDIS and SynthER pretraining in test_generators.py, online SynthER in
test_synther.py. Here the protocols run with a stand-in runner, so their own code (arms,
tables, aggregates, plots, reading back finished runs) is covered without compiling every arm
again.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from experiments.common import (
    _runs,
    _steps_to,
    finetune_config,
    main,
    run_overrides,
    run_protocol,
    tasks_at,
)
from rlgen.train import sweep

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
        # every task, arm and ablation, and the scale's own tasks
        runs = _runs(protocol, "full") + _runs(protocol, scale)
        tasks = {**protocol.tasks, **tasks_at(protocol, scale)}
        for task, arm in runs:
            config = protocol.make_config(run_overrides(protocol, task, arm, scale))
            assert config.env == tasks[task]["env"]
            _, static = sweep.split(arm.sweep, config)
            for values in itertools.product(*static.values()):  # each static run's config
                dataclasses.replace(config, **dict(zip(static, values, strict=True)))


def test_steps_to_threshold_per_seed():
    evals = [
        {"step": 0, "score": [1.0, 5.0]},
        {"step": 10, "score": [3.0, 2.0]},
        {"step": 20, "score": [4.0, 6.0]},
    ]
    assert _steps_to(evals, 4.0) == [20.0, 0.0]
    assert _steps_to(evals, 9.0) == [np.inf, np.inf]


def check_report(protocol, saved: dict, out, finetune: bool) -> None:
    """A protocol's smoke-scale report: one run per arm, the aggregates of its phases, a table
    row per arm, the IQM and curve plots."""
    arms = [label for a in protocol.arms for label in a.labels()]
    assert [r["arm"] for r in saved["runs"]] == arms
    assert saved["protocol"] == protocol.name
    online = protocol.scales["smoke"].get("steps", 1) > 0
    expected = ({"after offline"} if finetune else set()) | ({"after online"} if online else set())
    assert set(saved["aggregates"]) == expected
    assert all(set(per_arm) == set(arms) for per_arm in saved["aggregates"].values())
    table = (out / "results.md").read_text()
    assert all(f"| {arm} |" in table for arm in arms)
    assert len(list(out.glob("iqm_*.png"))) == len(saved["aggregates"])
    if online:
        assert list(out.glob("curve_*_early.png"))


@dataclasses.dataclass
class StandInRun:
    """What a protocol's ``make_run`` returns, without training: the evaluations a run with
    these budgets makes (offline-to-online runs always evaluate after pretraining), with
    per-seed scores rising with the step, one per lane of a vmapped ``sweep``."""

    config: object
    finetune: bool
    sweep: dict | None = None

    def run(self) -> dict:
        c = self.config
        lanes = c.seeds * math.prod(len(v) for v in (self.sweep or {}).values())
        evals = []

        def scores(phase, step, value):
            evals.append({"phase": phase, "step": step, "score": [value] * lanes})
            evals[-1]["return"] = evals[-1]["score"]

        if self.finetune:
            scores("pretrain", c.pretrain_steps, 1.0)
        phase = "finetune" if self.finetune else "online"
        for step in range(0, c.steps + 1, c.eval_every) if c.steps else ():
            scores(phase, step, 1.0 + step / 100)
        results = {"evaluations": evals, "wall_time_s": 0.0}
        run_dir = Path(c.run_dir)  # as a run does, for the protocol to read back
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "results.json").write_text(json.dumps(results))
        return results


def test_protocol_command_reads_back_finished_runs(tmp_path):
    """``python -m experiments.<name>``'s entry point, twice: the second call trains nothing and
    rebuilds the same report from the runs' results.json."""
    protocol = importlib.import_module("experiments.calql").PROTOCOL
    started = []

    def make_run(config, sweep):
        started.append(config.run_dir)
        return StandInRun(config, finetune=True)

    stand_in = dataclasses.replace(protocol, make_run=make_run)
    argv = ["--scale", "smoke", "--out", str(tmp_path / "out")]
    first = main(stand_in, argv)
    assert len(started) == len(protocol.arms)
    assert all(json.loads(Path(d, "results.json").read_text()) for d in started)
    again = main(stand_in, argv)
    assert len(started) == len(protocol.arms) and again["aggregates"] == first["aggregates"]


@pytest.mark.parametrize("name", ALL)
def test_protocol_report_from_its_arms_results(name, tmp_path):
    protocol = importlib.import_module(f"experiments.{name}").PROTOCOL
    finetune = protocol.make_config is finetune_config
    stand_in = dataclasses.replace(
        protocol, make_run=lambda config, sweep: StandInRun(config, finetune, sweep)
    )
    summary = run_protocol(stand_in, "smoke", tmp_path / "out")
    check_report(stand_in, summary, tmp_path / "out", finetune)
