"""Locust users of the fleet (loadtests/modes/fleet.py): the users of locustfile_io.py, through
each balancer in front of the hosts, every request counted under the balancer and the phase of
the run it started in (``haproxy a-roll``), every failure written down with its time.

The runner says where to go and what is happening through the environment:

- ``FLEET_FRONTS``: ``name=url`` of each balancer, comma-separated; the users are spread
  evenly over them (one user class each);
- ``FLEET_PHASE_FILE``: a file holding the name of the current phase, read 20 times a second;
- ``FLEET_FAILURES_FILE``: where each failure is appended as one JSON object (time, balancer,
  phase, error), for the runner to tell when the failures happened.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict

import gevent
import locustfile_io  # (the module, not its user class: locust would run that one too)
from locust import events
from locust.env import Environment

PHASE_FILE = os.environ.get("FLEET_PHASE_FILE", "")
FAILURES_FILE = os.environ.get("FLEET_FAILURES_FILE", "")
FRONTS = dict(item.split("=", 1) for item in os.environ.get("FLEET_FRONTS", "").split(",")
              if "=" in item)
POLL = 0.05  # seconds between two reads of the phase file

_phase = {"name": "start"}


def _follow_phase() -> None:
    while True:
        try:
            with open(PHASE_FILE) as fh:
                _phase["name"] = fh.read().strip() or _phase["name"]
        except OSError:
            pass
        gevent.sleep(POLL)


@events.init.add_listener
def _start_following(environment: Environment, **kwargs: object) -> None:
    if PHASE_FILE:
        gevent.spawn(_follow_phase)


@events.request.add_listener
def _write_down_failure(name: str, response_time: float, exception: Any, **kwargs: object) -> None:
    if exception is None or not FAILURES_FILE:
        return
    front, _, phase = name.partition(" ")
    with open(FAILURES_FILE, "a") as fh:
        fh.write(json.dumps({"time": time.time(), "ms": response_time, "front": front,
                             "phase": phase, "error": str(exception)}) + "\n")


class FleetUser(locustfile_io.IOBoundUser):
    """A user of examples/io_bound.py through one balancer (``front``)."""

    abstract = True
    front = ""
    # A request of this app takes under a second; one held 30 s is lost, not slow.
    network_timeout = 30.0
    connection_timeout = 30.0

    def request_name(self, path: str) -> str:
        return f"{self.front} {_phase['name']}"


def _user_classes() -> Dict[str, type]:
    return {f"{name.capitalize()}User": type(f"{name.capitalize()}User", (FleetUser,),
                                             {"front": name, "host": url, "abstract": False})
            for name, url in FRONTS.items()}


globals().update(_user_classes())
