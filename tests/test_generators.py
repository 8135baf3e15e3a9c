"""Diffusion generators inside offline-to-online runs (SynthER upsampling, EDIS refits)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlgen.data import datasets, replay
from rlgen.data.mixer import sample_union
from rlgen.data.transition import Transition
from rlgen.gen import diffusion
from rlgen.train import generate, generators
from rlgen.train.finetune import FinetuneConfig, FinetuneRun


def _rows(values, capacity=None):
    data = Transition.zeros(1, 1, (len(values),)).replace(reward=jnp.asarray(values, jnp.float32))
    if capacity is None:
        return replay.from_transitions(data)
    return replay.add(replay.init(capacity, 1, 1), data)


def test_sample_union_is_uniform_over_the_filled_rows_of_all_sources():
    sources = (_rows([0.0, 1.0, 2.0]), _rows([10.0, 11.0], capacity=8))
    draws = np.asarray(sample_union(sources, jax.random.key(0), 50_000).reward)
    values, counts = np.unique(draws, return_counts=True)
    np.testing.assert_array_equal(values, [0, 1, 2, 10, 11])  # never an unfilled (zero) row twice
    np.testing.assert_allclose(counts / counts.sum(), 0.2, atol=0.01)


def test_sample_union_stacks_utd_batches_from_every_source():
    first = replay.from_transitions(Transition.zeros(1, 1, (30,)))
    second = replay.from_transitions(Transition.zeros(1, 1, (10,)).replace(reward=jnp.ones(10)))
    batch = sample_union((first, second), jax.random.key(1), 4096, num_batches=3)
    assert batch.obs.shape == (3, 4096, 1) and batch.reward.shape == (3, 4096)
    assert abs(float(batch.reward.mean()) - 0.25) < 0.02  # 10 of the 40 rows have reward 1


def test_sample_union_follows_a_growing_buffer_without_recompiling():
    traces = []

    @jax.jit
    def draw(sources, key):
        traces.append(1)
        return sample_union(sources, key, 4096).reward

    online = _rows([5.0], capacity=8)
    offline = _rows([1.0])
    first = np.asarray(draw((offline, online), jax.random.key(1)))
    online = replay.add(online, _rows([7.0, 7.0, 7.0]).data)
    second = np.asarray(draw((offline, online), jax.random.key(1)))
    assert len(traces) == 1
    assert set(first) == {1.0, 5.0} and set(second) == {1.0, 5.0, 7.0}
    assert abs((second == 7.0).mean() - 0.6) < 0.03  # 3 of the 5 filled rows


def _random_rows(seed: int, n: int) -> tuple[Transition, np.ndarray]:
    """n random rows (obs 2, action 1) and their flat [obs, action, reward, next_obs] columns."""
    x = np.random.default_rng(seed).normal(size=(n, 6)).astype(np.float32) * [1, 2, 3, 4, 5, 6]
    zero = np.zeros(n, np.float32)
    rows = Transition(x[:, :2], x[:, 2:3], x[:, 3], x[:, 4:], zero, zero, zero)
    return rows, x


def test_union_normalizer_fits_the_filled_rows_of_offline_and_online_in_one_program():
    traces = []

    @jax.jit
    def fit(sources):
        traces.append(1)
        return generators.union_normalizer(sources)

    offline, offline_x = _random_rows(0, 40)
    online, online_x = _random_rows(1, 32)
    for size in (5, 11):  # the online buffer's fill level (rows past it are not data)
        buffer = replay.ReplayBuffer(online, np.int32(size), np.int32(size))
        got = fit((replay.ReplayBuffer(offline, np.int32(0), np.int32(40)), buffer))
        x = np.concatenate([offline_x, online_x[:size]])
        np.testing.assert_allclose(got.mean[:-1], x.mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got.std[:-1], x.std(0), rtol=1e-5)
        assert got.mean[-1] == 0 and got.std[-1] == 1  # the terminal dim stays raw
    assert len(traces) == 1


@pytest.fixture(scope="module")
def random_hopper(tmp_path_factory):
    path = generate.generate(
        "hopper", "random", size=2000, data_dir=tmp_path_factory.mktemp("data"), progress=False
    )
    return datasets.to_transitions(datasets.load(path)[0])


TINY = dict(
    diffusion_width=32,
    diffusion_steps=100,
    diffusion_batch=64,
    sampler_steps=16,
    num_generated=256,
    energy_steps=20,
    energy_examples=32,
)


def test_synther_buffer_holds_generated_rows_without_mc_returns(random_hopper):
    aug = FinetuneConfig(augment="synther", **TINY).diffusion_augment(11, 3, len(random_hopper))
    offline = replay.from_transitions(random_hopper)
    normalizer = diffusion.fit_normalizer(diffusion.flatten(random_hopper))
    buffer, metrics = generators.synther_buffer(aug, jax.random.key(0), offline, normalizer)
    assert int(buffer.size) == 256 and buffer.data.obs.shape == (256, 11)
    assert np.all(np.asarray(buffer.data.mc_return) == -np.inf)
    assert set(np.unique(np.asarray(buffer.data.terminal))) <= {0.0, 1.0}
    assert np.isfinite(float(metrics["diffusion_loss"]))


def _run(tmp_path, data, **kw):
    config = FinetuneConfig(
        algo="calql",
        backend="mujoco",
        seeds=2,
        pretrain_steps=250,
        steps=1250,
        warmup=1000,
        chunk=250,
        eval_every=0,
        eval_episodes=1,
        batch_size=64,
        num_samples=3,
        hidden=(32, 32),
        run_dir=str(tmp_path),
        progress=False,
        **TINY,
        **kw,
    )
    run = FinetuneRun(config, dataset=data)
    return run, run.run()


@pytest.mark.slow
def test_edis_refits_after_collection_and_replaces_offline_replay(random_hopper, tmp_path):
    run, results = _run(tmp_path, random_hopper, edis=True, generated_ratio=0.25)
    assert run.config.augment == "edis"
    assert run.pretrain_counts == (64, 0) and run.counts == (0, 16, 48)
    rows = [json.loads(line) for line in open(tmp_path / "finetune" / "metrics.jsonl")]
    refits = [r for r in rows if "refit_time_s" in r]
    assert [r["env_steps"] for r in refits] == [1000]  # right after the warm-up collection
    for name in ("state", "policy", "transition"):
        assert f"{name}_loss" in refits[0]
    synthetic = jax.tree.map(np.asarray, run.state.synthetic)
    assert np.all(synthetic.size == 256)
    assert not np.array_equal(synthetic.data.obs[0], synthetic.data.obs[1])  # per-seed models
    assert results["env_steps_per_seed"] == 1250
