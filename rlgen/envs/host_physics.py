"""C MuJoCo physics called from jitted JAX code through `jax.pure_callback`.

Exact (float64, converged solver) and fast on CPU, but not differentiable. Under `vmap` the
callback receives the whole batch at once (`vmap_method="broadcast_all"`) and steps it on the
host with a pool of `MjData`, split over one thread per core. The state handed back to JAX is
`HostState`: the inputs of the next step (qpos, qvel, solver warmstart) plus the outputs the
envs read. Each direction crosses the callback as one packed float32 vector per env, since
every array passed costs a transfer (~25 us each on CPU).
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct


@struct.dataclass
class HostState:
    """Physics state of one env (arrays only, float32)."""

    qpos: jax.Array
    qvel: jax.Array
    qacc_warmstart: jax.Array
    xpos: jax.Array  # (nbody, 3) body positions from the kinematics MuJoCo computed last
    cfrc_ext: jax.Array  # (nbody, 6) external forces; zero unless contact forces are used


_INPUTS = ("qpos", "qvel", "qacc_warmstart", "ctrl")
_OUTPUTS = ("qpos", "qvel", "qacc_warmstart", "xpos", "cfrc_ext")


class HostPhysics:
    """Steps `HostState`s with `mujoco.mj_step`; `frame_skip` MuJoCo steps per env step."""

    def __init__(self, model: mujoco.MjModel, frame_skip: int, contact_forces: bool = False):
        self.model = model
        self._frame_skip = frame_skip
        self._contact_forces = contact_forces
        self._pool: list[mujoco.MjData] = []
        self._lock = threading.Lock()
        data = mujoco.MjData(model)
        self._in_splits = np.cumsum([getattr(data, k).size for k in _INPUTS])[:-1]
        self._out_shapes = [getattr(data, k).shape for k in _OUTPUTS]
        self._out_splits = np.cumsum([getattr(data, k).size for k in _OUTPUTS])
        self._out_size = int(self._out_splits[-1])

    def init(self, qpos: jax.Array, qvel: jax.Array) -> HostState:
        """State at (qpos, qvel) with zero warmstart. Only kinematics are computed: they are all
        an observation reads, and a step recomputes everything else from qpos and qvel."""
        return self._call(False, qpos, qvel, jnp.zeros_like(qvel), jnp.zeros(self.model.nu))

    def step(self, state: HostState, ctrl: jax.Array) -> HostState:
        """Hold `ctrl` for `frame_skip` steps; then fill `cfrc_ext` if contact forces are used."""
        return self._call(True, state.qpos, state.qvel, state.qacc_warmstart, ctrl)

    @staticmethod
    def cfrc_ext(state: HostState) -> jax.Array:
        return state.cfrc_ext

    def _call(self, advance: bool, *inputs: jax.Array) -> HostState:
        packed = jnp.concatenate([jnp.asarray(x, jnp.float32) for x in inputs])
        out = jax.ShapeDtypeStruct((self._out_size,), jnp.float32)
        host = lambda x: self._host(advance, np.asarray(x))
        flat = jax.pure_callback(host, out, packed, vmap_method="broadcast_all")
        parts = jnp.split(flat, self._out_splits[:-1], axis=-1)
        return HostState(*(p.reshape(s) for p, s in zip(parts, self._out_shapes, strict=True)))

    def _host(self, advance: bool, packed: np.ndarray) -> np.ndarray:
        """Step (or, if not `advance`, only run kinematics on) a batch of any leading shape."""
        batch = packed.shape[:-1]
        rows = packed.reshape(-1, packed.shape[-1])
        out = np.empty((len(rows), self._out_size), np.float32)
        with self._lock:
            while len(self._pool) < len(rows):
                self._pool.append(mujoco.MjData(self.model))
            chunks = np.array_split(np.arange(len(rows)), min(_THREADS, len(rows)))
            run = lambda idx: self._run_rows(advance, rows, out, idx)
            if len(chunks) == 1:
                run(chunks[0])
            else:  # MuJoCo releases the GIL while it steps, so threads use all cores
                list(_executor().map(run, chunks))
        return out.reshape(*batch, self._out_size)

    def _run_rows(self, advance: bool, rows: np.ndarray, out: np.ndarray, idx: np.ndarray):
        m = self.model
        for i in idx:
            d = self._pool[i]
            for name, x in zip(_INPUTS, np.split(rows[i], self._in_splits), strict=True):
                getattr(d, name)[:] = x
            if advance:
                mujoco.mj_step(m, d, nstep=self._frame_skip)
                if self._contact_forces:
                    mujoco.mj_rnePostConstraint(m, d)
            else:
                mujoco.mj_kinematics(m, d)
                d.cfrc_ext[:] = 0.0  # as Gymnasium after a reset
            out[i] = np.concatenate([getattr(d, k).ravel() for k in _OUTPUTS])


_THREADS = os.cpu_count() or 1


@functools.cache
def _executor() -> ThreadPoolExecutor:
    """Threads shared by all HostPhysics instances."""
    return ThreadPoolExecutor(_THREADS, thread_name_prefix="rlgen-mujoco")
