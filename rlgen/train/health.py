"""Stop a run at the first non-finite loss or parameter, naming the seed, step and quantity."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


class NonFiniteError(FloatingPointError):
    """A loss or parameter became NaN/inf; the last good checkpoint is left as it was."""


def finite_flags(metrics: dict, params) -> dict[str, jax.Array]:
    """Per-quantity finiteness (traced; vmap gives one flag per seed)."""
    flags = {f"metric '{k}'": jnp.all(jnp.isfinite(v)) for k, v in metrics.items()}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            name = f"parameter '{jax.tree_util.keystr(path)}'"
            flags[name] = jnp.all(jnp.isfinite(leaf))
    return flags


def check(flags: dict[str, np.ndarray], step: int) -> None:
    """Raise :class:`NonFiniteError` for the first seed/quantity whose flag is false."""
    for name, per_seed in flags.items():
        bad = np.flatnonzero(~np.asarray(per_seed))
        if bad.size:
            raise NonFiniteError(
                f"non-finite {name} in seed {int(bad[0])} at env step {step}; "
                "the run stopped and the last good checkpoint was kept"
            )
