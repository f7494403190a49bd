"""A worker's side of the metrics: what it records per request, chosen when it starts (with
--metrics-bind off, the access log alone, as before), the count of accepted connections, and
the status it publishes on its heartbeat tick."""

from __future__ import annotations

from bisect import bisect_left
from time import monotonic
from typing import Any, Callable, Dict, List, Optional

from ..logs import LOOP_BLOCKED_KEY as LOOP_BLOCKED
from . import layout

IN_FLIGHT_SHOWN = 20  # the requests in flight a worker publishes: the oldest ones
PATH_SHOWN = 200

Access = Callable[..., None]  # (environ, status, sent, duration, headers): the access log's


def observer(block: Optional[layout.WorkerBlock], take_held: Optional[Callable[[], float]],
             access: Optional[Access], log_wants_held: bool) -> Optional[Access]:
    """What the WSGI layer calls once per answered request: ``access`` (the access log, or
    None), given each request's event-loop hold when the log shows it (``log_wants_held``, with
    ``take_held`` from the gevent worker's tracer), behind the metrics' count when they are on
    (``block``)."""
    if take_held is not None and access is not None and log_wants_held:
        access = _hold_for_log(take_held, access)
    if block is None:
        return access
    return _recorder(block, access)


def _hold_for_log(take_held: Callable[[], float], access: Access) -> Access:
    def log(environ: Dict[str, Any], status: Optional[str], sent: int, duration: float,
            headers: Any = ()) -> None:
        environ[LOOP_BLOCKED] = take_held()
        access(environ, status, sent, duration, headers)
    return log


def _recorder(block: layout.WorkerBlock, access: Optional[Access]) -> Access:
    """Two counters per request (see layout) and the sum of durations; the bucket search is
    skipped for what takes less than the first bound, as many requests do."""
    ints, doubles, codes_seen = block.ints, block.doubles, block.codes_seen
    rows = {method: i * layout.CODES for i, method in enumerate(layout.METHODS)}
    other = len(layout.METHODS) * layout.CODES
    codes: Dict[Optional[str], int] = {}
    bounds, first, times = layout.BUCKETS, layout.BUCKETS[0], layout.TIMES

    def code_of(status: Optional[str]) -> int:
        code = int(status[:3]) if status and status[:3].isdigit() else 0
        code = code if code < layout.CODES else 0
        codes_seen[code] = 1  # before the count: the supervisor reads the columns used
        if len(codes) < 1024:
            codes[status] = code
        return code

    def record(environ: Dict[str, Any], status: Optional[str], sent: int, duration: float,
               headers: Any = ()) -> None:
        code = codes.get(status)
        if code is None:
            code = code_of(status)
        ints[rows.get(environ.get("REQUEST_METHOD"), other) + code] += 1
        ints[times if duration <= first else times + bisect_left(bounds, duration)] += 1
        doubles[0] += duration
        if access is not None:
            access(environ, status, sent, duration, headers)
    return record


def turn_observer(block: Optional[layout.WorkerBlock]) -> Optional[Callable[[float], None]]:
    """Called with the length of each long turn of a gevent worker's event loop (see
    workers/loopturns.py), with metrics on."""
    if block is None:
        return None
    ints, doubles, bounds, at = block.ints, block.doubles, layout.BUCKETS, layout.TURNS

    def observe(seconds: float) -> None:
        ints[at + bisect_left(bounds, seconds)] += 1
        doubles[layout.BLOCKED_SUM] += seconds
    return observe


def connection_counter(block: Optional[layout.WorkerBlock]) -> Optional[Callable[[], None]]:
    """Called once per accepted connection, with metrics on."""
    if block is None:
        return None
    ints, at = block.ints, layout.ACCEPTED

    def accepted() -> None:
        ints[at] += 1
    return accepted


def heartbeat(slot: Any, service: Any, tick: Optional[float]) -> Callable[[], None]:
    """The worker's heartbeat: ``slot.beat``, and with metrics on the status published beside
    it, at most every 0.5 s. ``tick``: the seconds between two beats of an event loop (its
    lag is how late a beat comes), None for a worker without one."""
    block = slot.metrics
    if block is None:
        return slot.beat
    beat = slot.beat
    last = [monotonic()]

    def beat_and_publish() -> None:
        beat()
        now = monotonic()
        since = now - last[0]
        if tick is None and since < 0.5:
            return
        last[0] = now
        lag = max(since - tick, 0.0) if tick is not None else 0.0
        publish(block, service, lag)
    return beat_and_publish


def publish(block: layout.WorkerBlock, service: Any, lag: float) -> None:
    """The worker's connections by state, and its oldest requests in flight."""
    active = idle = taken_over = 0
    in_flight: List[Any] = []
    for conn in list(service.connections):
        if getattr(conn, "takeover", 0):  # the application holds the socket (a WebSocket)
            taken_over += 1
        elif conn.idle:
            idle += 1
        else:
            active += 1
            request = conn.request
            if request is not None:
                path = request.target.decode("latin-1").partition("?")[0][:PATH_SHOWN]
                in_flight.append([request.method, path, conn.request_started])
    in_flight.sort(key=lambda item: item[2])
    block.publish(active, idle, taken_over, len(in_flight), in_flight[:IN_FLIGHT_SHOWN], lag)
