"""Offline datasets in the D4RL layout: HDF5 / .npz I/O, validation, conversion to transitions.

A dataset is a dict of NumPy arrays keyed as in D4RL (``observations``, ``actions``,
``rewards``, ``terminals``, ``timeouts``, optionally ``next_observations`` and per-row
``infos/*`` arrays such as ``infos/qpos``) plus a flat ``metadata`` dict of scalars and strings
(D4RL's nested ``metadata/policy/...`` scalars are read as ``policy/...`` keys, its weight
arrays skipped). Files without ``timeouts`` (D4RL v0) get them from an episode step counter, with a
warning. Files are validated on load and on save; writes go to a temporary file that is renamed
into place, so a crash never leaves a half-written dataset. Minari's episode layout
(``episode_<i>/{observations, actions, rewards, terminations, truncations}``) is read too and
converted to the flat layout (:func:`load`).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import h5py
import jax.numpy as jnp
import numpy as np

from rlgen.data.returns import episode_ends, returns_to_go
from rlgen.data.transition import Transition

REQUIRED = ("observations", "actions", "rewards", "terminals", "timeouts")
OPTIONAL = ("next_observations",)
FLOAT_FIELDS = ("observations", "actions", "rewards", "next_observations")
FLAG_FIELDS = ("terminals", "timeouts")
INFO_PREFIX = "infos/"  # per-row extras (D4RL: infos/qpos, infos/qvel, infos/action_log_probs)
MUJOCO_MAX_EPISODE_STEPS = 1000
ANT_V2_OBS_DIM = 111
ANT_V5_OBS_DIM = 105
ANT_V2_WORLDBODY_FORCES = slice(27, 33)  # cfrc_ext of the worldbody in D4RL's Ant-v2 rows


class DatasetError(ValueError):
    """A dataset is malformed; the message names the field."""


def validate(data: dict[str, Any]) -> dict[str, np.ndarray]:
    """Check a D4RL-layout dict and return it as float32 / bool NumPy arrays.

    ``infos/*`` fields are kept (floats as float32) and checked for dtype, one row per
    transition and finite values. Raises :class:`DatasetError` naming the field for a missing
    key, a length mismatch, a wrong rank or dtype, non-finite values, or flags other than 0/1.
    """
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise DatasetError(f"dataset is missing required field(s): {', '.join(missing)}")
    out: dict[str, np.ndarray] = {}
    for key in (*REQUIRED, *OPTIONAL):
        if key not in data:
            continue
        arr = np.asarray(data[key])
        if arr.dtype.kind not in "biuf":
            raise DatasetError(f"field '{key}' has dtype {arr.dtype}; expected a numeric type")
        if key in FLAG_FIELDS:
            if arr.ndim != 1:
                raise DatasetError(f"field '{key}' must be 1-D, got shape {arr.shape}")
            if not np.all((arr == 0) | (arr == 1)):
                raise DatasetError(f"field '{key}' must hold only 0/1 (or booleans)")
            out[key] = arr.astype(bool)
            continue
        _check_finite(key, arr)
        want_ndim = 1 if key == "rewards" else 2
        if arr.ndim != want_ndim:
            raise DatasetError(f"field '{key}' must be {want_ndim}-D, got shape {arr.shape}")
        out[key] = arr.astype(np.float32)
    for key in sorted(k for k in data if k.startswith(INFO_PREFIX)):
        out[key] = _validate_info(key, data[key])
    n = len(out["observations"])
    for key, arr in out.items():
        if len(arr) != n:
            raise DatasetError(f"field '{key}' has {len(arr)} rows but 'observations' has {n}")
    if n == 0:
        raise DatasetError("dataset is empty: 'observations' has 0 rows")
    if "next_observations" in out and out["next_observations"].shape != out["observations"].shape:
        raise DatasetError(
            f"field 'next_observations' has shape {out['next_observations'].shape}, "
            f"'observations' has {out['observations'].shape}"
        )
    return out


def _check_finite(key: str, arr: np.ndarray) -> None:
    if not np.all(np.isfinite(arr)):
        bad = int(np.argmax(~np.isfinite(arr).reshape(len(arr), -1).all(axis=1)))
        raise DatasetError(f"field '{key}' has NaN or inf values (first at row {bad})")


def _validate_info(key: str, value: Any) -> np.ndarray:
    """A numeric per-row ``infos/*`` array, floats finite and cast to float32."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise DatasetError(f"field '{key}' has dtype {arr.dtype}; expected a numeric type")
    if arr.ndim == 0:
        raise DatasetError(f"field '{key}' is a scalar; expected one row per transition")
    if arr.dtype.kind != "f":
        return arr
    _check_finite(key, arr)
    return arr.astype(np.float32)


def _atomic_path(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def save_d4rl(path: str | os.PathLike, data: dict[str, Any], metadata: dict | None = None) -> Path:
    """Validate and write a dataset atomically as D4RL HDF5 (``.hdf5``/``.h5``) or ``.npz``."""
    path = Path(path)
    arrays = validate(data)
    metadata = dict(metadata or {})
    tmp = _atomic_path(path)
    try:
        if path.suffix in (".hdf5", ".h5"):
            with h5py.File(tmp, "w") as f:
                for key, arr in arrays.items():
                    f.create_dataset(key, data=arr, compression="gzip", compression_opts=1)
                group = f.create_group("metadata")
                for key, value in metadata.items():
                    group.attrs[key] = value if np.isscalar(value) else json.dumps(value)
        elif path.suffix == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, **arrays, metadata=np.asarray(json.dumps(metadata)))
        else:
            raise DatasetError(f"unknown dataset extension '{path.suffix}' (use .hdf5, .h5, .npz)")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_d4rl(
    path: str | os.PathLike, max_episode_steps: int = MUJOCO_MAX_EPISODE_STEPS
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read and validate a D4RL HDF5 or ``.npz`` dataset; returns (arrays, metadata).

    A file without ``timeouts`` (D4RL v0) gets them from :func:`timeouts_from_step_counter`
    with ``max_episode_steps``, and a warning says so.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset file not found: {path}")
    if path.suffix in (".hdf5", ".h5"):
        with h5py.File(path, "r") as f:
            raw = _read_hdf5_fields(f)
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            raw = {k: f[k] for k in f.files if k != "metadata"}
    else:
        raise DatasetError(f"unknown dataset extension '{path.suffix}' (use .hdf5, .h5, .npz)")
    if "timeouts" not in raw and "terminals" in raw:
        warnings.warn(
            f"{path} has no 'timeouts' field (a D4RL v0 file?): deriving it as D4RL's "
            f"qlearning_dataset does, a non-terminal row is a timeout when its episode reaches "
            f"{max_episode_steps} steps",
            stacklevel=2,
        )
        raw["timeouts"] = timeouts_from_step_counter(raw["terminals"], max_episode_steps)
    return validate(raw), read_metadata(path)


def _read_hdf5_fields(f: h5py.File) -> dict[str, np.ndarray]:
    """The D4RL fields of an open file, and every dataset under its ``infos`` group."""
    raw = {k: f[k][()] for k in (*REQUIRED, *OPTIONAL) if k in f}

    def add_info(name: str, item) -> None:
        if isinstance(item, h5py.Dataset):
            raw[INFO_PREFIX + name] = item[()]

    if isinstance(f.get("infos"), h5py.Group):
        f["infos"].visititems(add_info)
    return raw


def timeouts_from_step_counter(terminals: Any, max_episode_steps: int) -> np.ndarray:
    """Timeouts of a file that lacks them: a non-terminal row is one when it is step
    ``max_episode_steps - 1`` (counting from 0) of its episode; episodes restart after every
    terminal and every timeout. (D4RL's loop restarts its counter one row late after a terminal;
    this one does not.)"""
    terminals = np.ravel(terminals).astype(bool)
    rows = np.arange(len(terminals))
    follows_terminal = np.zeros_like(terminals)
    follows_terminal[1:] = terminals[:-1]
    episode_start = np.maximum.accumulate(np.where(follows_terminal, rows, 0))
    step = rows - episode_start
    return (step % max_episode_steps == max_episode_steps - 1) & ~terminals


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``metadata`` of a D4RL HDF5 / ``.npz`` file without reading its arrays ({} if none)."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            return json.loads(str(f["metadata"])) if "metadata" in f.files else {}
    with h5py.File(path, "r") as f:
        if "metadata" not in f:
            return {}
        return _hdf5_metadata(f["metadata"])


def _hdf5_metadata(group: h5py.Group) -> dict[str, Any]:
    """The attributes of ``group`` and the scalar datasets below it, nested names joined with
    '/' (arrays, such as D4RL's policy weights, are skipped)."""
    metadata = {k: _plain(v) for k, v in group.attrs.items()}

    def add_scalar(name: str, item) -> None:
        if isinstance(item, h5py.Dataset) and item.shape == ():
            metadata[name] = _plain(item[()])

    group.visititems(add_scalar)
    return metadata


def load(
    path: str | os.PathLike, max_episode_steps: int = MUJOCO_MAX_EPISODE_STEPS
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a dataset in any supported layout: D4RL HDF5 / ``.npz``, or a Minari dataset
    (its directory, or its ``main_data.hdf5``). ``max_episode_steps``: see :func:`load_d4rl`."""
    path = Path(path)
    if path.is_dir():
        path = path / "data" / "main_data.hdf5"
    if path.suffix in (".hdf5", ".h5") and path.exists():
        with h5py.File(path, "r") as f:
            minari = any(k.startswith("episode_") for k in f.keys())
        if minari:
            return load_minari(path)
    return load_d4rl(path, max_episode_steps)


def load_minari(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Flatten a Minari HDF5 file (one group per episode, ``observations`` one row longer than
    the actions) into the D4RL layout with ``next_observations``; dict observation spaces are
    not supported."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset file not found: {path}")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (*REQUIRED, "next_observations")}
    with h5py.File(path, "r") as f:
        names = sorted((k for k in f.keys() if k.startswith("episode_")), key=_episode_number)
        if not names:
            raise DatasetError(f"{path} has no 'episode_<i>' groups (not a Minari dataset)")
        for name in names:
            episode = f[name]
            for field in ("observations", "actions", "rewards", "terminations", "truncations"):
                if field not in episode:
                    raise DatasetError(f"Minari episode '{name}' is missing field '{field}'")
                if not isinstance(episode[field], h5py.Dataset):
                    raise DatasetError(
                        f"Minari episode '{name}' field '{field}' is a group (dict spaces are "
                        "not supported)"
                    )
            obs = episode["observations"][()]
            steps = len(episode["actions"])
            if len(obs) != steps + 1:
                raise DatasetError(
                    f"Minari episode '{name}': 'observations' has {len(obs)} rows, expected "
                    f"len(actions) + 1 = {steps + 1}"
                )
            parts["observations"].append(obs[:-1])
            parts["next_observations"].append(obs[1:])
            parts["actions"].append(episode["actions"][()])
            parts["rewards"].append(episode["rewards"][()])
            parts["terminals"].append(episode["terminations"][()])
            parts["timeouts"].append(episode["truncations"][()])
        metadata = {k: _plain(v) for k, v in f.attrs.items()}
    data = {k: np.concatenate(v) for k, v in parts.items()}
    return validate(data), metadata


ANT_V2_HINT = (
    ". This is D4RL's Ant-v2 layout: qpos[2:] (13), qvel (14) and clipped cfrc_ext of all 14 "
    "bodies (84). rlgen's Ant is Gymnasium's Ant-v5, which drops the worldbody's 6 always-zero "
    "cfrc_ext entries (columns 27:33), hence 105. D4RL recorded Ant with mujoco-py 2, which "
    "reported no contact forces, so columns 27:111 of its files are all zero (D4RL issue #143), "
    "while rlgen's Ant observes real contact forces; Ant-v2 also paid the survive bonus on the "
    "terminating step. To proceed, generate Ant-v5 data (rlgen dataset generate --env ant), or "
    "convert the file with rlgen.data.datasets.ant_v2_to_v5 (then save_d4rl) and accept that its "
    "contact forces are zero offline but not online"
)


def dimension_mismatch_message(
    env_name: str, dataset_dims: tuple[int, int], env_dims: tuple[int, int]
) -> str:
    """The error for a dataset whose (obs, action) dims differ from the env's, saying what
    differs and how to proceed where that is known (D4RL's Ant-v2 files)."""
    message = (
        f"dataset obs/action dims {dataset_dims[0]}/{dataset_dims[1]} do not match env "
        f"{env_name} ({env_dims[0]}/{env_dims[1]})"
    )
    if env_name == "ant" and dataset_dims[0] == ANT_V2_OBS_DIM and env_dims[0] == ANT_V5_OBS_DIM:
        message += ANT_V2_HINT
    return message


def ant_v2_to_v5(data: dict[str, Any]) -> dict[str, Any]:
    """D4RL's 111-dim Ant-v2 ``observations`` / ``next_observations`` in Ant-v5's 105-dim
    layout (the worldbody's cfrc_ext columns 27:33 dropped); other fields unchanged."""
    out = dict(data)
    for key in ("observations", "next_observations"):
        if key not in out:
            continue
        obs = np.asarray(out[key])
        if obs.ndim != 2 or obs.shape[1] != ANT_V2_OBS_DIM:
            raise DatasetError(
                f"field '{key}' has shape {obs.shape}; D4RL's Ant-v2 rows have "
                f"{ANT_V2_OBS_DIM} columns"
            )
        out[key] = np.delete(obs, ANT_V2_WORLDBODY_FORCES, axis=1)
    return out


def _episode_number(name: str) -> int:
    suffix = name.removeprefix("episode_")
    return int(suffix) if suffix.isdigit() else -1


def _plain(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (JSON-encoded lists/dicts decoded)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


def to_transitions(
    data: dict[str, np.ndarray], gamma: float = 0.99, failure_reward: float | None = None
) -> Transition:
    """Flat D4RL arrays -> :class:`Transition` stack with Monte-Carlo returns-to-go.

    Without ``next_observations`` (raw D4RL files) the next observation is the following row,
    and the last row of every trajectory that is not terminal is dropped, as D4RL's
    ``qlearning_dataset`` does.
    """
    data = validate(data)
    obs, terminals, timeouts = data["observations"], data["terminals"], data["timeouts"]
    if "next_observations" in data:
        next_obs = data["next_observations"]
        ends = np.asarray(episode_ends(terminals, timeouts, obs, next_obs))
        keep = np.ones(len(obs), bool)
    else:
        next_obs = np.concatenate([obs[1:], obs[-1:]])
        ends = np.asarray(episode_ends(terminals, timeouts))
        keep = ~(ends & ~terminals)  # a cut trajectory's last row has no next observation
        ends = _last_kept(ends, keep)
        obs, next_obs = obs[keep], next_obs[keep]
    rewards = data["rewards"][keep]
    term = terminals[keep]
    rtg = returns_to_go(rewards, term, ends, gamma, failure_reward=failure_reward)
    truncated = ends & ~term
    return Transition(
        obs=jnp.asarray(obs),
        action=jnp.asarray(data["actions"][keep]),
        reward=jnp.asarray(rewards),
        next_obs=jnp.asarray(next_obs),
        terminal=jnp.asarray(term, jnp.float32),
        truncated=jnp.asarray(truncated, jnp.float32),
        mc_return=rtg,
    )


def _last_kept(ends: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """After dropping rows, mark the kept row that now ends each trajectory."""
    ids = np.cumsum(ends) - ends
    kept_ids = ids[keep]
    return np.append(kept_ids[1:] != kept_ids[:-1], True)
