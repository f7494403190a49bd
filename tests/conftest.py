"""Shared fixtures: one real server per worker class, started once per test module."""

import pytest

from helpers import Server


@pytest.fixture(scope="module", params=["gevent", "sync"])
def server(request):
    """The wsgi_app fixture app under each worker class (one worker, so PIDs can be compared)."""
    with Server(["-k", request.param, "-w", "1"]) as srv:
        srv.worker_class = request.param
        yield srv


@pytest.fixture(scope="module")
def gevent_server():
    with Server(["-k", "gevent", "-w", "1"]) as srv:
        srv.worker_class = "gevent"
        yield srv
