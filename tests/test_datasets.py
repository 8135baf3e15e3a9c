import h5py
import numpy as np
import pytest

from rlgen.data import (
    DatasetError,
    datasets,
    load_d4rl,
    normalize,
    normalized_score,
    save_d4rl,
    to_transitions,
)


def make_data(n=6, obs_dim=3, act_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, obs_dim)).astype(np.float32)
    return {
        "observations": obs[:-1],
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "next_observations": obs[1:],
        "terminals": np.zeros(n, bool),
        "timeouts": np.zeros(n, bool),
    }


def with_infos(data, nq=4, nv=3):
    """``data`` plus D4RL's per-row infos (qpos, qvel, log-probs of the actions)."""
    n = len(data["rewards"])
    rng = np.random.default_rng(1)
    return {
        **data,
        "infos/qpos": rng.normal(size=(n, nq)).astype(np.float32),
        "infos/qvel": rng.normal(size=(n, nv)).astype(np.float32),
        "infos/action_log_probs": rng.normal(size=n).astype(np.float32),
    }


def write_d4rl(path, data, policy=True):
    """A file in D4RL's own layout (scripts/generation/mujoco/collect_data.py): flat fields,
    ``infos/*`` datasets and, for policy data, nested ``metadata`` datasets with the policy's
    weights."""
    with h5py.File(path, "w") as f:
        for key, arr in data.items():
            f.create_dataset(key, data=arr, compression="gzip")
        if policy:
            f["metadata/algorithm"] = np.bytes_("SAC")
            f["metadata/iteration"] = np.array([1000], dtype=np.int32)[0]
            f["metadata/policy/nonlinearity"] = np.bytes_("relu")
            f["metadata/policy/output_distribution"] = np.bytes_("tanh_gaussian")
            obs_dim, act_dim = data["observations"].shape[1], data["actions"].shape[1]
            for layer, (n_in, n_out) in {
                "fc0": (obs_dim, 8),
                "fc1": (8, 8),
                "last_fc": (8, act_dim),
                "last_fc_log_std": (8, act_dim),
            }.items():
                f[f"metadata/policy/{layer}/weight"] = np.ones((n_out, n_in), np.float32)
                f[f"metadata/policy/{layer}/bias"] = np.zeros(n_out, np.float32)
    return path


@pytest.mark.parametrize("suffix", [".hdf5", ".npz"])
def test_round_trip_keeps_arrays_and_metadata(tmp_path, suffix):
    data = with_infos(make_data())
    data["terminals"][2] = True
    meta = {"env": "hopper", "policy_return": 1234.5, "seeds": [1, 2]}
    path = save_d4rl(tmp_path / f"d{suffix}", data, meta)
    loaded, loaded_meta = load_d4rl(path)
    for key, arr in data.items():
        np.testing.assert_array_equal(loaded[key], arr, err_msg=key)
    assert loaded_meta == meta
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_loads_d4rl_v2_policy_file_with_nested_metadata(tmp_path):
    """hopper-medium-v2's layout: metadata/policy/<layer>/{weight, bias} groups, byte-string
    and scalar metadata datasets, infos/*; the scalars are read, the weights skipped."""
    data = with_infos(make_data(n=5))
    path = write_d4rl(tmp_path / "hopper-medium-v2.hdf5", data)
    loaded, meta = datasets.load(path)
    assert meta == {
        "algorithm": "SAC",
        "iteration": 1000,
        "policy/nonlinearity": "relu",
        "policy/output_distribution": "tanh_gaussian",
    }
    for key, arr in data.items():
        np.testing.assert_array_equal(loaded[key], arr, err_msg=key)
    assert len(to_transitions(loaded)) == 5


def test_d4rl_v0_file_without_timeouts_gets_them_from_the_step_counter(tmp_path):
    """v0 layout: no timeouts. Episodes of 1000 (time limit), 300 (terminal), 1000 (time
    limit) and 200 rows (cut by the file's end): the derived timeouts are rows 999 and 2299."""
    n = 2_500
    data = make_data(n=n, obs_dim=2, act_dim=1)
    del data["timeouts"], data["next_observations"]
    data["terminals"] = np.zeros(n, np.float32)
    data["terminals"][1_299] = 1.0
    path = write_d4rl(tmp_path / "hopper-medium-v0.hdf5", data, policy=False)
    with pytest.warns(UserWarning, match="'timeouts'.*1000 steps"):
        loaded, _ = datasets.load(path)
    np.testing.assert_array_equal(np.flatnonzero(loaded["timeouts"]), [999, 2_299])
    # as qlearning_dataset: rows 999, 2299 (time limits) and 2499 (no next row) are dropped
    assert len(to_transitions(loaded)) == n - 3


def test_ant_v2_dims_error_says_what_differs_and_converts(tmp_path):
    """A D4RL Ant-v2 file (111-dim rows, 84 contact-force columns) against Ant-v5's 105."""
    data = make_data(n=4, obs_dim=111, act_dim=8)
    data["observations"][:, 27:] = 0.0  # D4RL's Ant files observe no contact forces
    path = write_d4rl(tmp_path / "ant-medium-v2.hdf5", data, policy=False)
    loaded, _ = datasets.load(path)
    message = datasets.dimension_mismatch_message("ant", (111, 8), (105, 8))
    assert message.startswith("dataset obs/action dims 111/8 do not match env ant (105/8)")
    for part in ("Ant-v2", "Ant-v5", "worldbody", "27:33", "ant_v2_to_v5", "dataset generate"):
        assert part in message, part
    plain = datasets.dimension_mismatch_message("hopper", (12, 3), (11, 3))
    assert plain == "dataset obs/action dims 12/3 do not match env hopper (11/3)"
    converted = datasets.ant_v2_to_v5(loaded)
    for key in ("observations", "next_observations"):
        want = np.concatenate([data[key][:, :27], data[key][:, 33:]], axis=1)
        np.testing.assert_array_equal(converted[key], want, err_msg=key)
    np.testing.assert_array_equal(converted["actions"], data["actions"])
    with pytest.raises(DatasetError, match="'observations'"):
        datasets.ant_v2_to_v5(converted)


def test_loads_d4rl_file_written_by_another_tool(tmp_path):
    """A raw D4RL file: no next_observations, bools as float, extra groups ignored."""
    data = make_data(n=5)
    path = tmp_path / "raw.hdf5"
    with h5py.File(path, "w") as f:
        for key in ("observations", "actions", "rewards"):
            f[key] = data[key]
        f["terminals"] = np.array([0, 0, 0, 0, 0], np.float32)
        f["timeouts"] = np.array([0, 1, 0, 0, 0], np.float32)
        f["infos/qpos"] = np.zeros((5, 2))
    loaded, meta = load_d4rl(path)
    assert meta == {} and "next_observations" not in loaded
    tr = to_transitions(loaded, gamma=0.5)
    # row 1 is a timeout (no next obs) and row 4 is the unterminated last row: both dropped
    assert len(tr) == 3
    np.testing.assert_array_equal(np.asarray(tr.next_obs[0]), data["observations"][1])
    np.testing.assert_array_equal(np.asarray(tr.truncated), [1, 0, 1])
    r = data["rewards"]
    np.testing.assert_allclose(np.asarray(tr.mc_return), [r[0], r[2] + 0.5 * r[3], r[3]], rtol=1e-6)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda d: d.pop("rewards"), "rewards"),
        (lambda d: d.update(actions=d["actions"][:-1]), "actions"),
        (lambda d: d["observations"].__setitem__((3, 1), np.nan), "observations"),
        (lambda d: d["rewards"].__setitem__(0, np.inf), "rewards"),
        (lambda d: d.update(terminals=np.array(["a"] * 6)), "terminals"),
        (lambda d: d.update(timeouts=np.full(6, 0.5)), "timeouts"),
        (lambda d: d.update(rewards=d["rewards"][:, None]), "rewards"),
        (lambda d: d.update({"infos/qpos": np.zeros((5, 2))}), "infos/qpos"),
        (
            lambda d: d.update({"infos/action_log_probs": np.full(6, -np.inf)}),
            "infos/action_log_probs",
        ),
        (lambda d: d.update({"infos/qvel": np.array(["a"] * 6)}), "infos/qvel"),
    ],
    ids=[
        "missing",
        "length",
        "nan",
        "inf",
        "dtype",
        "flag-values",
        "rank",
        "infos-length",
        "infos-inf",
        "infos-dtype",
    ],
)
def test_bad_input_errors_name_the_field(tmp_path, mutate, field):
    data = make_data()
    mutate(data)
    with pytest.raises(DatasetError, match=f"'?{field}'?"):
        save_d4rl(tmp_path / "bad.hdf5", data)
    assert not any(tmp_path.iterdir()), "a failed write must leave nothing behind"


def test_failed_write_keeps_the_old_file(tmp_path):
    path = save_d4rl(tmp_path / "d.npz", make_data(seed=1))
    bad = make_data()
    bad["rewards"][0] = np.nan
    with pytest.raises(DatasetError):
        save_d4rl(path, bad)
    np.testing.assert_array_equal(load_d4rl(path)[0]["rewards"], make_data(seed=1)["rewards"])


def test_normalizer_round_trip_and_skipped_dims():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(5, 3, 1000), rng.integers(0, 2, 1000), np.full(1000, 7.0)])
    norm = normalize.fit(x, skip_dims=[1])
    z = np.asarray(normalize.apply(norm, x))
    np.testing.assert_allclose(z[:, 0].mean(), 0, atol=1e-5)
    np.testing.assert_allclose(z[:, 0].std(), 1, atol=1e-4)
    np.testing.assert_array_equal(z[:, 1], x[:, 1])  # skipped: raw
    np.testing.assert_allclose(z[:, 2], 0.0, atol=1e-5)  # constant dim: centred, not divided by ~0
    np.testing.assert_allclose(np.asarray(normalize.invert(norm, z)), x, rtol=1e-5, atol=1e-5)


def test_d4rl_normalized_score_uses_published_references():
    assert normalized_score("hopper", -20.272305) == pytest.approx(0.0)
    assert normalized_score("hopper-medium-replay", 3234.3) == pytest.approx(100.0)
    assert normalized_score("walker2d", (4592.3 + 1.629008) / 2) == pytest.approx(50.0)
    np.testing.assert_allclose(normalized_score("ant", [-325.6, 3879.7]), [0.0, 100.0])
    with pytest.raises(KeyError, match="humanoid"):
        normalized_score("humanoid", 1.0)
