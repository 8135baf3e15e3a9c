"""Shared helpers for benchmark scripts: timing, compile timing, a printed table, a JSON file.

Every results file holds the device, date, library versions and compilation-cache setting, the
benchmark's ``rows``, and for ``benchmarks.run_all``: ``summary`` (headline figures),
``compile_s`` (seconds per compiled phase) and ``peer`` (the library compared against in the
same run, "not installed", or "none").
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from rlgen import runinfo


class Timing(NamedTuple):
    seconds: float  # median steady-state call
    compile_s: float  # first call minus a steady call: tracing and compiling


def time_call(fn: Callable[[], object], repeats: int = 5) -> Timing:
    """Time ``fn()`` with its outputs blocked on: a first call, then the median of ``repeats``."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    median = sorted(times)[len(times) // 2]
    return Timing(median, max(first - median, 0.0))


def aot(fn, *args) -> tuple[Callable, float]:
    """A jitted ``fn`` lowered and compiled ahead of time for ``args``, and the seconds it took."""
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - start


def steady_rate(metrics: str | os.PathLike, key: str) -> float:
    """Median ``key`` over a run's logged training chunks (``metrics.jsonl``), without the
    first (it compiles), the warm-up and those that evaluated."""
    rows = [r for r in map(json.loads, open(metrics)) if key in r and "phase_warmup" not in r]
    rates = [r[key] for r in rows[1:] if "eval_return" not in r]
    return float(np.median(rates or [r[key] for r in rows]))


def peer_version(*packages: str) -> str:
    """'name version, ...' for the installed packages, or 'not installed' naming the missing."""
    found, missing = [], []
    for name in packages:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return f"not installed ({', '.join(missing)})" if missing else ", ".join(found)


def fmt(value) -> str:
    """A table cell: floats to 4 significant digits (thousands separated), others as text."""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def print_table(rows: list[dict], title: str) -> None:
    if not rows:
        return
    cols = list(dict.fromkeys(c for r in rows for c in r))
    widths = [max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in cols]
    print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(fmt(r.get(c, "")).rjust(w) for c, w in zip(cols, widths, strict=True)))


def compilation_cache() -> str:
    """Where compiled programs are cached across processes, or "off" (compile times are cold)."""
    if jax.config.jax_enable_compilation_cache and jax.config.jax_compilation_cache_dir:
        return str(jax.config.jax_compilation_cache_dir)
    return "off"


def write_json(path: str | os.PathLike, record: dict) -> Path:
    """Write ``record`` to ``path`` atomically (NaN as null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(nan_to_none(record), f, indent=2, default=str)
    os.replace(tmp, path)
    return path


def nan_to_none(obj):
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [nan_to_none(v) for v in obj]
    return obj


def write_results(
    path: str | os.PathLike,
    name: str,
    rows: list[dict],
    summary: dict | None = None,
    compile_s: dict | None = None,
    peer: str = "none",
    **extra,
) -> Path:
    """Write ``rows`` with the device, versions, date and the run_all fields to ``path``."""
    record = {
        "benchmark": name,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **runinfo.describe(),
        "compilation_cache": compilation_cache(),
        "summary": summary or {},
        "compile_s": compile_s or {},
        "peer": peer,
        **extra,
        "rows": rows,
    }
    path = write_json(path, record)
    print(f"wrote {path}")
    return path
