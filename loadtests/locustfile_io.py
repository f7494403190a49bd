"""Locust users for examples/io_bound.py: an I/O-bound Flask app under load.

Each user mixes the three views of the app, weighted toward the upstream call:

- ``/upstream?delay=0.1`` (weight 3): the app calls a slow upstream over HTTP with requests;
- ``/sleep?seconds=0.1`` (weight 2): the app sleeps (cooperatively, under gevent);
- ``/stream?chunks=5`` (weight 1): a streamed (chunked) response.

Any status outside 2xx, a redirect included, and any connection error or timeout counts as a
failure. Run it through ``loadtests/run.py`` (which starts the servers), or by hand::

    locust -f loadtests/locustfile_io.py --headless -u 50 -r 10 --run-time 5s \
        -H http://127.0.0.1:8000
"""

from __future__ import annotations

from locust import FastHttpUser, between, task

from common import check  # loadtests/common.py (locust puts this directory on sys.path)


class IOBoundUser(FastHttpUser):
    """A client of the I/O-bound app: one request at a time, 0.1 to 0.5 s apart."""

    wait_time = between(0.1, 0.5)
    # Generous, so that a queued request (the sync worker under 1000 users) is measured, not cut.
    network_timeout = 120.0
    connection_timeout = 120.0

    def request_name(self, path: str) -> str:
        """The name a request is counted under in locust's statistics: its path."""
        return path

    def fetch(self, path: str) -> None:
        with self.client.get(path, name=self.request_name(path), catch_response=True,
                             allow_redirects=False) as resp:
            check(resp)

    @task(3)
    def upstream(self) -> None:
        self.fetch("/upstream?delay=0.1")

    @task(2)
    def sleep(self) -> None:
        self.fetch("/sleep?seconds=0.1")

    @task(1)
    def stream(self) -> None:
        self.fetch("/stream?chunks=5")
