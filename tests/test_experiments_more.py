"""The remaining paper protocols at smoke scale (split from test_experiments.py so the two
files run on different test workers)."""

import pytest
from test_experiments import check_smoke_scale


@pytest.mark.slow
@pytest.mark.parametrize("name", ["synther_offline", "synther_online", "mbaug_small_data"])
def test_protocol_smoke_scale(name, tmp_path):
    check_smoke_scale(name, tmp_path)
