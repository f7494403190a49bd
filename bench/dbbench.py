"""The ``db`` workload's side of the benchmark: its databases.

examples/db_app.py (Flask on PostgreSQL through psycopg_pool, and Redis) is served by each
server with the same pool size: POOL_SIZE connections (DB_POOL_SIZE) in the one worker, and for
granian, which runs a WSGI app in threads, as many blocking threads (bench.py's workload).
``start_databases`` is bench.py's hook: PostgreSQL and Redis (bench/databases.py) started once
before the rounds when a workload on db_app is wanted, pinned beside wrk (the server's CPU is
its own), the schema made and seeded by the example's ``init``, and their addresses put in those
workloads' environment; closed (both stopped by PID) by the caller after the rounds, or at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
from typing import Dict, Iterable, Protocol, Sequence

from databases import databases  # bench/databases.py, beside this module

from harness import EXAMPLES

POOL_SIZE = 20
#: the environment of a server of the db workload (the databases' addresses are added)
SERVER_ENV = {"DB_POOL_SIZE": str(POOL_SIZE)}  # granian: as many blocking threads (bench.py)
APP = "db_app:app"


class _Workload(Protocol):
    name: str
    app: str
    env: Dict[str, str]


def start_databases(workloads: Iterable[_Workload], wanted: Sequence[str], cpus: str,
                    logs: str) -> contextlib.ExitStack:
    """PostgreSQL and Redis, running if one of the ``wanted`` workloads serves db_app (their
    logs in ``logs``, pinned to ``cpus``), with the schema seeded and those workloads' ``env``
    completed; the returned stack stops them when closed (also registered to run at exit)."""
    stack = contextlib.ExitStack()
    needing = [w for w in workloads if w.name in wanted and w.app == APP]
    if not needing:
        return stack
    atexit.register(stack.close)
    print("db: starting PostgreSQL and Redis ...", end=" ", flush=True, file=sys.stderr)
    env = stack.enter_context(databases(max_connections=4 * POOL_SIZE + 20, cpus=cpus,
                                        logs=logs))
    try:
        subprocess.run([sys.executable, os.path.join(EXAMPLES, "db_app.py"), "init"],
                       check=True, timeout=120, env={**os.environ, **env})
    except BaseException:
        stack.close()
        raise
    print("ready", file=sys.stderr)
    for workload in needing:
        workload.env.update(env)
    return stack
