"""Start (or join) Ray the same way everywhere."""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)

# Ray gives a new local node 30 s (fixed in ray/_private/node.py) to register with its GCS; on a laptop whose cores
# are all busy (a DAG running several jobs side by side) that can pass, and the whole stage would fail. Such a
# start is retried; joining an existing cluster is not.
LOCAL_START_ATTEMPTS = 3


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
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kwargs)
        return True
    for attempt in range(1, LOCAL_START_ATTEMPTS + 1):
        try:
            ray.init(address="local", **kwargs)
            return True
        except Exception as e:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(e) or attempt == LOCAL_START_ATTEMPTS:
                raise
            log.warning(
                "local Ray node did not start in time (attempt %d of %d): retrying",
                attempt,
                LOCAL_START_ATTEMPTS,
            )
            ray.shutdown()  # stops the processes the failed start left behind
    raise AssertionError("unreachable")
