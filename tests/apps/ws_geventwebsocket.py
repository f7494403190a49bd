"""Apps written for gevent-websocket's API (environ["wsgi.websocket"]) for the WebSocket tests.

``app``: a plain WSGI app; on a WebSocket request it echoes every message, answers ``version``
with environ["wsgi.websocket_version"] and ``close`` by closing; on ``/decline`` it answers 403
without touching the WebSocket (so no handshake must have been sent); other requests get a page.
``resource``: gevent-websocket's own ``Resource`` routing, with a ``WebSocketApplication`` on
``/chat`` that sends each message to every client of the server (``ws.handler.server.clients``,
as gevent-websocket's chat example does).
"""

from geventwebsocket import Resource, WebSocketApplication


def app(environ, start_response):
    ws = environ.get("wsgi.websocket")
    if ws is None:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ws_geventwebsocket\n"]
    if environ["PATH_INFO"] == "/decline":
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"declined\n"]
    while True:
        message = ws.receive()
        if message is None:
            break
        if message == "version":
            ws.send(environ["wsgi.websocket_version"])
        elif message == "close":
            ws.close()
            break
        else:
            ws.send(message)
    return []


class Chat(WebSocketApplication):
    def on_message(self, message, *args, **kwargs):
        if message is None:
            return
        for client in list(self.ws.handler.server.clients.values()):
            client.ws.send(message)


def index(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ws_geventwebsocket resource\n"]


resource = Resource([("^/chat", Chat), ("^/", index)])
