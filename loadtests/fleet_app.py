"""examples/io_bound.py as each host of the fleet runs it (loadtests/modes/fleet.py): the same
views, plus the version the host was started as, and a view that keeps memory (what a leak does),
for recycling by --max-worker-memory.

    GET /version        {"version": $FLEET_VERSION, "pid": the worker's}
    GET /grow?mib=N     keeps N MiB more in this worker (resident: written), up to MAX_KEPT_MIB
"""

import os

from flask import abort, request
from io_bound import app  # examples/ (the runner gives --chdir examples)

VERSION = os.environ.get("FLEET_VERSION", "1")
MAX_KEPT_MIB = 1024
_kept = []


@app.route("/version")
def version():
    return {"version": VERSION, "pid": os.getpid()}


@app.route("/grow")
def grow():
    mib = request.args.get("mib", 1, type=int)
    if not 1 <= mib <= MAX_KEPT_MIB - len(_kept):
        abort(400, f"mib must be from 1 to {MAX_KEPT_MIB - len(_kept)}")
    _kept.extend(b"x" * (1 << 20) for _ in range(mib))  # bytes of x: every page written
    return {"pid": os.getpid(), "kept_mib": len(_kept)}
