"""An app that makes gevent report 'time' as unpatched, to exercise the worker's check."""

import gevent.monkey

gevent.monkey.saved.pop("time", None)


def app(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]
