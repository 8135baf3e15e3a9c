"""The evaluations of a run: per-seed returns and D4RL-normalised scores by phase and step,
appended to ``run_dir/evaluations.jsonl`` as they happen (one JSON record per line) so a resumed
run, and the experiment reports, see every evaluation of every session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rlgen.data.scores import normalized_score
from rlgen.train import distributed

# phases in run order: offline pretraining, online fine-tuning, online training from scratch
PHASES = ("pretrain", "finetune", "online")


class EvaluationLog:
    """Evaluations of one run directory; ``resume`` reads back those already on disk."""

    def __init__(self, run_dir: str | Path, env: str, resume: bool):
        self.path = Path(run_dir) / "evaluations.jsonl"
        self.env = env
        records = []
        if resume and self.path.exists():
            records = [json.loads(line) for line in open(self.path) if line.strip()]
        self._records = {(r["phase"], r["step"]): r for r in records}

    def add(self, phase: str, step: int, returns: np.ndarray) -> dict[str, np.ndarray]:
        """Record per-seed ``returns`` at ``step`` of ``phase``; returns them with their scores."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        returns = np.asarray(returns)
        scores = normalized_score(self.env, returns)
        record = {"phase": phase, "step": step}
        record.update({"return": returns.tolist(), "score": scores.tolist()})
        self._records[(phase, step)] = record
        if distributed.is_main():
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        return {"eval_return": returns, "eval_score": scores}

    def records(self) -> list[dict]:
        """Every evaluation in run order (phase, then step)."""
        return sorted(self._records.values(), key=lambda r: (PHASES.index(r["phase"]), r["step"]))
