"""The transition schema shared by datasets, replay buffers, agents and generators."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

FIELDS = ("obs", "action", "reward", "next_obs", "terminal", "truncated", "mc_return")


@flax.struct.dataclass
class Transition:
    """One transition, or any stack of them (leading axes are batch axes).

    ``terminal`` stops bootstrapping; ``truncated`` marks a time-limit cut that does not.
    ``mc_return`` is the discounted return-to-go of the trajectory from this step on
    (Cal-QL's V_mu(s)); zero where unknown. All fields are float32.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminal: jax.Array
    truncated: jax.Array
    mc_return: jax.Array

    @classmethod
    def zeros(cls, obs_dim: int, action_dim: int, leading: tuple[int, ...] = ()) -> Transition:
        """An all-zero transition stack with the given leading (batch) shape."""
        scalar = jnp.zeros(leading, jnp.float32)
        return cls(
            obs=jnp.zeros((*leading, obs_dim), jnp.float32),
            action=jnp.zeros((*leading, action_dim), jnp.float32),
            reward=scalar,
            next_obs=jnp.zeros((*leading, obs_dim), jnp.float32),
            terminal=scalar,
            truncated=scalar,
            mc_return=scalar,
        )

    @property
    def obs_dim(self) -> int:
        return self.obs.shape[-1]

    @property
    def action_dim(self) -> int:
        return self.action.shape[-1]

    def __len__(self) -> int:
        return self.reward.shape[0]


def concat(parts: list[Transition], axis: int = 0) -> Transition:
    """Concatenate transition stacks along a batch axis."""
    return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=axis), *parts)
