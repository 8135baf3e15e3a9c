"""D4RL-normalised scores: 100 * (return - random) / (expert - random).

Reference returns are D4RL's published ones. rlgen's tasks are Gymnasium v5, whose MDPs differ
slightly from D4RL's v2 (e.g. Walker2d foot friction, Ant's observation and contact cost), so
normalised scores are comparable in scale, not identical in meaning.
"""

from __future__ import annotations

import numpy as np

REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    # env: (random policy return, expert policy return)
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}


def normalized_score(env: str, returns):
    """D4RL-normalised score (0 = random, 100 = expert) of raw episode return(s) on ``env``."""
    key = env.split("-")[0].lower()
    if key not in REFERENCE_RETURNS:
        raise KeyError(
            f"no D4RL reference returns for env '{env}'; known: {sorted(REFERENCE_RETURNS)}"
        )
    low, high = REFERENCE_RETURNS[key]
    return 100.0 * (np.asarray(returns) - low) / (high - low)
