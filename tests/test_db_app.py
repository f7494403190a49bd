"""examples/db_app.py served for real: PostgreSQL and Redis started for the module
(bench/databases.py), the schema made by the example's own ``init``, one gevent worker.

Concurrent requests each get their own row and their own Redis count; slow queries from one
worker are in flight in PostgreSQL together (seen in pg_stat_activity), which is what makes
psycopg cooperative under gevent: a driver that blocked the worker would show one at a time.
"""

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from bench.databases import databases
from helpers import EXAMPLES, Server, request, run_command

POOL_SIZE = 20


@pytest.fixture(scope="module")
def db_env():
    with databases(max_connections=50) as env:
        done = run_command([sys.executable, os.path.join(EXAMPLES, "db_app.py"), "init"],
                           timeout=60, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
        yield env


@pytest.fixture(scope="module")
def db_server(db_env):
    with Server(["-k", "gevent", "-w", "1", "--chdir", EXAMPLES], app="db_app:app",
                cwd=EXAMPLES, env={**db_env, "DB_POOL_SIZE": str(POOL_SIZE)},
                ready_path="/health") as srv:
        yield srv


def get_json(port, path, timeout=10.0):
    response = request(port, "GET", path, timeout=timeout)
    assert response.status == 200, (path, response.status, response.text)
    return json.loads(response.body)


def test_health_says_psycopg_waits_cooperatively(db_server):
    health = get_json(db_server.port, "/health")
    assert health["database"] == health["redis"] == "ok"
    assert health["wait"] != "wait_c", health  # psycopg's C loop would block the worker
    assert health["pool"]["pool_max"] == POOL_SIZE


def test_items_written_then_read(db_server):
    body = json.dumps({"name": "written", "value": 12}).encode()
    response = request(db_server.port, "POST", "/items", body=body, timeout=10,
                       headers=[("Content-Type", "application/json")])
    assert response.status == 201, response.text
    created = json.loads(response.body)
    assert created["name"] == "written" and created["value"] == 12 and created["id"] > 10_000
    assert get_json(db_server.port, f"/items/{created['id']}") == created
    assert get_json(db_server.port, "/items/7") == {"id": 7, "name": "item-7", "value": 49}
    assert request(db_server.port, "GET", "/items/999999", timeout=10).status == 404
    bad = request(db_server.port, "POST", "/items", body=b'{"name": 1}', timeout=10,
                  headers=[("Content-Type", "application/json")])
    assert bad.status == 400


def test_mixed_under_100_concurrent_requests(db_server, db_env):
    item_id = 42
    before = get_json(db_server.port, f"/mixed?id={item_id}")["views"]
    with psycopg.connect(db_env["DATABASE_URL"], connect_timeout=10) as conn:
        hits_before = conn.execute("SELECT count(*) FROM hits WHERE item_id = %s",
                                   (item_id,)).fetchone()[0]
    with ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(lambda _: get_json(db_server.port, f"/mixed?id={item_id}",
                                                   timeout=30), range(100)))
    assert all(a["item"] == {"id": item_id, "name": "item-42", "value": 294} for a in answers)
    # each request its own INCR and its own row
    assert sorted(a["views"] for a in answers) == list(range(before + 1, before + 101))
    assert len({a["hit"] for a in answers}) == 100
    with psycopg.connect(db_env["DATABASE_URL"], connect_timeout=10) as conn:
        hits_after = conn.execute("SELECT count(*) FROM hits WHERE item_id = %s",
                                  (item_id,)).fetchone()[0]
    assert hits_after - hits_before == 100


def test_slow_queries_of_one_worker_overlap_in_postgres(db_server, db_env):
    """20 requests doing pg_sleep(0.5) on one worker: PostgreSQL sees several at once."""
    seen = []
    stop = threading.Event()

    def watch():
        with psycopg.connect(db_env["DATABASE_URL"], connect_timeout=10,
                             autocommit=True) as conn:
            while not stop.is_set():
                seen.append(conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE 'SELECT pg_sleep%%'").fetchone()[0])
                stop.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(POOL_SIZE) as pool:
            answers = list(pool.map(lambda _: get_json(db_server.port, "/sleep?seconds=0.5",
                                                       timeout=30), range(POOL_SIZE)))
    finally:
        stop.set()
        watcher.join(10)
    assert answers == [{"slept": 0.5}] * POOL_SIZE
    assert max(seen, default=0) > 1, seen
