"""Start (or join) Ray the same way everywhere."""

from __future__ import annotations

import logging
import os
from typing import Any


def ensure_ray(**kwargs: Any) -> bool:
    """Make sure Ray is up; returns True when this call started it (the caller then owns the shutdown).

    With $RAY_ADDRESS set (a SLURM job after workflow/scripts/ray_on_slurm.sh, or a user's cluster) this joins that
    cluster. Otherwise it starts a local instance of its own: never `address=None`, with which Ray would join
    whatever cluster another process on the machine last recorded in /tmp/ray.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    kwargs.setdefault("include_dashboard", False)
    kwargs.setdefault("logging_level", logging.WARNING)
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", **kwargs)
    return True
