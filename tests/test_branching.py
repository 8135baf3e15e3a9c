"""cond_any: lax.cond's result, with the branch kept (not turned into a select) under vmap."""

import jax
import jax.numpy as jnp
import numpy as np

from rlgen.branching import cond_any


def counting_branch(calls: list):
    """A true branch that adds 1 where ``done`` (a no-op elsewhere) and counts its executions
    through a host callback, which runs only when the branch is taken."""

    def count(x):
        calls.append(1)
        return x

    def true_fn(s):
        shape = jax.ShapeDtypeStruct(s["x"].shape, s["x"].dtype)
        x = jax.pure_callback(count, shape, s["x"], vmap_method="broadcast_all")
        return {**s, "x": jnp.where(s["done"], x + 1.0, s["x"])}

    return lambda s: cond_any(s["done"], true_fn, lambda s: s, s)


def test_unbatched_is_lax_cond():
    calls = []
    step = jax.jit(counting_branch(calls))
    assert float(step({"x": 1.0, "done": False})["x"]) == 1.0 and not calls
    assert float(step({"x": 1.0, "done": True})["x"]) == 2.0 and len(calls) == 1


def test_under_vmap_the_branch_runs_once_and_only_when_some_element_needs_it():
    calls = []
    step = jax.jit(jax.vmap(counting_branch(calls)))
    state = {
        "x": jnp.arange(4.0),
        "done": jnp.zeros(4, bool),
        "key": jax.random.split(jax.random.key(0), 4),
    }
    np.testing.assert_array_equal(step(state)["x"], [0, 1, 2, 3])
    assert not calls  # lax.cond under vmap would have run the callback here
    state["done"] = jnp.array([False, True, False, False])
    np.testing.assert_array_equal(step(state)["x"], [0, 2, 2, 3])
    assert len(calls) == 1


def test_nested_vmaps_keep_the_branch():
    calls = []
    step = jax.jit(jax.vmap(jax.vmap(counting_branch(calls))))
    state = {"x": jnp.arange(4.0).reshape(2, 2), "done": jnp.zeros((2, 2), bool)}
    step(state)
    assert not calls
    state["done"] = jnp.array([[False, False], [True, False]])
    np.testing.assert_array_equal(step(state)["x"], [[0, 1], [3, 3]])
    assert len(calls) == 1


def test_unbatched_operands_are_broadcast():
    """A batched predicate with an operand that is not batched: every output is batched."""

    def add_where_done(done, x):
        true_fn = lambda o: (o[0], jnp.where(o[0], o[1] + 1.0, o[1]))  # noqa: E731
        return cond_any(done, true_fn, lambda o: o, (done, x))[1]

    out = jax.vmap(add_where_done, (0, None))(jnp.array([True, False]), jnp.ones(3))
    np.testing.assert_array_equal(out, [[2, 2, 2], [1, 1, 1]])
