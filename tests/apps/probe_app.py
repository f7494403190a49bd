"""The application the Http11Probe replay runs behind (tests/test_http_probe.py), as the probe
expects of the servers it scores: GET / says OK, POST / echoes its body, /echo echoes the
request's fields, OPTIONS says which methods it takes (204), other methods get 405."""

ALLOW = "GET, HEAD, POST, OPTIONS"


def app(environ, start_response):
    method = environ["REQUEST_METHOD"]
    if environ["PATH_INFO"] == "/echo":
        lines = [f"{key[5:].replace('_', '-').title()}: {value}"
                 for key, value in environ.items() if key.startswith("HTTP_")]
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if key in environ:
                lines.append(f"{key.replace('_', '-').title()}: {environ[key]}")
        body = ("\n".join(lines) + "\n").encode("latin-1")
    elif method in ("GET", "HEAD"):
        body = b"OK"
    elif method == "POST":
        body = environ["wsgi.input"].read()
    elif method == "OPTIONS":
        start_response("204 No Content", [("Allow", ALLOW)])
        return [b""]
    else:
        start_response("405 Method Not Allowed", [("Allow", ALLOW), ("Content-Type", "text/plain"),
                                                  ("Content-Length", "18")])
        return [b"Method Not Allowed"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
