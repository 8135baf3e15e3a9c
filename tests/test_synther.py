"""SynthER: offline upsampling to a D4RL file, masked normaliser, no recompiles as the replay
grows, online refresh schedule, batch mix and exact resume (tiny shapes, CPU)."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlgen import envs
from rlgen.agents.common import Agent
from rlgen.data import datasets, replay
from rlgen.data.transition import Transition
from rlgen.gen import diffusion
from rlgen.train import generate
from rlgen.train.generators import train_diffusion
from rlgen.train.synther import (
    SyntherConfig,
    SyntherRun,
    UpsampleConfig,
    masked_normalizer,
    resolve_dataset,
    upsample,
)

TINY_UPSAMPLE = dict(
    width=32,
    train_steps=30,
    batch_size=64,
    sampler_steps=4,
    sample_chunk=128,
    log_every=30,
    fidelity_rows=50,
    dataset_size=2_000,
    progress=False,
)

TINY_ONLINE = dict(
    env="hopper",
    backend="mujoco",
    seeds=2,
    steps=300,
    warmup=50,  # under retrain_every: the chunk to 100 trains before the first refit
    chunk=50,
    utd=2,
    batch_size=32,
    buffer_size=1_000,
    hidden=(16, 16),
    eval_every=0,
    eval_episodes=1,
    checkpoint_every=0,
    progress=False,
    synthetic_ratio=0.25,
    retrain_every=100,
    diffusion_steps=20,
    diffusion_width=32,
    diffusion_batch=32,
    num_synthetic=256,
    sampler_steps=4,
    sample_chunk=128,
)


def random_buffer(size: int, capacity: int = 64, obs_dim: int = 3, action_dim: int = 2):
    """A buffer of ``capacity`` rows whose first ``size`` hold random transitions."""
    rng = np.random.default_rng(size)
    rows = Transition.zeros(obs_dim, action_dim, (size,))
    rows = jax.tree.map(lambda x: rng.normal(1.0, 2.0, x.shape).astype(np.float32), rows)
    rows = rows.replace(terminal=(rows.terminal > 3.0).astype(np.float32))
    return replay.add(replay.init(capacity, obs_dim, action_dim), rows), rows


def test_upsample_writes_a_synthetic_d4rl_file(tmp_path):
    source = generate.generate("hopper", "random", size=2_000, data_dir=tmp_path, progress=False)
    config = UpsampleConfig(**TINY_UPSAMPLE, data_dir=str(tmp_path))
    assert resolve_dataset("hopper-random", config) == (source, "hopper")  # cached, by name
    with pytest.raises(ValueError, match="neither a file nor ENV-KIND"):
        resolve_dataset("hopper-mediocre", config)

    out = upsample("hopper-random", 300, tmp_path / "synthetic.hdf5", config)
    arrays, meta = datasets.load(out)
    assert len(arrays["observations"]) == 300
    assert arrays["observations"].shape == arrays["next_observations"].shape == (300, 11)
    assert arrays["actions"].shape == (300, 3)
    assert not arrays["timeouts"].any()
    assert meta["synthetic"] == 1 and meta["env"] == "hopper" and meta["size"] == 300
    assert meta["source_path"] == str(source) and meta["source_rows"] == 2_000
    assert (meta["width"], meta["train_steps"], meta["precision"]) == (32, 30, "fp32")
    assert "jax" in meta["versions"] and np.isfinite(meta["final_loss"])
    assert meta["fidelity"]["generated"]["num"] == 50
    data = datasets.to_transitions(arrays)  # every row its own "trajectory"
    assert len(data) == 300
    np.testing.assert_allclose(data.mc_return, data.reward)


def test_generator_settings_follow_synthers_offline_and_online_configs():
    offline = UpsampleConfig()
    assert offline.diffusion_config(11, 3).embed_dim == 128
    assert offline.train_batch(799_999) == 256 and offline.train_batch(1_000_000) == 1024
    assert UpsampleConfig(batch_size=64).train_batch(1_000_000) == 64
    online = SyntherConfig()
    network = online.diffusion_config(11, 3).network
    assert (network.width, network.embed_dim, online.diffusion_batch) == (1024, 256, 256)


def test_masked_normalizer_matches_the_plain_fit_on_the_valid_rows():
    buffer, rows = random_buffer(40)
    masked = masked_normalizer(buffer)
    plain = diffusion.fit_normalizer(diffusion.flatten(rows))
    np.testing.assert_allclose(masked.mean, plain.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(masked.std, plain.std, rtol=1e-5, atol=1e-6)
    assert masked.mean[-1] == 0 and masked.std[-1] == 1  # terminal dim left raw


def test_fitting_on_a_growing_buffer_compiles_once():
    config = UpsampleConfig(**TINY_UPSAMPLE).diffusion_config(11, 3)  # as the upsample test's
    cache_sizes = []
    for size in (10, 700, 2_000):
        buffer, _ = random_buffer(size, capacity=2_000, obs_dim=11, action_dim=3)
        state = diffusion.init(jax.random.key(0), config, masked_normalizer(buffer))
        state, metrics = train_diffusion(state, (buffer,), 30, 64)
        assert metrics["loss"].shape == (30,) and np.isfinite(metrics["loss"]).all()
        cache_sizes.append(train_diffusion._cache_size())
    assert cache_sizes[0] == cache_sizes[-1], cache_sizes


class CountSynthetic:
    """Wraps an agent to report, per update batch, how many rows are synthetic (their MC
    return is unknown, -inf; the real rows' is 0)."""

    def __new__(cls, agent: Agent) -> Agent:
        def update(state, batches, key):
            state, metrics = agent.update(state, batches, key)
            counts = jnp.sum(jnp.isneginf(batches.mc_return), axis=-1).astype(jnp.float32)
            # an empty buffer's rows are all zeros; real and generated observations never are
            blank = jnp.sum(jnp.all(batches.obs == 0, axis=-1), axis=-1).astype(jnp.float32)
            return state, {
                **metrics,
                "synthetic_min": counts.min(),
                "synthetic_max": counts.max(),
                "blank_rows_max": blank.max(),
            }

        return dataclasses.replace(agent, update=update)


class Recorded(SyntherRun):
    """Keeps a copy of seed 0's synthetic observations after every hook call."""

    def __init__(self, config):
        env = envs.make(config.env, backend=config.backend)
        agent = CountSynthetic(config.sac_agent(env.observation_size, env.action_size))
        super().__init__(config, env=env, agent=agent)
        self.snapshots = []

    def after_chunk(self, state, prev, step, row=None):
        state = super().after_chunk(state, prev, step, row)
        self.snapshots.append((step, np.asarray(state.synthetic.data.obs[0])))
        return state


@pytest.fixture(scope="module")
def online(tmp_path_factory):
    """One run straight through, then the same compiled run stopped after the refresh at 200
    and resumed from that checkpoint."""
    config = SyntherConfig(**TINY_ONLINE, run_dir=str(tmp_path_factory.mktemp("straight")))
    run = Recorded(config)
    run.run()
    straight = dict(state=run.state, snapshots=list(run.snapshots), run_dir=run.run_dir)
    run.run_dir = tmp_path_factory.mktemp("resumed")
    run.run(until=200)
    run.config = dataclasses.replace(config, resume=True)
    run.run()
    return run, straight


def test_online_refreshes_at_every_retrain_interval(online):
    _, straight = online
    path = straight["run_dir"] / "refreshes.jsonl"
    refreshes = [json.loads(line) for line in open(path)]
    assert [r["env_steps"] for r in refreshes] == [100, 200, 300]
    assert all(len(r["diffusion_loss"]) == 2 for r in refreshes)  # one per seed
    steps = [s for s, _ in straight["snapshots"]]
    assert steps == [50, 100, 150, 200, 250, 300]
    obs = dict(straight["snapshots"])
    assert not np.array_equal(obs[100], obs[200]) and not np.array_equal(obs[200], obs[300])
    np.testing.assert_array_equal(obs[100], obs[150])  # unchanged between refreshes
    np.testing.assert_array_equal(obs[200], obs[250])
    synthetic = straight["state"].synthetic
    assert synthetic.data.obs.shape == (2, 256, 11) and (np.asarray(synthetic.size) == 256).all()
    rows = [json.loads(line) for line in open(straight["run_dir"] / "metrics.jsonl")]
    logged = {r["env_steps"]: r for r in rows}
    for step in (100, 200, 300):
        assert np.isfinite(logged[step]["diffusion_loss"]), logged[step]
        assert logged[step]["synthetic_refresh_s"] > 0
    assert "diffusion_loss" not in logged[150] and "diffusion_loss" not in logged[250]


def test_online_batches_are_all_real_until_the_first_refit_then_hold_the_synthetic_rows(online):
    """As SynthER's code: the chunk that ends at the first refit (100) trains on replay rows
    only, none drawn from the still-empty synthetic buffer; later ones on 8 synthetic rows."""
    run, straight = online
    assert run.counts == (8, 24)
    rows = {r["env_steps"]: r for r in map(json.loads, open(straight["run_dir"] / "metrics.jsonl"))}
    assert rows[100]["synthetic_max"] == 0 and rows[100]["blank_rows_max"] == 0
    for step in (150, 200, 250, 300):
        assert rows[step]["synthetic_min"] == rows[step]["synthetic_max"] == 8
        assert rows[step]["blank_rows_max"] == 0


def test_resume_after_a_refresh_reproduces_the_uninterrupted_run(online):
    run, straight = online
    refreshes = [json.loads(line) for line in open(run.run_dir / "refreshes.jsonl")]
    assert [r["env_steps"] for r in refreshes] == [100, 200, 300]  # none repeated on resume
    leaves = zip(jax.tree.leaves(straight["state"]), jax.tree.leaves(run.state), strict=True)
    for a, b in leaves:
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
