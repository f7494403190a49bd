"""A module whose callable is named 'app' (not 'application')."""


def app(environ, start_response):
    start_response("200 OK", [])
    return [b"from app"]
