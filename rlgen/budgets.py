"""Run budgets by scale, declared once: the demo's and the paper protocols' scales are these
bases with their differences spelled out (``CPU.but(pretrain_steps=5_000)``)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long and how wide a multi-seed run is: fields of ``FinetuneConfig`` (and, without
    the pretraining ones, of ``OnlineConfig``)."""

    seeds: int
    pretrain_steps: int
    steps: int
    warmup: int
    chunk: int
    pretrain_eval_every: int
    eval_every: int
    eval_episodes: int
    batch_size: int
    hidden: tuple[int, ...]

    def but(self, **changes) -> Budget:
        """This budget with ``changes``."""
        return dataclasses.replace(self, **changes)

    def overrides(self) -> dict:
        """The budget as config overrides."""
        return dataclasses.asdict(self)


# the largest runs that fit a few minutes per arm on a 2-core CPU
CPU = Budget(
    seeds=4,
    pretrain_steps=3_000,
    steps=6_000,
    warmup=1_000,
    chunk=500,
    pretrain_eval_every=1_000,
    eval_every=1_000,
    eval_episodes=4,
    batch_size=128,
    hidden=(128, 128),
)
# seconds-scale checks of a whole pipeline, in CI
SMOKE = Budget(
    seeds=2,
    pretrain_steps=100,
    steps=400,
    warmup=200,
    chunk=100,
    pretrain_eval_every=0,
    eval_every=200,
    eval_episodes=1,
    batch_size=32,
    hidden=(16, 16),
)
