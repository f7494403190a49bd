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

    @task(3)
    def upstream(self) -> None:
        with self.client.get("/upstream?delay=0.1", name="/upstream?delay=0.1",
                             catch_response=True, allow_redirects=False) as resp:
            check(resp)

    @task(2)
    def sleep(self) -> None:
        with self.client.get("/sleep?seconds=0.1", name="/sleep?seconds=0.1",
                             catch_response=True, allow_redirects=False) as resp:
            check(resp)

    @task(1)
    def stream(self) -> None:
        with self.client.get("/stream?chunks=5", name="/stream?chunks=5",
                             catch_response=True, allow_redirects=False) as resp:
            check(resp)
