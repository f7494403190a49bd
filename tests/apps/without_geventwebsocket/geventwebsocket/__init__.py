"""Stands in for gevent-websocket when this directory comes first on PYTHONPATH: importing it
fails as if the package were not installed (the tests' "without gevent-websocket" variant)."""

raise ImportError("gevent-websocket is blocked for this test (tests/apps/without_geventwebsocket)")
