import h5py
import numpy as np
import pytest

from rlgen.data import (
    DatasetError,
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


@pytest.mark.parametrize("suffix", [".hdf5", ".npz"])
def test_round_trip_keeps_arrays_and_metadata(tmp_path, suffix):
    data = make_data()
    data["terminals"][2] = True
    meta = {"env": "hopper", "policy_return": 1234.5, "seeds": [1, 2]}
    path = save_d4rl(tmp_path / f"d{suffix}", data, meta)
    loaded, loaded_meta = load_d4rl(path)
    for key, arr in data.items():
        np.testing.assert_array_equal(loaded[key], arr, err_msg=key)
    assert loaded_meta == meta
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


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
    ],
    ids=["missing", "length", "nan", "inf", "dtype", "flag-values", "rank"],
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
