"""D4RL-style dataset generation from the shipped reference policies (CPU, C MuJoCo backend).

One module fixture rolls out every rollout kind from the shipped hopper policies (2,000 rows on
2 envs), each policy kind after its level check (10 deterministic episodes). Another fixture
trains a tiny behaviour run (a few hundred env steps), packaged by hand far below every level,
for the refusals, the replay read-back and the packaging.
"""

import json
import math
import os

import jax
import numpy as np
import pytest

from rlgen import nets
from rlgen.agents import sac
from rlgen.data.datasets import load_d4rl, read_metadata, to_transitions
from rlgen.data.scores import normalized_score
from rlgen.train import behaviour
from rlgen.train import generate as gen

SIZE = 2_000
ROLLOUTS = dict(backend="mujoco", rollout_envs=2, rollout_chunk=500, progress=False)
RECORD = behaviour.load_policy("hopper", "expert")[1]
SHIPPED = ("random", "medium", "expert", "medium-expert")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    directory = tmp_path_factory.mktemp("datasets")
    paths = gen.generate_all("hopper", SHIPPED, size=SIZE, data_dir=directory, **ROLLOUTS)
    return directory, paths, {kind: load_d4rl(path) for kind, path in paths.items()}


def test_the_shipped_hopper_policies_are_at_their_levels():
    """rlgen's reference hopper run reached D4RL's expert level (>= 3,000 on its 10-episode
    evaluation), and its medium policy is the first snapshot at 1/3 of D4RL's expert."""
    assert RECORD["medium"]["level_reached"] and RECORD["expert"]["level_reached"]
    assert RECORD["expert"]["eval_return"] >= 3_000
    assert 3234.3 / 3 <= RECORD["medium"]["eval_return"] <= 3234.3 / 2
    assert RECORD["medium"]["step"] < RECORD["expert"]["step"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 600-step behaviour run (snapshots every 200 steps) and a package of its two snapshots
    (far below any level: :func:`behaviour.package` would refuse to choose a medium one)."""
    run_dir = tmp_path_factory.mktemp("behaviour")
    config = behaviour.BehaviourConfig(
        backend="mujoco",
        steps=600,
        warmup=200,
        buffer_size=600,
        batch_size=32,
        hidden=(16, 16),
        chunk=100,
        eval_every=200,
        checkpoint_every=0,
        eval_episodes=1,
        run_dir=str(run_dir),
        progress=False,
    )
    behaviour.BehaviourRun(config).run()
    found = behaviour.snapshots(run_dir)
    chosen = {"medium": found[0], "expert": found[-1]}
    policies = behaviour.write_package(run_dir, "hopper", chosen, out_dir=run_dir / "policies")
    return run_dir, policies.parent


@pytest.mark.parametrize("kind", SHIPPED)
def test_layout(generated, kind):
    _, _, loaded = generated
    data, meta = loaded[kind]
    n = len(data["rewards"])
    assert n == (2 * SIZE if kind == "medium-expert" else SIZE)
    assert meta["size"] == n and meta["kind"] == kind and meta["env"] == "hopper"
    assert meta["versions"]["jax"]
    term, tout = data["terminals"], data["timeouts"]
    assert term.dtype == bool and tout.dtype == bool
    assert not np.any(term & tout)
    assert tout[-1] or term[-1]
    # Within a trajectory, each row's next observation is the next row's observation.
    cont = ~(term | tout)[:-1]
    np.testing.assert_array_equal(
        data["next_observations"][:-1][cont], data["observations"][1:][cont]
    )
    # Trajectories are at most 1000 steps: a terminal or timeout at least every 1000 rows.
    ends = np.flatnonzero(term | tout)
    assert np.diff(np.concatenate([[-1], ends])).max() <= 1000
    tr = to_transitions(data)
    assert len(tr) == n
    np.testing.assert_array_equal(np.asarray(tr.terminal) > 0, term)


def test_shipped_policies_land_in_their_bands(generated):
    """random: uniform actions score about 18 on Hopper-v5; expert: at least 3,000 (a fully
    trained SAC, D4RL's meaning); medium: 20-60% of D4RL's expert return (D4RL: "about 1/3"),
    each policy's level measured on 10 deterministic episodes. Every file records its policy's
    D4RL-normalised score and the return of the episodes complete inside it."""
    _, _, loaded = generated
    random = loaded["random"][1]
    assert 5 < random["policy_return"] < 40 and random["num_episodes"] > 20
    for kind in ("medium", "expert"):
        meta = loaded[kind][1]
        low, high = behaviour.level_band("hopper", kind)
        assert low <= meta["policy_return"] <= high, (kind, meta["policy_return"])
        score = float(normalized_score("hopper", meta["policy_return"]))
        assert meta["policy_score"] == pytest.approx(score) and meta["level_episodes"] == 10
        assert meta["num_episodes"] >= 2 and np.isfinite(meta["data_return"])
        assert meta["policy_step"] == RECORD[kind]["step"]


def test_rollout_files_hold_d4rl_infos(generated):
    """infos/qpos and infos/qvel are the state each row's observation came from (Hopper-v5:
    obs = qpos[1:], clip(qvel, -10, 10)); infos/action_log_probs is finite, -3 log 2 for
    uniform actions."""
    _, _, loaded = generated
    for kind in SHIPPED:
        data, _ = loaded[kind]
        n = len(data["rewards"])
        qpos, qvel = data["infos/qpos"], data["infos/qvel"]
        assert qpos.shape == (n, 6) and qvel.shape == (n, 6)
        np.testing.assert_array_equal(qpos[:, 1:], data["observations"][:, :5])
        np.testing.assert_array_equal(np.clip(qvel, -10, 10), data["observations"][:, 5:])
        log_probs = data["infos/action_log_probs"]
        assert log_probs.shape == (n,) and np.all(np.isfinite(log_probs))
    np.testing.assert_allclose(
        loaded["random"][0]["infos/action_log_probs"], -3 * math.log(2), rtol=1e-6
    )


def test_policy_log_probs_are_the_policy_density_of_its_actions(generated):
    _, _, loaded = generated
    data, _ = loaded["medium"]
    params, record = behaviour.load_policy("hopper", "medium")
    actor, _ = sac.networks(sac.Config(11, 3, tuple(record["hidden"])))
    mean, log_std = actor.apply(params, data["observations"])
    want = np.asarray(nets.tanh_gaussian_log_prob(mean, log_std, data["actions"]))
    inside = np.abs(data["actions"]).max(axis=1) < 0.9  # atanh is exact enough there
    assert inside.sum() > 100
    np.testing.assert_allclose(data["infos/action_log_probs"][inside], want[inside], atol=1e-3)


def test_stream_ends_are_timeouts(generated):
    """Each of the 2 rollout streams (1,000 rows) ends on a timeout unless it ends terminal."""
    _, _, loaded = generated
    data, _ = loaded["medium"]
    last = np.arange(SIZE // 2 - 1, SIZE, SIZE // 2)
    assert np.all(data["timeouts"][last] | data["terminals"][last])


def test_medium_expert_is_concatenation(generated):
    _, _, loaded = generated
    medium, expert, both = (loaded[k][0] for k in ("medium", "expert", "medium-expert"))
    for key in both:
        np.testing.assert_array_equal(both[key], np.concatenate([medium[key], expert[key]]))


def test_second_call_uses_the_cache(generated):
    directory, paths, _ = generated
    mtimes = {k: os.stat(p).st_mtime_ns for k, p in paths.items()}
    before = dict(gen.STATS)
    for kind in SHIPPED:
        assert gen.generate("hopper", kind, SIZE, data_dir=directory, **ROLLOUTS) == paths[kind]
    assert gen.STATS == before
    assert {k: os.stat(p).st_mtime_ns for k, p in paths.items()} == mtimes


def test_cache_made_from_other_policies_is_an_error(generated):
    directory, paths, _ = generated
    other = {**RECORD, "medium": {**RECORD["medium"], "step": RECORD["medium"]["step"] + 1}}
    with pytest.raises(ValueError, match="other behaviour policies") as err:
        gen._check_cached(paths["medium"], other)
    assert str(paths["medium"]) in str(err.value)


def test_policy_short_of_a_level_is_refused(tiny_run, tmp_path):
    _, policies = tiny_run
    for kind in ("medium", "expert"):
        with pytest.raises(gen.LevelError, match=f"outside the {kind} band") as err:
            gen.generate("hopper", kind, SIZE, data_dir=tmp_path, policy_dir=policies, **ROLLOUTS)
        assert "train-behaviour --env hopper --resume" in str(err.value)
        assert not gen.dataset_path("hopper", kind, SIZE, 0, tmp_path).exists()


def test_medium_is_the_first_snapshot_at_a_third_of_d4rls_expert_and_expert_the_last():
    third = 3234.3 / 3  # D4RL's hopper expert return
    found = [(1, 100.0, None), (2, third + 1, None), (3, 900.0, None), (4, 2500.0, None)]
    medium, expert = behaviour.choose("hopper", found)
    assert medium[0] == 2 and expert[0] == 4
    with pytest.raises(ValueError, match="best so far 900"):
        behaviour.choose("hopper", found[:1] + found[2:3])


def test_package_holds_the_chosen_actors_and_what_made_them(tiny_run):
    run_dir, policies = tiny_run
    found = behaviour.snapshots(run_dir)
    assert [s for s, _, _ in found] == [400, 600]  # evaluations every 200 steps after warm-up
    record = json.loads((policies / "hopper.json").read_text())
    assert record["medium"]["step"] == 400 and record["expert"]["step"] == 600
    assert not record["medium"]["level_reached"] and not record["expert"]["level_reached"]
    params, _ = behaviour.load_policy("hopper", "expert", policies)
    same = jax.tree.map(np.array_equal, params, behaviour.load_snapshot(found[-1][2])[0])
    assert all(jax.tree.leaves(same))
    assert record["command"].startswith("rlgen dataset train-behaviour --backend mujoco")
    assert "--steps 600" in record["command"] and "--resume" not in record["command"]


def test_replay_rows_are_the_runs_buffer_in_order(tiny_run):
    run_dir, _ = tiny_run
    rows = behaviour.replay_rows(run_dir, 300)
    assert rows["obs"].shape == (300, 11) and rows["action"].shape == (300, 3)
    cont = (rows["terminal"] + rows["truncated"])[:-1] == 0
    np.testing.assert_array_equal(rows["next_obs"][:-1][cont], rows["obs"][1:][cont])
    with pytest.raises(ValueError, match="the first 700 are needed"):
        behaviour.replay_rows(run_dir, 700)


def test_medium_replay_is_the_runs_replay_up_to_its_own_medium_point(tiny_run, monkeypatch):
    """The run's own first snapshot at the medium level bounds the rows and labels the file: a
    run below the level is refused, whatever step the package's medium policy came from."""
    run_dir, _ = tiny_run
    config = gen.GenerateConfig(behaviour_run=str(run_dir), **ROLLOUTS)
    with pytest.raises(ValueError, match="no snapshot reached the medium point"):
        gen._medium_replay("hopper", RECORD, config, SIZE)
    found = behaviour.snapshots(run_dir)  # as if the run's first snapshot were at the level
    monkeypatch.setattr(behaviour, "choose", lambda env, snaps: (snaps[0], snaps[-1]))
    data, _, (step, level) = gen._medium_replay("hopper", RECORD, config, 300)
    assert (step, level) == found[0][:2] and step == 400 != RECORD["medium"]["step"]
    np.testing.assert_array_equal(  # the most recent 300 rows before that point
        data["observations"], behaviour.replay_rows(run_dir, step)["obs"][step - 300 :]
    )


def test_medium_replay_without_the_run_gives_the_command(tmp_path):
    config = gen.GenerateConfig(behaviour_run=str(tmp_path / "missing"), **ROLLOUTS)
    with pytest.raises(FileNotFoundError, match="rlgen dataset train-behaviour") as err:
        gen._medium_replay("hopper", RECORD, config, SIZE)
    message = str(err.value)
    assert f"--steps {RECORD['medium']['step']}" in message
    # the command replays into the directory asked for, named once
    assert message.count("--run-dir") == 1 and f"--run-dir {tmp_path / 'missing'}" in message


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RLGEN_DATA", str(tmp_path))
    assert gen.dataset_path("hopper", "random", 10, 3) == tmp_path / "hopper-random-10-seed3.hdf5"
    monkeypatch.delenv("RLGEN_DATA")
    assert gen.data_dir().parts[-3:] == (".cache", "rlgen", "datasets")


def test_cli_random(tmp_path, capsys):
    from rlgen.cli import main

    main(
        [
            "dataset", "generate", "--env", "hopper", "--kind", "random", "--size", "2000",
            "--seed", "1", "--data-dir", str(tmp_path), "--backend", "mujoco",
            "--rollout-envs", "100", "--rollout-chunk", "20", "--no-progress",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    path = tmp_path / "hopper-random-2000-seed1.hdf5"
    assert str(path) in out and "policy return" in out
    meta = read_metadata(path)
    assert meta["size"] == 2000 and meta["kind"] == "random" and meta["seed"] == 1


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        gen.generate("hopper", "medium-random", size=10)
    with pytest.raises(ValueError, match="rollout_envs"):
        gen.GenerateConfig(rollout_envs=0)
    with pytest.raises(FileNotFoundError, match="no reference policies for 'ant'"):
        gen.generate("ant", "medium", size=10, data_dir=tmp_path, policy_dir=str(tmp_path))
