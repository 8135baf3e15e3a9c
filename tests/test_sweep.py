"""Sweeps: a vmapped grid is the runs it stands for, compiled once; static names are refused in
a vmapped sweep and run one by one by the CLI, with a report per point."""

import json

import jax
import numpy as np
import pytest

from rlgen import cli
from rlgen.train import sweep
from rlgen.train.finetune import FinetuneConfig, FinetuneRun

TINY = dict(
    algo="cql",  # Cal-QL would need finished episodes in the warm-up
    backend="mujoco",
    seeds=2,
    hidden=(16, 16),
    batch_size=16,
    num_samples=2,
    pretrain_steps=40,
    pretrain_eval_every=20,
    steps=0,  # offline only: the online loop's sweep runs in the CLI test below
    chunk=20,
    eval_episodes=1,
    checkpoint_every=0,
    progress=False,
)


@pytest.fixture(scope="module")
def rows():
    """Random hopper-shaped transitions (what is learnt is not what this checks)."""
    from rlgen.data.transition import Transition

    rng = np.random.default_rng(0)
    n = 256
    f32 = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    zeros = np.zeros(n, np.float32)
    return Transition(f32(n, 11), np.tanh(f32(n, 3)), f32(n), f32(n, 11), zeros, zeros, f32(n))


def test_vmapped_grid_equals_one_run_per_point_with_one_compile(rows, tmp_path):
    """cql_alpha in (0.5, 5) x 2 seeds in one program: a point's lanes end where a run of that
    point alone (2 seeds, same keys) ends; the pretraining chunk compiles once."""
    grid = FinetuneRun(
        FinetuneConfig(**TINY, run_dir=str(tmp_path / "grid")),
        dataset=rows,
        sweep={"cql_alpha": (0.5, 5.0)},
    )
    results = grid.run()
    assert grid.pretrain_fn._cache_size() == 1
    assert results["sweep"] == {"seeds": 2, "points": [{"cql_alpha": 0.5}, {"cql_alpha": 5.0}]}
    np.testing.assert_array_equal(np.asarray(grid.state.agent.hp.cql_alpha), [0.5, 0.5, 5, 5])
    # the second point's lanes (2, 3) against a run of cql_alpha 5 alone (the first point's
    # lanes sit where a run's own seeds do)
    alone = FinetuneRun(
        FinetuneConfig(**TINY, cql_alpha=5.0, run_dir=str(tmp_path / "alone")), dataset=rows
    )
    single = alone.run()
    for a, b in zip(*(jax.tree.leaves(r.state.agent) for r in (grid, alone)), strict=True):
        np.testing.assert_allclose(np.asarray(a)[2:], b, rtol=2e-4, atol=1e-5)
    point = sweep.split_results(results, grid.grid, 2)[1]
    np.testing.assert_allclose(
        point["final_return_per_seed"], single["final_return_per_seed"], rtol=1e-3
    )
    # per-point metrics beside the run's own
    logged = tmp_path / "grid" / "points" / "cql_alpha=5" / "pretrain" / "metrics.jsonl"
    assert [json.loads(line)["updates"] for line in logged.read_text().splitlines()] == [20, 40]


def test_static_name_in_a_vmapped_sweep_is_refused(rows, tmp_path):
    config = FinetuneConfig(**TINY, run_dir=str(tmp_path))
    with pytest.raises(ValueError, match="'utd' cannot be vmapped.*static value"):
        FinetuneRun(config, dataset=rows, sweep={"utd": (1, 2)})
    with pytest.raises(ValueError, match="'gamma' cannot be vmapped"):
        FinetuneRun(config, dataset=rows, sweep={"gamma": (0.9, 0.99)})


def test_parse_and_split_convert_values_and_name_bad_ones():
    specs = sweep.parse(["cql_alpha=1,5", "hidden=32x32,64x64", "lagrange=true,false"])
    vmapped, static = sweep.split(specs, FinetuneConfig())
    assert vmapped == {"cql_alpha": (1.0, 5.0)}
    traced = sweep.split({"finetune_bc_weight": ("0", "1")}, FinetuneConfig(algo="td3bc"))[0]
    assert sweep.Grid.of(traced, FinetuneConfig(algo="td3bc")).points == [
        {"finetune_bc_weight": 0.0},
        {"finetune_bc_weight": 1.0},
    ]
    assert static == {"hidden": ((32, 32), (64, 64)), "lagrange": (True, False)}
    with pytest.raises(ValueError, match="NAME=V1,V2"):
        sweep.parse(["cql_alpha"])
    with pytest.raises(ValueError, match="cannot sweep 'run_dir'"):
        sweep.split({"run_dir": ("a",)}, FinetuneConfig())
    with pytest.raises(ValueError, match="utd: 'x' is not a int"):
        sweep.split({"utd": ("x",)}, FinetuneConfig())


def test_cli_static_and_vmapped_sweep_reports_every_point_and_resumes(tmp_path, capsys):
    """`rlgen train sac --sweep utd=1,2 --sweep tau=...`: two compiled runs (one per UTD), one
    after the other, each vmapping two taus x 2 seeds; a report with the four points; --resume
    reads them back."""
    args = ["train", "sac", "--backend", "mujoco", "--seeds", "2", "--hidden", "16", "16"]
    args += ["--batch-size", "16", "--steps", "60", "--warmup", "20", "--chunk", "20"]
    args += ["--eval-every", "0", "--eval-episodes", "1", "--buffer-size", "100", "--no-progress"]
    args += ["--run-dir", str(tmp_path), "--sweep", "utd=1,2", "--sweep", "tau=0.005,0.02"]
    cli.main(args)
    report = json.loads((tmp_path / "sweep.json").read_text())
    values = [p["values"] for p in report["points"]]
    assert values == [{"utd": u, "tau": t} for u in (1, 2) for t in (0.005, 0.02)]
    for point in report["points"]:
        assert point["env_steps_per_seed"] == 60 and len(point["evaluations"][-1]["score"]) == 2
    for name in ("sweep_utd.png", "sweep_tau.png", "sweep_curves.png", "sweep.md"):
        assert (tmp_path / name).stat().st_size > 0
    rows = (tmp_path / "points" / "utd=2,tau=0.02" / "evaluations.csv").read_text().splitlines()
    assert rows[0] == "phase,step,seed,return,score" and len(rows) == 3
    assert json.loads((tmp_path / "utd=2" / "results.json").read_text())["sweep"]["seeds"] == 2
    capsys.readouterr()
    cli.main([*args, "--resume"])
    assert capsys.readouterr().out.count("already finished") == 2
