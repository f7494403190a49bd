"""How long the gevent event loop is held without yielding, and the report of a hold that lasted
too long (--loop-block-warn).

Two ways to time it. When each request's figure is wanted (the access-log atom %(K)s), at
greenlet switches (greenlet.settrace): a clock read, a subtraction, two stores per switch, and
only a hold of FLOOR seconds or more goes further; a request's figure is the
longest hold of its greenlet since the request before it on the connection, the hold under way
included (``take``). Otherwise, for the report alone, a timer of the event loop beats every
``warn / 10`` seconds: a beat that comes late by a hold measures it, and no switch pays
anything (with WebSockets, which switch a dozen times per message, the tracer cost a tenth of
the worker's CPU). The metrics time the loop's turns instead (loopturns.py).

A hold of --loop-block-warn seconds or more is reported with the Python stack where it was
blocking: the worker's watchdog thread samples the main thread's frame while the hold is under
way (``sample``), and the event loop logs the report once the hold is over (``report_due``), at
most one per REPORT_EVERY seconds. Timed by the beat, a hold may be several greenlets running
in turn within one turn of the loop: the watchdog's later looks tell, and the report says so.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Callable, Dict, List, Optional, Tuple

FLOOR = 0.001  # seconds: shorter holds are not remembered
REPORT_EVERY = 5.0  # seconds between two reports of a worker


@dataclass
class Sample:
    """The stack of a hold under way, taken by the watchdog thread."""

    started: float  # perf_counter() when the greenlet got the loop
    held: float  # how long it had held it when the stack was taken
    activity: Optional[str]  # "GET /path from 10.0.0.1 (running 1.2s)", or None
    stack: str
    outermost: Any = None  # the bottom frame of the greenlet that held the loop
    mixed: bool = False  # a later look saw another greenlet hold it (timed by the beat)


class LoopBlocks:
    """The hold timing of one gevent worker (install() in the thread of its event loop).

    ``per_request``: trace switches, and remember each greenlet's longest hold for ``take``;
    otherwise only holds of ``warn`` seconds or more matter, timed by the beat. ``warn``: the
    hold that is reported (0: none).
    """

    def __init__(self, hub: Any, current: Callable[[], Any], warn: float,
                 per_request: bool) -> None:
        self.hub = hub
        self.current = current  # greenlet.getcurrent
        self.warn = warn
        self.per_request = per_request
        #: when the greenlet running now got the loop (perf_counter), and that greenlet (the
        #: beat: when the loop last beat, and None)
        self.run: List[Any] = [perf_counter(), current()]
        #: seconds between two beats (timed by the beat), or 0 (traced)
        self.period = 0.0 if per_request else max(warn / 10, 0.005)
        self._beat_timer: Any = None
        #: greenlet -> its longest hold since its last take(), for the holds of FLOOR or more
        self.longest: Dict[Any, float] = {}
        #: the last hold of warn or more, once over: (started, held, its stack if sampled)
        self.last_long: Optional[Tuple[float, float, Optional[Sample]]] = None
        self.long_holds = 0  # holds of warn or more, reported or not
        self.reported_holds = 0
        self.last_report = -REPORT_EVERY
        self.sampled: Optional[Sample] = None  # the stack of the hold under way, if taken
        self.skip_started = 0.0  # a hold the watchdog has reported as a timeout already
        self.take = self._take_function()

    def install(self) -> None:
        if self.per_request:
            import greenlet

            greenlet.settrace(self._trace_function())
            return
        run, clock, warn, held_long = self.run, perf_counter, self.warn, self._held_long
        run[1] = None

        def beat() -> None:
            now = clock()
            held = now - run[0]
            run[0] = now
            if held >= warn:
                held_long(None, held, now)
        self._beat_timer = self.hub.loop.timer(self.period, self.period, ref=False)
        self._beat_timer.start(beat)

    def uninstall(self) -> None:
        if self._beat_timer is not None:
            self._beat_timer.stop()
            self._beat_timer = None
        else:
            import greenlet

            greenlet.settrace(None)

    def _trace_function(self) -> Callable[[str, Any], None]:
        run, hub, clock, held_long, floor = self.run, self.hub, perf_counter, self._held_long, FLOOR

        def trace(event: str, args: Any) -> None:
            now = clock()
            held = now - run[0]
            run[0] = now
            origin, run[1] = args
            if held >= floor and origin is not hub:
                held_long(origin, held, now)
        return trace

    def _held_long(self, greenlet: Any, held: float, now: float) -> None:
        if self.per_request and held > self.longest.get(greenlet, 0.0):
            self.longest[greenlet] = held
        if self.warn and held >= self.warn:
            self.long_holds += 1
            started = now - held
            sampled = self.sampled
            if sampled is None or abs(sampled.started - started) > 1e-6:
                sampled = None  # the watchdog could not run meanwhile: C code held the GIL
            self.last_long = (started, held, sampled)
            self.sampled = None

    def _take_function(self) -> Callable[[], float]:
        run, longest, current, clock = self.run, self.longest, self.current, perf_counter

        def take() -> float:
            """In a request's greenlet, once it is answered: the longest the request held
            the event loop at a stretch, in seconds (the hold under way included)."""
            running = clock() - run[0]
            if longest:  # only holds of FLOOR or more are there
                held = longest.pop(current(), 0.0)
                if held > running:
                    return held
            return running
        return take

    # -- the watchdog thread's side

    def holding(self) -> Optional[Tuple[float, float]]:
        """(when, for how long) the greenlet running now has held the loop; None while the
        hub runs (timed by the beat: while the beats come on time)."""
        started, running = self.run
        held = perf_counter() - started
        if running is self.hub or started != self.run[0] or held < 2 * self.period:
            return None
        return started, held

    def sample(self, main_frame: Callable[[], Any],
               describe: Callable[[Any], Optional[str]]) -> None:
        """Take the stack of the hold under way if it may be reported, once: half-way to
        ``warn`` and past the quiet time after the last report (the watchdog thread calls
        this)."""
        hold = self.holding()
        if hold is None:
            return
        started, held = hold
        if held < self.warn / 2 or started < self.last_report + REPORT_EVERY:
            return
        sampled = self.sampled
        if sampled is not None and sampled.started == started:
            # One sample per hold: a later one may catch its tail (the response sent). Timed
            # by the beat, a later look only checks that the same greenlet still holds it.
            if self.period and not sampled.mixed:
                frame = main_frame()
                if frame is not None and _outermost(frame) is not sampled.outermost:
                    sampled.mixed = True
            return
        frame = main_frame()
        if frame is None:
            return
        try:
            activity = describe(frame)
        except Exception:
            activity = None
        stack = "".join(traceback.format_stack(frame)).rstrip()
        self.sampled = Sample(started, held, activity, stack,
                              _outermost(frame) if self.period else None)

    # -- the event loop's side

    def report_due(self) -> Optional[str]:
        """The report of the last long hold, if it is to be logged now (at most one per
        REPORT_EVERY seconds); also forgets the greenlets that have ended."""
        for greenlet in [g for g in self.longest if g.dead]:
            del self.longest[greenlet]
        sampled = self.sampled
        if sampled is not None and sampled.started != self.run[0]:
            self.sampled = None  # a hold over and shorter than warn: its frames go
        last, self.last_long = self.last_long, None
        if last is None:
            return None
        started, held, sample = last
        if started == self.skip_started or started < self.last_report + REPORT_EVERY:
            return None  # reported as a timeout, or too soon after the last report
        others = self.long_holds - self.reported_holds - 1
        self.last_report, self.reported_holds = perf_counter(), self.long_holds
        line = f"Event loop blocked for {held:.3f}s (pid:{os.getpid()}, --loop-block-warn "
        line += f"{self.warn:g})"
        if sample is not None and sample.mixed:
            line += " by several greenlets in turn, the first seen "
            line += sample.activity if sample.activity else "outside any request"
        elif sample is not None:
            line += f" by {sample.activity}" if sample.activity else " outside any request"
        line += ": every other request of this worker waited"
        if others > 0:
            line += f" ({others} other block(s) of {self.warn:g}s or more since the last report)"
        if sample is None:
            return (f"{line}. No stack: the watchdog thread could not run while it blocked "
                    "(C code holding the GIL?)")
        return f"{line}. Stack {sample.held:.3f}s into the block:\n{sample.stack}"


def _outermost(frame: Any) -> Any:
    """The bottom frame of a stack: the same for as long as its greenlet lives (kept, not its
    id(): a greenlet that ends frees it, and the next one may get the same address)."""
    while frame.f_back is not None:
        frame = frame.f_back
    return frame
