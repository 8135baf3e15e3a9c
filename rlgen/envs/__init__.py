"""Environments: Gymnasium-v5 MuJoCo locomotion in JAX, brax-style API.

    env = rlgen.envs.make("hopper")            # backend="auto": MJX on GPU/TPU, C MuJoCo on CPU
    state = jax.jit(env.reset)(key)
    state = jax.jit(env.step)(state, action)
    batched = rlgen.envs.AutoReset(env)        # vmapped, resets finished envs itself

`from_brax` brings brax.envs and MuJoCo Playground envs to the same API.
"""

from rlgen.envs.adapters import BraxAdapter, from_brax
from rlgen.envs.base import Env, State
from rlgen.envs.physics import resolve_backend
from rlgen.envs.registry import ENVS, make
from rlgen.envs.wrappers import AutoReset

__all__ = [
    "ENVS",
    "AutoReset",
    "BraxAdapter",
    "Env",
    "State",
    "from_brax",
    "make",
    "resolve_backend",
]
