"""Peer learners for ``benchmarks.parity``, each a script run in its own virtual environment.

The scripts import nothing from rlgen (their environments do not have it): they read a JSON job
from argv, train and evaluate, and write a JSON result atomically. ``PEERS`` pins what each
environment installs; ``benchmarks.parity`` builds the environments from it.
"""

PEERS = {
    # d3rlpy 2.8 pins gymnasium 1.0.0; in its own venv it cannot downgrade rlgen's gymnasium.
    "d3rlpy": ("d3rlpy==2.8.1", "gymnasium[mujoco]==1.0.0", "mujoco==3.17.0", "torch"),
    "sbx": ("sbx-rl==0.28.0", "gymnasium[mujoco]==1.4.0", "mujoco==3.17.0", "jax==0.10.2"),
}
