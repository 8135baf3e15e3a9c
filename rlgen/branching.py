"""A branch that stays a branch under ``vmap``.

``jax.vmap`` turns ``lax.cond`` with a batched predicate into a select that runs both branches
for every element. The online loop branches on rare events (an env's episode ending: reset its
physics, write its episode back with Monte-Carlo returns), and it is vmapped over seeds, so
that work would run at every step. :func:`cond_any` takes the branch once for the whole batch
when any element's predicate holds, which is exact for branches that leave the elements whose
predicate is false as ``false_fn`` would.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap


def cond_any(pred: jax.Array, true_fn: Callable, false_fn: Callable, operand):
    """``lax.cond(pred, true_fn, false_fn, operand)``; under ``vmap``, ``true_fn`` runs on the
    whole batch if ``pred`` holds for any element, and ``false_fn`` otherwise.

    Contract: wherever ``pred`` is false, ``true_fn(operand)`` must equal ``false_fn(operand)``
    (e.g. a per-element masked update whose mask is false), so that running it on those
    elements changes nothing.
    """

    @custom_vmap
    def branch(pred, operand):
        return jax.lax.cond(pred, true_fn, false_fn, operand)

    @branch.def_vmap
    def batched(axis_size, in_batched, pred, operand):
        pred_batched, operand_batched = in_batched
        operand = jax.tree.map(
            lambda x, b: x if b else jnp.broadcast_to(x, (axis_size, *jnp.shape(x))),
            operand,
            operand_batched,
        )
        # recursive, so that an outer vmap level also keeps the branch
        out = cond_any(
            jnp.any(pred) if pred_batched else pred,
            jax.vmap(true_fn),
            jax.vmap(false_fn),
            operand,
        )
        return out, jax.tree.map(lambda _: True, out)

    return branch(pred, operand)
