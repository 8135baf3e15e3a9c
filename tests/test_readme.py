"""The README's embedding example runs as written."""

import re
from pathlib import Path

from conftest import run_python


def test_embedding_example_runs():
    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("## Embedding rlgen in your own JAX code", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    check = "\nprint(synthetic.obs.shape, metrics['td_loss'].shape)"
    out = run_python("-c", code + check)
    assert "(1000, 11) (8,)" in out
