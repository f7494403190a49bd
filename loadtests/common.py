"""What the locustfiles share: the response check, and the last write of the --csv files."""

from __future__ import annotations

from typing import Optional

import gevent
from locust import events
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment
from locust.stats import CSV_STATS_INTERVAL_SEC


def check(resp: ResponseContextManager, expect: Optional[bytes] = None) -> None:
    """Mark ``resp`` failed unless it is a whole 2xx (with ``expect`` in its body, when given).

    A body cut short (a chunked response whose connection closed before its last chunk) is
    a failure locust found while reading it: it is in the request's exception, not in
    ``resp.error``, and calling ``success()`` would have counted it as a success.
    """
    error = getattr(resp, "error", None) or getattr(resp, "request_meta", {}).get("exception")
    if error is not None:
        resp.failure(error)
    elif not 200 <= resp.status_code < 300:
        resp.failure(f"HTTP {resp.status_code}")
    elif expect is not None and expect not in (resp.content or b""):
        resp.failure(f"body without {expect!r}")
    else:
        resp.success()


# Locust writes the --csv files from a greenlet once a second and not again at exit, so they miss
# the last second of the run (locust issue #1806) while the printed summary and the HTML report
# have it. Waiting a little longer than that interval at exit lets one last write happen.
_writes_csv = False


@events.init.add_listener
def _remember_csv(environment: Environment, **kwargs: object) -> None:
    global _writes_csv
    _writes_csv = bool(getattr(environment.parsed_options, "csv_prefix", None))


@events.quit.add_listener
def _let_csv_catch_up(exit_code: int, **kwargs: object) -> None:
    if _writes_csv:
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.5)
