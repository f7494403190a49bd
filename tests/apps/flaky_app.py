"""An app whose import fails while the file named by $FLAKY_FLAG exists (a database down)."""

import os

if os.path.exists(os.environ.get("FLAKY_FLAG", "/nonexistent")):
    raise RuntimeError("database down")


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
