"""``make bench``: every throughput benchmark, each writing its JSON under ``results/``.

On a CPU each runs at a CPU-sized scale; on a GPU at full scale. A failure is reported at the
end without stopping the others.
"""

from __future__ import annotations

import subprocess
import sys

import jax

CPU_ARGS = {
    "replay": [],
    "envs": ["--envs", "hopper", "--batch", "1", "64"],
    "online_sac": ["--quick", "--seeds", "1", "8"],
    "diffusion": ["--quick"],
}


def main() -> None:
    on_cpu = jax.default_backend() == "cpu"
    failed = []
    for name, cpu_args in CPU_ARGS.items():
        print(f"\n=== benchmarks.{name} ===", flush=True)
        cmd = [sys.executable, "-m", f"benchmarks.{name}", *(cpu_args if on_cpu else [])]
        if subprocess.run(cmd).returncode != 0:
            failed.append(name)
    if failed:
        sys.exit(f"benchmarks that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
