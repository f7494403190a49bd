"""Apps and factories that the launcher tests load (some on purpose badly)."""

import os  # noqa: F401  (so that create_app(os) is a non-literal argument that exists)


def _respond(text):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [text.encode()]
    return app


def create_app(name="default", greeting="factory"):
    return _respond(f"{greeting} {name}")


def failing_factory():
    raise RuntimeError("no database")


class _Holder:
    app = staticmethod(_respond("from holder"))


holder = _Holder()
