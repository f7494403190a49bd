"""An app inside a package."""


def app(environ, start_response):
    start_response("200 OK", [])
    return [b"from a package"]
