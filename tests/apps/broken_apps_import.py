"""An app whose own import fails: a dependency that is not installed."""

import not_installed_dependency  # noqa: F401


def app(environ, start_response):
    start_response("200 OK", [])
    return [b""]
