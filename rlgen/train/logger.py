"""Host-side logging of per-chunk metrics: JSONL + CSV, TensorBoard when installed, progress bar."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm


def summarize(per_seed: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean and standard deviation over seeds of every metric (arrays of shape (seeds,))."""
    out = {}
    for name, values in per_seed.items():
        values = np.asarray(values, np.float64)
        out[name] = float(values.mean())
        out[f"{name}_std"] = float(values.std())
    return out


class Logger:
    """Writes one row per call to ``metrics.jsonl`` / ``metrics.csv`` in ``run_dir``."""

    def __init__(self, run_dir: str | Path, total_steps: int, progress: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(self.run_dir / "metrics.jsonl", "a")  # noqa: SIM115
        self.csv_path = self.run_dir / "metrics.csv"
        self.csv_columns: list[str] | None = None
        self.tb = _tensorboard(self.run_dir)
        self.bar = tqdm(total=total_steps, unit="step", disable=not progress, dynamic_ncols=True)
        self.last_time = time.perf_counter()

    def log(
        self, step: int, row: dict[str, float], new_steps: int, new_updates: int, seeds: int = 1
    ) -> None:
        """Record ``row`` at per-seed env step ``step``; rates are aggregated over seeds."""
        now = time.perf_counter()
        elapsed = max(now - self.last_time, 1e-9)
        self.last_time = now
        row = {
            "env_steps": step,
            **row,
            "env_steps_per_s": new_steps * seeds / elapsed,
            "updates_per_s": new_updates / elapsed,
        }
        self.jsonl.write(json.dumps(row) + "\n")
        self.jsonl.flush()
        self._write_csv(row)
        if self.tb is not None:
            for name, value in row.items():
                self.tb.add_scalar(name, value, step)
        self.bar.update(new_steps)
        shown = {k: row[k] for k in ("eval_return", "train_return", "critic_loss") if k in row}
        shown.update(sps=row["env_steps_per_s"], ups=row["updates_per_s"])
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()})

    def _write_csv(self, row: dict) -> None:
        if self.csv_columns is None:
            self.csv_columns = list(row)
            new_file = not self.csv_path.exists()
            with open(self.csv_path, "a", newline="") as f:
                if new_file:
                    csv.writer(f).writerow(self.csv_columns)
        with open(self.csv_path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in self.csv_columns])

    def close(self) -> None:
        self.bar.close()
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


def _tensorboard(run_dir: Path):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tb"))
