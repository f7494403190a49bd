"""Locust users for the Flask hello world (examples/hello.py): ``GET /`` and nothing else.

The response must be a 2xx whose body says ``Hello, World!``; anything else (another status, a
redirect, a connection error, a timeout) counts as a failure. ``loadtests/run.py seeds`` uses it
to compare servers; by hand::

    locust -f loadtests/locustfile_hello.py --headless -u 50 -r 10 --run-time 5s \
        -H http://127.0.0.1:8000
"""

from __future__ import annotations

from locust import FastHttpUser, between, task

from common import check  # loadtests/common.py (locust puts this directory on sys.path)

EXPECTED = b"Hello, World!"


class HelloUser(FastHttpUser):
    """A client of the hello app: one request at a time, 0.1 to 0.5 s apart."""

    wait_time = between(0.1, 0.5)
    network_timeout = 120.0
    connection_timeout = 120.0

    @task
    def hello(self) -> None:
        with self.client.get("/", name="/", catch_response=True, allow_redirects=False) as resp:
            check(resp, EXPECTED)
