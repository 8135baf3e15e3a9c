import os
import subprocess
import sys
from pathlib import Path

# The suite runs on the CPU (CI has no GPU), and compiles cheaply: it is dominated by compile
# time. Backend optimisation off, XLA:CPU's older (non-fusion-emitter) code generation and no
# expensive LLVM passes compile a Cal-QL fine-tuning run's programs 2.7x faster than XLA's
# defaults (3.2 vs 8.6 s on a 2-core CPU) and an MJX env step about 1.5x faster; MJX parity
# with Gymnasium still holds to the same tolerances under them (test_envs_mjx.py).
QUICK_COMPILE = (
    "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false "
    "--xla_llvm_disable_expensive_passes=true"
)
ROOT = Path(__file__).parents[1]
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", QUICK_COMPILE)
# Test workers and child processes share compiled programs (as `make test` sets it too), the
# small ones included: JAX skips caching programs that compile in under a second by default, and
# the suite compiles hundreds of those, many of them again in CLI child processes.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def run_python(*args: str, env: dict | None = None) -> str:
    """Run ``python *args`` from the repository root in a child process (with the suite's XLA
    flags). Returns the output; a failure raises with the output's tail."""
    full_env = {**os.environ, "XLA_FLAGS": QUICK_COMPILE, **(env or {})}
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"python {' '.join(args)} failed:\n{output[-4000:]}")
    return output


def random_batch(seed, obs_dim, action_dim, lead, random_terminals=False, mc_return=0.0):
    """A float32 Transition of Gaussian observations and rewards and uniform [-1, 1] actions with
    leading shape ``lead``; no terminals unless ``random_terminals`` (fair coin flips)."""
    import numpy as np

    from rlgen.data.transition import Transition  # here: jax's environment is set above first

    rng = np.random.default_rng(seed)
    obs, action = rng.normal(size=(*lead, obs_dim)), rng.uniform(-1.0, 1.0, (*lead, action_dim))
    reward, next_obs = rng.normal(size=lead), rng.normal(size=(*lead, obs_dim))
    terminal = rng.integers(0, 2, lead) if random_terminals else np.zeros(lead)
    fields = (obs, action, reward, next_obs, terminal, np.zeros(lead), np.full(lead, mc_return))
    return Transition(*(np.asarray(x, np.float32) for x in fields))


# RLGEN_COMPILE_REPORT=path: append each test's seconds spent tracing, lowering and compiling
# (JAX's compile events) to that file, one JSON line per test, to see what the suite spends
# compiling (child processes are not counted).
if os.environ.get("RLGEN_COMPILE_REPORT"):
    import json

    import jax.monitoring
    import pytest

    _COMPILE_EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )
    _compile_s = [0.0]

    def _on_event(name, seconds, **_):
        if name in _COMPILE_EVENTS:
            _compile_s[0] += seconds

    jax.monitoring.register_event_duration_secs_listener(_on_event)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        before = _compile_s[0]
        yield
        with open(os.environ["RLGEN_COMPILE_REPORT"], "a") as f:
            f.write(json.dumps({"test": item.nodeid, "compile_s": _compile_s[0] - before}) + "\n")


# Test files by seconds of work on a 2-core CPU (pytest --durations=0, 2026-12-01), largest
# first. `make test` hands whole files to its 2 workers (--dist loadfile, so module fixtures are
# built once) in collection order (--no-loadscope-reorder: xdist would order them by number of
# tests, which started the 199 s MJX file, 6 tests, near the end); starting with the largest lets
# the small ones fill in at the end (longest-processing-time-first). Files not listed (each
# under 15 s) follow in their usual order.
FILES_BY_COST = (
    "test_envs_mjx.py",  # 199 s
    "test_finetune.py",  # 116
    "test_online.py",  # 54
    "test_generators.py",  # 38
    "test_offline_learning.py",  # 35
    "test_distributed.py",  # 34
    "test_cli.py",  # 33
    "test_sweep.py",  # 32
    "test_synther.py",  # 28
    "test_diffusion.py",  # 25
    "test_parity.py",  # 24
    "test_sac.py",  # 24
    "test_energy.py",  # 22
    "test_readme.py",  # 21
    "test_envs.py",  # 19
    "test_generate.py",  # 19
    "test_dynamics.py",  # 17
    "test_experiments_more.py",  # 15
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(FILES_BY_COST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order in a file kept
