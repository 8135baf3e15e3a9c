"""MJX physics: MuJoCo in JAX, for accelerators (jit, vmap and grad all work).

MJX runs the constraint solver in a `while_loop` that stops when the solver converges or hits
`iterations`. Under `vmap` the loop runs until the slowest env converges, so the XML default of
100 Newton iterations (50 line-search steps) makes a batch run at the pace of its worst contact.
rlgen caps it at 4 Newton iterations and 8 line-search steps (`DEFAULT_SOLVER`). Measured on a
2-core CPU against converged C MuJoCo (float64), one env step from identical states along
random-action trajectories, max abs obs error (velocities dominate):

    setting (iter/ls)   hopper   walker2d  halfcheetah  ant(elliptic)  hopper steps/s @64
    100/50 (XML)        2e-5     1e-4      3e-4         3e-5           415
    4/8 (default)       2e-5     1e-4      3e-4         3e-5           ~2,400
    1/4                 3e-3     6e-2      3e-4         2e-1           ~3,900

With 4/8 the error is the float32 floor of MJX itself (same as 100/50); 1/4 stays unconverged
on contact-rich steps and drifts from Gymnasium. Pass `iterations` / `ls_iterations` / `solver`
to `rlgen.envs.make` to trade parity for speed.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import mujoco
from mujoco import mjx

DEFAULT_SOLVER = {"iterations": 4, "ls_iterations": 8, "solver": "newton"}

_SOLVERS = {"newton": mujoco.mjtSolver.mjSOL_NEWTON, "cg": mujoco.mjtSolver.mjSOL_CG}


class MjxPhysics:
    """Steps `mjx.Data` states; `frame_skip` MuJoCo steps per env step."""

    def __init__(
        self,
        model: mujoco.MjModel,
        frame_skip: int,
        contact_forces: bool = False,
        iterations: int = DEFAULT_SOLVER["iterations"],
        ls_iterations: int = DEFAULT_SOLVER["ls_iterations"],
        solver: str = DEFAULT_SOLVER["solver"],
    ):
        model = copy.copy(model)  # the solver options are ours to change
        model.opt.iterations = iterations
        model.opt.ls_iterations = ls_iterations
        model.opt.solver = _SOLVERS[solver]
        self.model = model
        self.solver_settings = {
            "iterations": iterations, "ls_iterations": ls_iterations, "solver": solver
        }
        self._mx = mjx.put_model(model)
        self._frame_skip = frame_skip
        self._contact_forces = contact_forces

    def init(self, qpos: jax.Array, qvel: jax.Array) -> mjx.Data:
        """State at (qpos, qvel) with zero warmstart. Only kinematics are computed: they are all
        an observation reads, and a step recomputes everything else from qpos and qvel."""
        data = mjx.make_data(self._mx).replace(qpos=qpos, qvel=qvel)
        return mjx.kinematics(self._mx, data)

    def step(self, data: mjx.Data, ctrl: jax.Array) -> mjx.Data:
        """Hold `ctrl` for `frame_skip` steps; then fill `cfrc_ext` if contact forces are used."""
        data = data.replace(ctrl=ctrl)
        data = jax.lax.fori_loop(0, self._frame_skip, lambda _, d: mjx.step(self._mx, d), data)
        if self._contact_forces:
            data = mjx.rne_postconstraint(self._mx, data)
        return data

    @staticmethod
    def cfrc_ext(data: mjx.Data) -> jax.Array:
        """External (contact) force on each body, (nbody, 6), as after `mj_rnePostConstraint`."""
        return jnp.asarray(data._impl.cfrc_ext)
