"""One block of shared memory per worker, created by the supervisor before the fork: what the
worker counts (an increment per request, no lock, no system call) and what it publishes on its
heartbeat tick, read and summed by the supervisor when scraped.

Counters and bucket counts are 64-bit integers and sums are doubles, each 8-byte aligned, so a
read never sees half a write. Everything before ``COUNTERS_END`` only grows: when the worker
ends, the supervisor adds those figures to a total of the departed. The status the worker
publishes (its requests in flight) is JSON behind a sequence number, so that a reader can tell
a write under way.
"""

from __future__ import annotations

import json
import mmap
from typing import Any, List, Optional

#: the methods counted by name; any other is "other"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
METHOD_LABELS = (*METHODS, "other")
#: a request's counter is at its method's row, column = the status code (0: no response, the
#: client went away first)
CODES = 600
#: histogram bounds (seconds), for request durations and for event-loop holds
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
N_BUCKETS = len(BUCKETS) + 1  # the last one: +Inf

# -- integer slots (8 bytes each)
REQUESTS = 0
DURATION = REQUESTS + len(METHOD_LABELS) * CODES
BLOCKED = DURATION + N_BUCKETS
ACCEPTED = BLOCKED + N_BUCKETS
COUNTERS_END = ACCEPTED + 1
# gauges, written on the tick
ACTIVE, IDLE, TAKEN_OVER, IN_FLIGHT, SERVED, STATUS_SEQ, STATUS_LEN = range(COUNTERS_END,
                                                                          COUNTERS_END + 7)
N_INTEGERS = STATUS_LEN + 1
# -- doubles
DURATION_SUM, BLOCKED_SUM, LOOP_LAG = range(3)
N_DOUBLES = 3
COUNTER_DOUBLES = 2  # the sums grow with their histograms; the loop lag is a gauge

_DOUBLES_AT = N_INTEGERS * 8
_STATUS_AT = _DOUBLES_AT + N_DOUBLES * 8
STATUS_SIZE = 8192
SIZE = _STATUS_AT + STATUS_SIZE


class WorkerBlock:
    """The shared memory of one worker: ``ints`` and ``doubles`` are typed views of it."""

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, SIZE)
        self._view = memoryview(self._mem)
        self.ints = self._view[:_DOUBLES_AT].cast("Q")
        self.doubles = self._view[_DOUBLES_AT:_STATUS_AT].cast("d")
        #: the worker's small stable number (its label), given by the supervisor
        self.index = 0

    # -- the worker's side

    def publish(self, active: int, idle: int, taken_over: int, in_flight: int,
                oldest: List[Any], served: int, loop_lag: float) -> None:
        """The status of the heartbeat tick; ``oldest``: some of the ``in_flight`` requests,
        as [method, path, started], started in monotonic seconds (the machine's clock, the
        same in every process)."""
        ints = self.ints
        ints[ACTIVE], ints[IDLE], ints[TAKEN_OVER] = active, idle, taken_over
        ints[IN_FLIGHT], ints[SERVED] = in_flight, served
        self.doubles[LOOP_LAG] = loop_lag
        data = json.dumps(oldest, separators=(",", ":")).encode()
        while len(data) > STATUS_SIZE and oldest:
            oldest = oldest[:len(oldest) // 2]
            data = json.dumps(oldest, separators=(",", ":")).encode()
        ints[STATUS_SEQ] += 1  # odd: a write under way
        self._mem[_STATUS_AT:_STATUS_AT + len(data)] = data
        ints[STATUS_LEN] = len(data)
        ints[STATUS_SEQ] += 1

    # -- the supervisor's side

    def counters(self) -> List[int]:
        return self.ints[:COUNTERS_END].tolist()

    def counter_sums(self) -> List[float]:
        return self.doubles[:COUNTER_DOUBLES].tolist()

    def in_flight(self) -> Optional[List[Any]]:
        """The requests in flight last published, None if the worker was writing them (or
        wrote something unreadable, which a worker killed mid-write may leave)."""
        ints = self.ints
        for _ in range(3):
            seq = ints[STATUS_SEQ]
            data = self._mem[_STATUS_AT:_STATUS_AT + min(ints[STATUS_LEN], STATUS_SIZE)]
            if seq % 2 == 0 and seq == ints[STATUS_SEQ]:
                try:
                    return json.loads(data) if data else []
                except ValueError:
                    return None
        return None

    def close(self) -> None:
        for view in (self.ints, self.doubles, self._view):
            view.release()
        self._mem.close()
