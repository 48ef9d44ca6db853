"""A local Ray cluster on 2 CPUs, started once for tests/ray and shut down at the end."""

from __future__ import annotations

import os

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
pytest.importorskip("ray.data", reason="the ray extra is not installed")


@pytest.fixture(scope="session")
def ray_cluster():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()
