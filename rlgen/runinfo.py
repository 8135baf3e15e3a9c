"""Versions and device facts recorded with every run and benchmark result."""

from __future__ import annotations

import importlib.metadata
import os
import platform

import jax

PACKAGES = (
    "rlgen",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "chex",
    "mujoco",
    "mujoco-mjx",
    "brax",
    "numpy",
)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_info() -> dict[str, object]:
    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
    }


def cpu_model() -> str:
    """The host CPU's model name (Linux), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe() -> dict[str, object]:
    """Everything needed to say where a number came from."""
    return {"versions": versions(), "device": device_info()}
