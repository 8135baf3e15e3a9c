"""Scale-out on the CPU: a run split over two processes (``jax.distributed``, 2 forced devices
each) and checkpoints moved between 4 and 1 devices reproduce a single-process 4-device run.
The 4 -> 1 and 1 -> 4 runs also show that sharded and unsharded seeds compute the same."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import QUICK_COMPILE

from rlgen.train import distributed

CONFIG = dict(
    env="hopper",
    backend="mujoco",
    seeds=4,
    steps=250,
    warmup=100,
    chunk=50,
    hidden=(16, 16),
    batch_size=32,
    buffer_size=2_000,
    eval_every=0,
    eval_episodes=1,
    checkpoint_every=100,
    progress=False,
)

# Runs one OnlineRun object per device layout, pointed at several run dirs in turn (one compile
# each); writes the final agent leaves and evaluation returns of each run to OUT/<name>.npz.
PRELUDE = """
import dataclasses, json, sys
from pathlib import Path
import jax, numpy as np
from rlgen.train import distributed
multi = distributed.initialize()
from rlgen.train.runner import OnlineConfig, OnlineRun
from rlgen.train.sharding import seed_sharding
out = Path(sys.argv[1])
config = OnlineConfig(**json.loads(sys.argv[2]))

def run(r, name, until=None, resume=False):
    r.config = dataclasses.replace(r.config, run_dir=str(out / name), resume=resume)
    r.run_dir = out / name
    results = r.run(until)
    leaves = distributed.fetch(jax.tree.leaves(r.state.agent))
    if distributed.is_main() and until is None:
        returns = np.asarray(results["final_eval_return_per_seed"])
        np.savez(out / f"{name}.npz", returns, *leaves)
"""

TWO_PROCESSES = """
assert multi and jax.process_count() == 2 and len(jax.devices()) == 4
assert seed_sharding(2).mesh.devices.tolist() == [jax.devices()[0], jax.devices()[2]]
try:
    seed_sharding(3)
    raise AssertionError("3 seeds cannot split over 2 processes")
except ValueError as err:
    assert "divisible by the number of processes (2)" in str(err)
r = OnlineRun(config)
run(r, "multi", until=150)
run(r, "multi", resume=True)
assert len(r.state.env_steps.sharding.device_set) == 4
"""

DEVICE_COUNTS = """
assert not multi and len(jax.devices()) == 4
four, one = OnlineRun(config), OnlineRun(config, devices=jax.devices()[:1])
run(four, "straight")
run(four, "4to1", until=150)
run(one, "4to1", resume=True)
assert len(one.state.env_steps.sharding.device_set) == 1
run(one, "1to4", until=150)
run(four, "1to4", resume=True)
assert len(four.state.env_steps.sharding.device_set) == 4
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two processes of one distributed run, and a 4-device process, all at once."""
    out = tmp_path_factory.mktemp("runs")
    base = {**os.environ, "JAX_PLATFORMS": "cpu"}
    for name in ("RLGEN_COORDINATOR", "RLGEN_NUM_PROCESSES", "RLGEN_PROCESS_ID"):
        base.pop(name, None)
    coordinator = f"localhost:{free_port()}"
    flags = QUICK_COMPILE + " --xla_force_host_platform_device_count="  # compiling dominates
    jobs = [(DEVICE_COUNTS, {"XLA_FLAGS": flags + "4"})]
    for pid in range(2):
        env = {"XLA_FLAGS": flags + "2"}
        env.update(
            RLGEN_COORDINATOR=coordinator, RLGEN_NUM_PROCESSES="2", RLGEN_PROCESS_ID=str(pid)
        )
        jobs.append((TWO_PROCESSES, env))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(PRELUDE + body), str(out), json.dumps(CONFIG)],
            env={**base, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for body, env in jobs
    ]
    try:
        outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()  # a process left waiting for a failed peer; no-op after an exit
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-3000:]
    return out


def load(path):
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def assert_close(a, b):
    for x, y in zip(load(a), load(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def logged_steps(run_dir):
    return [json.loads(line)["env_steps"] for line in open(run_dir / "metrics.jsonl")]


def test_two_processes_reproduce_one_process_with_as_many_devices(runs):
    """Same final evaluation returns and parameters; process 0 alone logs; the multi-process
    checkpoint at step 150 resumes."""
    assert_close(runs / "multi.npz", runs / "straight.npz")
    assert logged_steps(runs / "multi") == [100, 150, 200, 250]
    assert json.loads((runs / "multi" / "results.json").read_text())["env_steps_per_seed"] == 250


def test_checkpoint_restores_onto_another_device_count(runs):
    """Saved at step 150 on 4 devices, continued on 1 (and the reverse): the uninterrupted run."""
    for name in ("4to1", "1to4"):
        assert logged_steps(runs / name) == [100, 150, 200, 250]
        assert_close(runs / f"{name}.npz", runs / "straight.npz")


def test_single_process_is_the_default(monkeypatch):
    """Without settings, initialize does nothing and fetch is a plain host copy."""
    for name in (*distributed.ENV_VARS.values(), "RLGEN_DISTRIBUTED"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.initialize() is False and distributed.is_main()
    assert isinstance(distributed.fetch({"x": jax.numpy.ones(3)})["x"], np.ndarray)


def test_one_lane_computes_on_the_lane_itself_and_keeps_the_lane_axis():
    """lane_map: with one lane the program works on unbatched shapes (XLA:CPU is slow on a
    leading axis of size 1) and returns the lane axis; results equal vmap's."""
    from rlgen.train.sharding import lane_map

    def fn(x, shared):
        return {"y": jnp.tanh(x) * shared, "n": jnp.sum(x)}

    mapped = lane_map(fn, (0, None))
    one = jnp.arange(3.0)[None]
    jaxpr = str(jax.make_jaxpr(mapped)(one, 2.0))
    assert "tanh" in jaxpr and "f32[1,3] = tanh" not in jaxpr and "f32[3] = tanh" in jaxpr
    out = mapped(one, 2.0)
    assert out["y"].shape == (1, 3) and out["n"].shape == (1,)
    expected = jax.vmap(fn, (0, None))(one, 2.0)
    np.testing.assert_allclose(out["y"], expected["y"], rtol=1e-6)
    two = jnp.stack([jnp.arange(3.0), -jnp.arange(3.0)])
    np.testing.assert_allclose(mapped(two, 2.0)["n"], [3.0, -3.0])  # more lanes: vmap
