"""Choice of physics backend: `mjx` (JAX, accelerators) or `mujoco` (C MuJoCo via callback)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import mujoco

from rlgen.envs.host_physics import HostPhysics

if TYPE_CHECKING:
    from rlgen.envs.mjx_physics import MjxPhysics

BACKENDS = ("auto", "mjx", "mujoco")
# MJX's solver cap (see mjx_physics's docstring) and integrator (None: the model file's own);
# defined here so checking the settings of a C MuJoCo env does not import MJX
DEFAULT_SOLVER = {"iterations": 8, "ls_iterations": 16, "solver": "newton", "integrator": None}


def resolve_backend(backend: str = "auto") -> str:
    """`auto` means `mjx` on an accelerator and `mujoco` on CPU."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "mjx" if jax.default_backend() != "cpu" else "mujoco"
    return backend


def make_physics(
    model: mujoco.MjModel,
    frame_skip: int,
    backend: str = "auto",
    contact_forces: bool = False,
    **solver,
) -> MjxPhysics | HostPhysics:
    """Physics for `model`. `solver` (iterations, ls_iterations, solver, integrator) applies to
    MJX only: C MuJoCo keeps the model's own (converged) settings."""
    unknown = set(solver) - set(DEFAULT_SOLVER)
    if unknown:
        raise TypeError(f"unknown solver settings: {sorted(unknown)}")
    if resolve_backend(backend) == "mjx":
        from rlgen.envs.mjx_physics import MjxPhysics  # imports MJX only when it is used

        return MjxPhysics(model, frame_skip, contact_forces, **solver)
    return HostPhysics(model, frame_skip, contact_forces)
