"""One block of shared memory per worker, created by the supervisor before the fork: what the
worker counts (added once per turn of its event loop, see recorder.RequestCounts; no lock, no
system call) and what it publishes on its heartbeat tick, read and summed by the supervisor
when scraped.

Counters are 64-bit integers and sums are doubles, each 8-byte aligned, so a read never sees
half a write; the worker writes them through memoryviews of the mapping, cast to their types
(the cheapest Python write there is: through a ctypes array it takes a fifth longer).
Everything before ``COUNTERS_END`` only grows: when the worker ends, the supervisor adds those
figures to a total of the departed.

Two counters per request: its cell in the matrix of methods by status codes, and its duration
bucket (plus the sum of durations); a gevent worker also counts the long turns of its event
loop (workers/loopturns.py) in buckets of their own. The matrix is mostly zeros: a worker
marks each status code it counts (once per status line it sees), and the supervisor reads those
columns only. The status the worker publishes (its requests in flight) is JSON behind a
sequence number, so that a reader can tell a write under way.
"""

from __future__ import annotations

import json
import mmap
from typing import Any, Dict, Iterable, List, Optional, Tuple

#: the methods counted by name; any other is "other"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
METHOD_LABELS = (*METHODS, "other")
#: a request's counter is at its method's row, column = the status code (0: no response, the
#: client went away first)
CODES = 600
#: histogram bounds (seconds), for request durations and for the event loop's turns
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
N_BUCKETS = len(BUCKETS) + 1  # the last one: +Inf

# -- integer slots (8 bytes each)
REQUESTS = 0
TIMES = REQUESTS + len(METHOD_LABELS) * CODES  # + the duration's bucket
TURNS = TIMES + N_BUCKETS  # + the bucket of a long turn of the event loop
ACCEPTED = TURNS + N_BUCKETS
COUNTERS_END = ACCEPTED + 1
# gauges, written on the tick
ACTIVE, IDLE, TAKEN_OVER, IN_FLIGHT, STATUS_SEQ, STATUS_LEN = range(COUNTERS_END,
                                                                    COUNTERS_END + 6)
N_INTEGERS = STATUS_LEN + 1
# -- doubles
DURATION_SUM, BLOCKED_SUM, LOOP_LAG = range(3)
N_DOUBLES = 3
COUNTER_DOUBLES = 2  # the sums grow with their histograms; the loop lag is a gauge

_DOUBLES_AT = N_INTEGERS * 8
_CODES_SEEN_AT = _DOUBLES_AT + N_DOUBLES * 8  # a byte per status code: 1 once used
_STATUS_AT = _CODES_SEEN_AT + CODES
STATUS_SIZE = 8192
SIZE = _STATUS_AT + STATUS_SIZE


class WorkerBlock:
    """The shared memory of one worker; ``ints``, ``doubles`` and ``codes_seen`` are typed
    memoryviews of it (an index reads or writes one item)."""

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, SIZE)
        whole = memoryview(self._mem)
        self.ints: Any = whole[:_DOUBLES_AT].cast("Q")
        self.doubles: Any = whole[_DOUBLES_AT:_CODES_SEEN_AT].cast("d")
        self.codes_seen: Any = whole[_CODES_SEEN_AT:_STATUS_AT]
        whole.release()
        #: the worker's small stable number (its label), given by the supervisor
        self.index = 0

    # -- the worker's side

    def publish(self, active: int, idle: int, taken_over: int, in_flight: int,
                oldest: List[Any], loop_lag: float) -> None:
        """The status of the heartbeat tick; ``oldest``: some of the ``in_flight`` requests,
        as [method, path, started], started in monotonic seconds (the machine's clock, the
        same in every process)."""
        ints = self.ints
        ints[ACTIVE], ints[IDLE], ints[TAKEN_OVER] = active, idle, taken_over
        ints[IN_FLIGHT] = in_flight
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

    def used_codes(self) -> List[int]:
        """The status codes of the requests counted so far."""
        seen, codes = bytes(self.codes_seen), []
        code = seen.find(1)
        while code >= 0:
            codes.append(code)
            code = seen.find(1, code + 1)
        return codes

    def counters(self, codes: Iterable[int]) -> Tuple[Dict[int, int], List[int]]:
        """The counters: {index: count} of the request matrix in the columns ``codes`` (the
        others are zeros, see used_codes), and the list of those from TIMES on."""
        ints = self.ints
        requests = {row * CODES + code: 0 for row in range(len(METHOD_LABELS)) for code in codes}
        for index in requests:
            requests[index] = ints[index]
        return requests, ints[TIMES:COUNTERS_END].tolist()

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
        del self.ints, self.doubles, self.codes_seen
        try:
            self._mem.close()
        except BufferError:  # a recorder still holds a view: unmapped with the last one
            pass


def histograms(rest: List[int]) -> Tuple[List[int], List[int]]:
    """The bucket counts of the duration histogram and of the event loop's long turns, from
    the counters from TIMES on (``counters()[1]``)."""
    return rest[:N_BUCKETS], rest[TURNS - TIMES:TURNS - TIMES + N_BUCKETS]
