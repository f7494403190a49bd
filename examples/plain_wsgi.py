"""Hello world as a bare WSGI function (PEP 3333), no framework.

Run it: .venv/bin/geventserve -k gevent -w 2 -b 127.0.0.1:8000 --chdir examples plain_wsgi:app
"""

BODY = b"Hello, World!\n"


def app(environ, start_response):
    # Content-Length lets the server keep the connection alive without chunking the body.
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]


application = app  # the name a bare `plain_wsgi` spec looks for first
