"""rlgen on the MJX backend (default solver settings): env parity with Gymnasium, and training,
evaluation and checkpoints on MJX states (the GPU check's dry run).

Marked slow: compiling one MJX env step takes 10-30 s on a 2-core CPU, so this file needs a few
minutes there (seconds per env on a GPU). test_envs.py covers the same API on C MuJoCo.
The tolerances hold under the suite's quick-compile XLA flags (conftest.py) as under XLA's
defaults (both measured).

Parity design as in test_envs.py: before every step Gymnasium's simulator is set to our state
(qpos, qvel, warmstart, xpos) and both take the same action, along 150 random-action steps.
MJX computes in float32 with a capped solver, so the tolerances are MJX's float32 floor,
measured with the XML's converged solver (100 iterations) and unchanged by the default cap:
- Hopper, Walker2d, HalfCheetah: obs within 1e-3 (measured max 4e-6, 9e-5, 4e-4; HalfCheetah's
  unbounded joint velocities reach ~20 and its float32 error is largest).
- Ant: velocities within 1e-2 but the contact-force part of obs within 0.2 (measured 0.06-0.13
  at some steps): a float32 elliptic-cone solve of a stiff contact moves individual clipped
  contact forces by a few percent; with float64 MJX the error falls below 1e-3.
- reward within 1e-3 (Ant 2e-3: its reward includes the contact cost).
Termination must match Gymnasium at every step.
"""

import json

import jax
import numpy as np
import pytest

import rlgen.envs as E
from rlgen.data.transition import Transition
from rlgen.envs.parity import compare_with_gymnasium, reference_env

pytestmark = pytest.mark.slow

NAMES = ["hopper", "halfcheetah", "walker2d", "ant"]
OBS_TOL = {"hopper": 1e-3, "halfcheetah": 1e-3, "walker2d": 1e-3, "ant": 0.2}
# the largest one-step reward error over 150 steps. Ant's contacts give rare outlier steps where
# MJX's float32 solve and MuJoCo's float64 one part at a contact's onset: on a 2-core AMD EPYC
# with AVX-512 one step of 150 errs by 0.008 (the next largest 1.6e-4; other action seeds
# 1.6e-4, 1.9e-4), so ant's bound on the max is loose and the 98th percentile is checked too
REWARD_TOL = {"hopper": 1e-3, "halfcheetah": 1e-3, "walker2d": 1e-3, "ant": 0.05}


def _actions(env, n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, env.action_size)).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_parity_with_gymnasium(name):
    env = E.make(name, backend="mjx")
    ref = reference_env(name, env)
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    out = compare_with_gymnasium(ref, reset, step, jax.random.key(1), _actions(env, 150))
    assert out["reset_err"] < 1e-6
    obs_err = out["obs_err"]
    assert obs_err.max() < OBS_TOL[name]
    assert np.median(obs_err) < 1e-4
    assert out["reward_err"].max() < REWARD_TOL[name]
    assert np.quantile(out["reward_err"], 0.98) < 1e-3
    np.testing.assert_array_equal(out["terminated"], out["ref_terminated"])
    if name != "halfcheetah":
        assert out["terminated"].any()


def _offline_rows(n=256, seed=0):
    """Random hopper-shaped transitions (the dataset is not what this checks)."""
    rng = np.random.default_rng(seed)
    f32 = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    zeros = np.zeros(n, np.float32)
    return Transition(f32(n, 11), np.tanh(f32(n, 3)), f32(n), f32(n, 11), zeros, zeros, f32(n))


def test_calql_fine_tuning_trains_and_checkpoints_on_mjx_states(tmp_path):
    """The GPU path on the CPU: a Cal-QL fine-tuning chunk on MJX (env step with auto-reset over
    mjx.Data, episode log, mixed batches, update) keeps its bookkeeping, and the run state,
    mjx.Data with its empty arrays included, round-trips through a checkpoint. Euler instead of
    the model file's RK4 (the same code path): the program compiles in a third of the time."""
    from rlgen.train import checkpoint
    from rlgen.train.finetune import FinetuneConfig, FinetuneRun

    config = FinetuneConfig(
        algo="calql",
        backend="mjx",
        seeds=1,
        chunk=60,
        batch_size=16,
        num_samples=2,
        hidden=(16, 16),
        run_dir=str(tmp_path),
        progress=False,
    )
    env = E.make("hopper", backend="mjx", integrator="euler")
    run = FinetuneRun(config, env=env, dataset=_offline_rows())
    state, metrics, flags = run.finetune_fn(run.init_state(), run.offline)
    assert all(np.all(np.asarray(f)) for f in jax.tree.leaves(flags))
    assert np.isfinite(np.asarray(metrics["td_loss"])).all()
    assert int(state.env_steps[0]) == 60
    finished = int(state.buffer.size[0])  # whole episodes only: those that ended in 60 steps
    assert finished + int(state.episodes.length[0, 0]) == 60 and finished > 0
    mngr = checkpoint.manager(tmp_path / "checkpoints")
    checkpoint.save(mngr, 60, state)
    restored = checkpoint.restore(mngr, run.init_state())
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.asarray(restored.env.pipeline_state.act).size == 0


def test_online_sac_warms_up_trains_and_evaluates_on_mjx(tmp_path):
    """The online SAC run on MJX, 2 vmapped seeds: random warm-up and training chunks store every
    transition at once (no episode log), metrics stay finite, and the final evaluation runs on
    MJX states. Euler integration, as above."""
    from rlgen.train.runner import OnlineConfig, OnlineRun

    config = OnlineConfig(
        env="hopper",
        backend="mjx",
        seeds=2,
        steps=100,
        warmup=40,
        chunk=30,
        batch_size=16,
        buffer_size=1_000,
        hidden=(16, 16),
        eval_every=0,
        eval_episodes=1,
        run_dir=str(tmp_path),
        progress=False,
    )
    run = OnlineRun(config, env=E.make("hopper", backend="mjx", integrator="euler"))
    results = run.run()
    assert results["env_steps_per_seed"] == 100
    np.testing.assert_array_equal(np.asarray(run.state.buffer.size), [100, 100])
    obs = np.asarray(run.state.buffer.data.obs[:, :100])
    assert np.isfinite(obs).all() and not np.array_equal(obs[0], obs[1])
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["env_steps"] for r in rows] == [40, 70, 100]
    assert all(np.isfinite(r["critic_loss"]) for r in rows[1:])
    returns = results["final_eval_return_per_seed"]
    assert len(returns) == 2 and np.isfinite(returns).all()
    assert [e["step"] for e in results["evaluations"]] == [100]


def test_gpu_check_dry_run_writes_every_section(tmp_path):
    """``python -m benchmarks.gpu_check --dry-run``: every part at toy size writes its section
    (parity on MJX, whose hopper programs come from the compilation cache after the parity
    tests in this file; the rest on C MuJoCo)."""
    from benchmarks import gpu_check

    report = gpu_check.run(tmp_path, budget_s=600, dry_run=True)
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(saved["parts"]) == list(gpu_check.PARTS)
    assert all(p["status"] == "ok" for p in saved["parts"].values()), report
    page = (tmp_path / "gpu_check.md").read_text()
    assert all(f"## {name}: ok" in page for name in gpu_check.PARTS)
    parity = saved["parts"]["mjx"]["result"]["parity"][0]
    assert parity["obs_err_max"] < 1e-3 and parity["terminations_agree"]
    run = saved["parts"]["finetune"]["result"]
    sizes = gpu_check.DRY.finetune
    assert run["finite"] and run["pretrain_updates"] == sizes["pretrain_steps"]
    assert run["env_steps_per_seed"] == sizes["steps"]
    assert all(0 < rows <= sizes["steps"] for rows in run["online_rows_per_seed"])
