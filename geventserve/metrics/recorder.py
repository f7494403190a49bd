"""A worker's side of the metrics: what it records per request, chosen when it starts (with
--metrics-bind off, the access log alone, as before), the count of accepted connections, and
the status it publishes on its heartbeat tick."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from time import monotonic
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..logs import LOOP_BLOCKED_KEY as LOOP_BLOCKED
from . import layout

IN_FLIGHT_SHOWN = 20  # the requests in flight a worker publishes: the oldest ones
PATH_SHOWN = 200

Access = Callable[..., None]  # (environ, status, sent, duration, headers): the access log's


def observer(take_held: Optional[Callable[[], float]], access: Optional[Access],
             log_wants_held: bool) -> Optional[Access]:
    """The access log (``access``, or None) given each request's event-loop hold when the log
    shows it (``log_wants_held``, with ``take_held`` from the gevent worker's tracer)."""
    if take_held is not None and access is not None and log_wants_held:
        access = _hold_for_log(take_held, access)
    return access


def _hold_for_log(take_held: Callable[[], float], access: Access) -> Access:
    def log(environ: Dict[str, Any], status: Optional[str], sent: int, duration: float,
            headers: Any = ()) -> None:
        environ[LOOP_BLOCKED] = take_held()
        access(environ, status, sent, duration, headers)
    return log


#: what a request handler tallies per answered request: (method, status line or None, seconds)
Tallied = Tuple[str, Optional[str], float]


class RequestCounts:
    """The requests a worker answered since its last ``flush``, which adds them to its block.

    Per request, ``tally`` extends a list by (method, status, duration): one C call, no Python
    frame, the tuple freed at once. The flush counts them in bulk with C loops (slices, sets,
    a sort, a bisection per bucket reached), so on a busy worker the metrics cost little more
    than that call. A gevent worker flushes at the end of each turn of its event loop, before
    it waits for I/O again: the block lags by at most a turn, and a worker killed by SIGKILL
    loses at most the counts of the turn it was in. Other workers flush after each request
    (``flush_each``)."""

    def __init__(self, block: layout.WorkerBlock, flush_each: bool = False) -> None:
        self.block = block
        self.pending: List[Any] = []  # method, status, duration, method, status, ...
        self.flush = self._flusher()
        self.tally: Callable[[Tallied], None] = self.pending.extend
        if flush_each:
            extend, flush = self.pending.extend, self.flush

            def tally_and_flush(request: Tallied) -> None:
                extend(request)
                flush()
            self.tally = tally_and_flush

    def _flusher(self) -> Callable[[], None]:
        pending, ints, doubles = self.pending, self.block.ints, self.block.doubles
        codes_seen = self.block.codes_seen
        rows = {method: i for i, method in enumerate(layout.METHODS)}
        other = len(layout.METHODS)
        cells: Dict[Tuple[str, Optional[str]], int] = {}  # (method, status): its counter
        bounds, first = layout.BUCKETS, layout.BUCKETS[0]
        times, sum_at = layout.TIMES, layout.DURATION_SUM

        def cell_of(method: str, status: Optional[str]) -> int:
            cell = cells.get((method, status))
            if cell is None:
                code = int(status[:3]) if status and status[:3].isdigit() else 0
                code = code if code < layout.CODES else 0
                codes_seen[code] = 1  # before any count: the supervisor reads the columns used
                cell = rows.get(method, other) * layout.CODES + code
                if len(cells) < 1024:
                    cells[(method, status)] = cell
            return cell

        def flush() -> None:
            """Add the requests tallied since the last flush to the block."""
            if not pending:
                return
            methods, statuses, durations = pending[0::3], pending[1::3], pending[2::3]
            pending.clear()
            answered = len(durations)
            distinct_methods, distinct_statuses = set(methods), set(statuses)
            if len(distinct_methods) == 1 and len(distinct_statuses) == 1:
                ints[cell_of(methods[0], statuses[0])] += answered
            else:
                keys = list(zip(methods, statuses))
                for method, status in set(keys):
                    ints[cell_of(method, status)] += keys.count((method, status))
            durations.sort()
            if durations[-1] <= first:
                ints[times] += answered
            else:  # a bucket holds the durations up to its bound (Prometheus' "le")
                counted = 0
                last = bisect_left(bounds, durations[-1])
                for bucket in range(bisect_left(bounds, durations[0]), last):
                    upto = bisect_right(durations, bounds[bucket], counted)
                    ints[times + bucket] += upto - counted
                    counted = upto
                ints[times + last] += answered - counted
            doubles[sum_at] += sum(durations)
        return flush


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
