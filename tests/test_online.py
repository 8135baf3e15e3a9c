"""Online runner: learning, exact resume, sharding invariance, non-finite stop (CPU)."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlgen.agents.common import Agent
from rlgen.data.scores import normalized_score
from rlgen.train import checkpoint
from rlgen.train.health import NonFiniteError
from rlgen.train.runner import OnlineConfig, OnlineRun

SMALL = dict(
    env="hopper",
    backend="mujoco",
    hidden=(16, 16),
    batch_size=32,
    buffer_size=2_000,
    warmup=100,
    chunk=50,
    eval_every=0,
    eval_episodes=1,
    progress=False,
)


# The final evaluation return (3 episodes, mean of the 2 vmapped seeds) of sac_learning_run,
# measured over base seeds 0-9 on a 2-core CPU under the suite's XLA flags (python -m
# tests.seed_spread sac_online; docs/results/learning_checks.jsonl): min 125, median 174, max
# 197. With the actor's learning rate at 0 (--broken, seeds 0-2): 4, 12, 35. The threshold is
# 1.8x below the worst healthy seed and 2x above the best broken one.
SAC_THRESHOLD = 70.0


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def sac_learning_run(seed: int, run_dir, **overrides) -> dict:
    """Hopper SAC, 2 vmapped seeds x 3k env steps (1k random warm-up), 64-wide nets."""
    config = OnlineConfig(
        env="hopper",
        backend="mujoco",
        seeds=2,
        seed=seed,
        steps=3_000,
        warmup=1_000,
        chunk=500,
        eval_every=0,
        eval_episodes=3,
        buffer_size=10_000,
        hidden=(64, 64),
        run_dir=str(run_dir),
        progress=False,
        **overrides,
    )
    return OnlineRun(config).run()


def measure_sac_learning(seed: int, run_dir, **overrides) -> float:
    """The learning check's statistic: the final evaluation return, mean of the 2 seeds."""
    return float(
        np.mean(sac_learning_run(seed, run_dir, **overrides)["final_eval_return_per_seed"])
    )


def test_sac_learns_hopper_well_above_random(tmp_path):
    """Uniform random actions score about 18 on Hopper-v5 (see the warm-up's train_return)."""
    results = sac_learning_run(0, tmp_path)
    assert np.mean(results["final_eval_return_per_seed"]) > SAC_THRESHOLD, results
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert rows[-1]["env_steps"] == 3_000 and "eval_return_std" in rows[-1]
    assert (tmp_path / "results.json").exists() and (tmp_path / "system.json").exists()


def test_resume_from_checkpoint_reproduces_the_uninterrupted_run(tmp_path):
    config = OnlineConfig(
        **{**SMALL, "eval_every": 50},
        seeds=2,
        steps=250,
        utd=2,
        checkpoint_every=50,
        run_dir=str(tmp_path / "a"),
    )
    straight = OnlineRun(config)
    expected = straight.run()["evaluations"]
    interrupted = OnlineRun(dataclasses.replace(config, run_dir=str(tmp_path / "b")))
    interrupted.run(until=200)
    saved = (tmp_path / "b" / "config.json").read_text()
    with pytest.raises(FileExistsError, match="already holds a run.*pass --resume"):
        interrupted.run()  # starting over would overwrite the run: refused, nothing written
    assert (tmp_path / "b" / "config.json").read_text() == saved
    interrupted.config = dataclasses.replace(interrupted.config, resume=True)
    resumed = interrupted.run()["evaluations"]
    assert_trees_equal(straight.state, interrupted.state)
    # the resumed run reports the first session's evaluations too, with D4RL scores
    assert [(e["phase"], e["step"]) for e in expected] == [("online", s) for s in (150, 200, 250)]
    assert resumed == expected
    np.testing.assert_allclose(
        expected[-1]["score"], normalized_score("hopper", expected[-1]["return"]), rtol=1e-6
    )


class NaNAfter:
    """Wraps an agent so the critic loss turns NaN once the agent has taken ``n`` updates."""

    def __new__(cls, agent: Agent, n: int) -> Agent:
        def update(state, batches, key):
            state, metrics = agent.update(state, batches, key)
            loss = jnp.where(state.step > n, jnp.nan, metrics["critic_loss"])
            return state, {**metrics, "critic_loss": loss}

        return dataclasses.replace(agent, update=update)


def test_non_finite_loss_stops_naming_seed_step_and_quantity(tmp_path):
    config = OnlineConfig(**SMALL, seeds=2, steps=300, checkpoint_every=50, run_dir=str(tmp_path))
    base = OnlineRun(config).agent
    run = OnlineRun(config, agent=NaNAfter(base, 60))
    with pytest.raises(NonFiniteError, match=r"'critic_loss' in seed 0 at env step 200"):
        run.run()
    mngr = checkpoint.manager(tmp_path / "checkpoints")
    assert mngr.latest_step() == 150
    restored = checkpoint.restore(mngr, run.init_state())
    assert int(restored.env_steps[0]) == 150
    assert np.isfinite(np.asarray(jax.tree.leaves(restored.agent.critic.params)[0])).all()


def test_checkpoint_round_trip_keeps_keys_and_empty_arrays(tmp_path):
    """MJX states hold arrays with no elements (e.g. hopper's ``act``), which orbax refuses to
    save; they come back from the template, keys come back typed."""
    state = {"x": jnp.arange(3.0), "act": jnp.zeros((2, 0)), "key": jax.random.key(3)}
    mngr = checkpoint.manager(tmp_path)
    checkpoint.save(mngr, 1, state)
    template = {"x": jnp.zeros(3), "act": jnp.zeros((2, 0)), "key": jax.random.key(0)}
    restored = checkpoint.restore(mngr, template)
    assert restored["act"].shape == (2, 0)
    assert_trees_equal(restored, state)


def test_a_chunk_larger_than_the_replay_buffer_is_refused(tmp_path):
    config = OnlineConfig(**{**SMALL, "buffer_size": 40}, run_dir=str(tmp_path))  # chunk 50
    with pytest.raises(ValueError, match="raise buffer_size or lower chunk"):
        OnlineRun(config).run()
