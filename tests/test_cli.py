import json

import pytest

from rlgen import cli, demo


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


def test_bad_config_value_is_one_clear_error():
    with pytest.raises(SystemExit, match="utd must be positive"):
        cli.main(["train", "sac", "--utd", "0"])
    with pytest.raises(SystemExit, match="warmup"):
        cli.main(["train", "sac", "--warmup", "10", "--batch-size", "256"])


def test_demo_at_ci_scale_writes_table_and_plot(tmp_path, capsys):
    summary = demo.run(str(tmp_path), scale="ci", progress=False)
    out = capsys.readouterr().out
    assert "| mean |" in out
    assert (tmp_path / "learning_curve.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["final_eval_return_per_seed"] == summary["final_eval_return_per_seed"]
    assert len(saved["final_eval_return_per_seed"]) == 2
