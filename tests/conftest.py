import os
import subprocess
import sys
from pathlib import Path

# The suite runs on the CPU (CI has no GPU), and with XLA's backend optimisation off: the suite
# is dominated by compile time, which this roughly halves. MJX parity needs the default
# optimisation and runs in a child process (test_envs_mjx.py).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", QUICK_COMPILE := "--xla_backend_optimization_level=0")

ROOT = Path(__file__).parents[1]


def run_python(*args: str, env: dict | None = None, xla_optimisation: bool = False) -> str:
    """Run ``python *args`` from the repository root in a child process (XLA backend
    optimisation off unless ``xla_optimisation``). Returns the output; a failure raises with
    the output's tail."""
    flags = "" if xla_optimisation else QUICK_COMPILE
    full_env = {**os.environ, "XLA_FLAGS": flags, **(env or {})}
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"python {' '.join(args)} failed:\n{output[-4000:]}")
    return output
