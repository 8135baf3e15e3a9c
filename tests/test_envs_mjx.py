"""MJX parity with Gymnasium, vmap and auto-reset (the checks in mjx_checks.py), run in a child
process with XLA's default optimisation: the rest of the suite compiles with it off
(conftest.py), which moves MJX's float32 results by more than the parity tolerances."""

import pytest
from conftest import run_python


@pytest.mark.slow
def test_mjx_checks_pass():
    out = run_python("-m", "pytest", "tests/mjx_checks.py", "-n", "0", xla_optimisation=True)
    assert " passed" in out and "failed" not in out
