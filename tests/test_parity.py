"""benchmarks.parity: the verdict rule, how peer seeds are merged and scored, and the smoke
scale end to end on rlgen's side (the peers' environments are not part of the suite)."""

import json

import numpy as np
import pytest

from benchmarks import parity
from rlgen.data.scores import normalized_score


@pytest.mark.parametrize(
    "ours, peer, expected",
    [
        ((50, 40, 60), (55, 45, 65), "parity"),  # overlapping intervals
        ((50, 40, 60), (60, 60, 70), "parity"),  # touching counts as overlapping
        ((80, 70, 90), (50, 40, 60), "ahead"),
        ((30, 20, 35), (50, 40, 60), "behind"),
    ],
)
def test_verdict_compares_intervals(ours, peer, expected):
    assert parity.verdict(ours, peer) == expected


def test_peer_seeds_merge_into_per_seed_episode_means():
    """Two peer seeds with two evaluation episodes each: the final score of a seed is the
    normalised mean of its episodes, rlgen's records hold that per-seed mean already."""
    seeds = [
        {"evaluations": [{"step": 5, "return": [0.0, 0.0]}, {"step": 10, "return": [100, 300]}]},
        {"evaluations": [{"step": 5, "return": [0.0, 0.0]}, {"step": 10, "return": [500, 700]}]},
    ]
    for record in seeds:
        record.update(updates_per_s=10.0, versions={"d3rlpy": "x"})
    peer = parity.merge_seeds(seeds, "updates_per_s", "updates_per_s_per_seed")
    assert [e["step"] for e in peer["evaluations"]] == [5, 10]
    assert peer["evaluations"][1]["return"] == [[100, 300], [500, 700]]
    np.testing.assert_allclose(
        parity.seed_scores("hopper", peer["evaluations"][1]),
        normalized_score("hopper", np.array([200.0, 600.0])),
    )
    ours = {"evaluations": [{"step": 10, "return": [190.0, 610.0]}]}
    pair = parity.compare("hopper", {"rlgen": ours, "d3rlpy": peer})
    assert pair["peer"] == "d3rlpy" and pair["verdict"] == "parity"
    np.testing.assert_allclose(
        pair["final"]["rlgen"]["scores"], normalized_score("hopper", np.array([190.0, 610.0]))
    )


def test_smoke_scale_writes_table_plots_and_resumes(tmp_path, capsys):
    parity.main(["--scale", "smoke", "--peers", "none", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "parity.json").read_text())
    assert list(report["pairs"]) == ["offline-td3bc", "online-hopper"]
    smoke = parity.SCALES["smoke"]
    for name, pair in report["pairs"].items():
        final = pair["final"]["rlgen"]
        assert len(final["scores"]) == smoke.seeds and final["low"] <= final["iqm"] <= final["high"]
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    offline = report["pairs"]["offline-td3bc"]["learners"]["rlgen"]
    assert [e["step"] for e in offline["evaluations"]] == [10, 20]
    online = report["pairs"]["online-hopper"]["learners"]["rlgen"]
    assert online["evaluations"][-1]["step"] == smoke.online_steps
    data = report["dataset"]
    assert data["size"] == smoke.dataset[2] and data["command"].endswith("--size 2000")
    page = (tmp_path / "parity.md").read_text()
    assert "| offline-td3bc | rlgen |" in page and data["file"] in page
    capsys.readouterr()
    args = ["--scale", "smoke", "--peers", "none", "--out", str(tmp_path), "--resume"]
    parity.main(args)
    assert capsys.readouterr().out.count("already done") == 2
    parity.main([*args, "--only", "online"])
    assert list(json.loads((tmp_path / "parity.json").read_text())["pairs"]) == ["online-hopper"]
    with pytest.raises(SystemExit, match="holds 2 seeds, this call asks for 3"):
        parity.main([*args, "--only", "offline-td3bc", "--seeds", "3"])
    with pytest.raises(SystemExit, match="ran 20 steps, this call asks for 40"):
        parity.main([*args, "--only", "offline-td3bc", "--updates", "40"])
    with pytest.raises(SystemExit, match="positive multiple of the scale's 2 evaluations, got 3"):
        parity.main([*args, "--updates", "3"])
