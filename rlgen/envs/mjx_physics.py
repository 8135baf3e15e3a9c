"""MJX physics: MuJoCo in JAX, for accelerators (jit, vmap and grad all work).

MJX runs the constraint solver in a `while_loop` that stops when the solver converges or hits
`iterations`. Under `vmap` the loop runs until the slowest env converges, so the XML default of
100 Newton iterations (50 line-search steps) makes a batch run at the pace of its worst contact.
rlgen caps it at 8 Newton iterations and 16 line-search steps (`DEFAULT_SOLVER`), the cheapest
setting measured that stays at MJX's float32 parity floor. Measured on a 2-core CPU against
Gymnasium (C MuJoCo, float64) one env step at a time from identical states along 300
random-action steps: max abs obs error; steps/s of auto-resetting batches of 64 (rough: the
CPU was shared with other jobs while measuring).

    iter/ls       hopper  walker2d  halfcheetah  ant     hopper, ant steps/s @ batch 64
    100/50 (XML)  4e-6    9e-5      4e-4         6e-2    378, 44
    8/16 default  4e-6    9e-5      4e-4         1e-1    877, 150
    4/8           4e-6    5e-2      4e-4         9e-1    657, 117
    1/4           1e+0    9e+0      1e+1         6e+0    1394, 541

Hopper, Walker2d and Ant's model files integrate with RK4: four forward passes per MuJoCo step,
which MJX unrolls, so their step compiles about 4x slower than with Euler (hopper: 19 s vs 5 s on
a 2-core CPU under the test suite's XLA flags). `integrator="euler"` replaces it (one pass per
step): on that CPU an auto-resetting batch of 64 hoppers runs 2550 steps/s instead of 780 and
compiles in 22 s instead of 41 (XLA defaults; `python -m benchmarks.envs --envs hopper --backends
mjx --batch 64 --steps 100 --integrator euler`), but the dynamics are no longer Gymnasium's; the
default keeps the file's integrator.

Ant's floor is high because a float32 elliptic-cone solve moves single clipped contact forces by
a few percent (float64 MJX matches to 1e-3; median errors are <= 4e-6 everywhere at 8/16). With
1/4 the solver stays unconverged on contact steps and the dynamics drift from Gymnasium. Pass
`iterations` / `ls_iterations` / `solver` to `rlgen.envs.make` to trade parity for speed.
"""

from __future__ import annotations

import contextlib
import copy
import io

import jax
import jax.numpy as jnp
import mujoco

from rlgen.envs.physics import DEFAULT_SOLVER


def _import_mjx():
    """``mujoco.mjx`` without the "Failed to import warp / mujoco_warp" lines it prints when the
    optional Warp backend is absent (rlgen uses MJX's JAX implementation); anything else it
    prints passes through."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        from mujoco import mjx
    warp_lines = ("Failed to import warp:", "Failed to import mujoco_warp:")
    for line in captured.getvalue().splitlines():
        if not line.startswith(warp_lines):
            print(line)
    return mjx


mjx = _import_mjx()

# Full float32 matmuls even where the default is lower (TF32 on recent NVIDIA GPUs): the
# matrices are tiny, and parity with C MuJoCo needs the precision.
_MATMUL_PRECISION = "highest"

_SOLVERS = {"newton": mujoco.mjtSolver.mjSOL_NEWTON, "cg": mujoco.mjtSolver.mjSOL_CG}
_INTEGRATORS = {"euler": mujoco.mjtIntegrator.mjINT_EULER, "rk4": mujoco.mjtIntegrator.mjINT_RK4}


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
        integrator: str | None = DEFAULT_SOLVER["integrator"],
    ):
        if solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {sorted(_SOLVERS)}, got {solver!r}")
        if integrator not in (None, *_INTEGRATORS):
            raise ValueError(
                f"integrator must be None or one of {sorted(_INTEGRATORS)}, got {integrator!r}"
            )
        model = copy.copy(model)  # the solver options are ours to change
        model.opt.iterations = iterations
        model.opt.ls_iterations = ls_iterations
        model.opt.solver = _SOLVERS[solver]
        if integrator is not None:
            model.opt.integrator = _INTEGRATORS[integrator]
        self.model = model
        self._mx = mjx.put_model(model, impl="jax")  # not Warp: rne_postconstraint needs JAX
        self._frame_skip = frame_skip
        self._contact_forces = contact_forces

    def init(self, qpos: jax.Array, qvel: jax.Array) -> mjx.Data:
        """State at (qpos, qvel) with zero warmstart. Only kinematics are computed: they are all
        an observation reads, and a step recomputes everything else from qpos and qvel."""
        data = mjx.make_data(self._mx).replace(qpos=qpos, qvel=qvel)
        with jax.default_matmul_precision(_MATMUL_PRECISION):
            return mjx.kinematics(self._mx, data)

    def step(self, data: mjx.Data, ctrl: jax.Array) -> mjx.Data:
        """Hold `ctrl` for `frame_skip` steps; then fill `cfrc_ext` if contact forces are used."""
        data = data.replace(ctrl=ctrl)
        with jax.default_matmul_precision(_MATMUL_PRECISION):
            data = jax.lax.fori_loop(0, self._frame_skip, lambda _, d: mjx.step(self._mx, d), data)
            if self._contact_forces:
                data = mjx.rne_postconstraint(self._mx, data)
        return data

    @staticmethod
    def cfrc_ext(data: mjx.Data) -> jax.Array:
        """External (contact) force on each body, (nbody, 6), as after `mj_rnePostConstraint`."""
        return jnp.asarray(data._impl.cfrc_ext)
