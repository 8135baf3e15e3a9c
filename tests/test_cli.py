import json

import pytest
from conftest import run_python

from rlgen import cli


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "sac", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--env",
        "--seeds",
        "--utd",
        "--steps",
        "--num-critics",
        "--critic-layer-norm",
        "--resume",
        "--checkpoint-every",
        "--hidden",
    ):
        assert flag in text
    assert "update-to-data" in text


def test_importing_the_envs_prints_no_warp_noise():
    # mujoco.mjx prints "Failed to import warp" without the optional Warp backend; rlgen
    # silences those two lines (and only those) where it imports MJX, which is only when an MJX
    # env is made (C MuJoCo runs, and the CLI's start, do without it)
    code = (
        "import sys, rlgen.envs as E; assert 'mujoco.mjx' not in sys.modules; "
        "E.make('hopper', backend='mjx'); assert 'mujoco.mjx' in sys.modules; print('made')"
    )
    out = run_python("-c", code)
    assert out.strip() == "made", out


def test_bad_config_value_is_one_clear_error():
    with pytest.raises(SystemExit, match="utd must be positive"):
        cli.main(["train", "sac", "--utd", "0"])
    with pytest.raises(SystemExit, match="warmup"):
        cli.main(["train", "sac", "--warmup", "10", "--batch-size", "256"])


def test_finetune_cli_flags_and_errors(capsys):
    with pytest.raises(SystemExit):
        cli.main(["finetune", "calql", "--help"])
    text = capsys.readouterr().out
    for flag in ("--dataset", "--pretrain-steps", "--offline-ratio", "--augment", "--edis"):
        assert flag in text
    with pytest.raises(SystemExit, match="offline_ratio must be in"):
        cli.main(["finetune", "cql", "--offline-ratio", "2"])
    with pytest.raises(SystemExit, match="neither a file nor one of"):
        cli.main(["finetune", "iql", "--dataset", "no-such-kind", "--backend", "mujoco"])


def test_finetune_cli_offline_only_prints_scores_and_no_online_column(tmp_path, capsys):
    from rlgen.train import generate

    data = generate.generate("hopper", "random", size=300, data_dir=tmp_path, progress=False)
    cli.main(
        ["finetune", "td3bc", "--dataset", str(data), "--steps", "0", "--seeds", "2"]
        + ["--pretrain-steps", "20", "--chunk", "10", "--hidden", "8", "8", "--batch-size", "16"]
        + ["--eval-episodes", "1", "--backend", "mujoco", "--no-progress"]
        + ["--run-dir", str(tmp_path / "run")]
    )
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows[0] == "| seed | after offline | after online |"
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["0", "1", "mean"]
    assert all(r.split("|")[3].strip() == "-" for r in rows[1:])
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert f"{saved['offline_score_mean']:.1f}" == rows[-1].split("|")[2].strip()


def test_demo_at_ci_scale_compares_two_fine_tuning_arms_on_medium_data(tmp_path):
    out = run_python(
        "-m", "rlgen.cli", "demo", "--scale", "ci", "--out", str(tmp_path), "--no-progress"
    )  # fmt: skip
    assert "| TD3+BC -> TD3 |" in out and "| TD3+BC -> TD3+BC |" in out
    assert "behaviour policy D4RL score" in out
    assert (tmp_path / "learning_curve.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "results.json").read_text())
    assert list(saved["arms"]) == ["TD3+BC -> TD3", "TD3+BC -> TD3+BC"]
    for arm in saved["arms"].values():
        assert len(arm["final_score_per_seed"]) == 2 and len(arm["offline_iqm_ci"]) == 3
        assert arm["evaluations"][-1]["phase"] == "finetune"
    # same seeds and pretraining: the arms differ only once fine-tuning starts
    plain, kept = saved["arms"].values()
    assert plain["offline_score_per_seed"] == kept["offline_score_per_seed"]
    assert plain["final_score_per_seed"] != kept["final_score_per_seed"]
    # the data's policy is at D4RL's medium level (20-60% of D4RL's expert return)
    assert 20.0 <= saved["policy_score"] <= 61.0 and saved["dataset"]["kind"] == "medium"
    assert (tmp_path / "data").is_dir() and (tmp_path / "results.md").exists()
