"""A full pool makes room (http/eviction.py): Service.make_room, run from the event loop as the
gevent worker runs it, closes the idle keep-alive connection or the one that has sent the least
of its head, the oldest first among equals, and never one whose request is being served.

In-process over socketpairs with gevent's cooperative sockets; the pytest process is not
patched."""

import gevent
import gevent.event
from gevent import socket as gsocket
from test_connection import FakeClock, Peer

from geventserve.http import eviction
from geventserve.http.service import Service
from geventserve.settings import Config


class Clients:
    """Several connections served by one real Service, each from a socketpair."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.release = gevent.event.Event()
        self.service = Service(self.app, Config(), multiprocess=False, multithread=True,
                               current_task=gevent.getcurrent, clock=self.clock)
        self.listener = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
        self.service.add_listener(self.listener)
        self.peers = {}
        self.tasks = {}

    def app(self, environ, start_response):
        if environ["PATH_INFO"] == "/block":
            self.release.wait(5)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    def connect(self, name: str, send: bytes = b"") -> Peer:
        """A new connection that sends ``send``, once the server has taken it in."""
        before = set(self.service.connections)
        server, client = gsocket.socketpair()
        client.settimeout(5)
        self.peers[name] = peer = Peer(client)
        self.tasks[name] = gevent.spawn(self.service.serve, server, "", self.listener)
        self.until(lambda: len(self.service.connections) > len(before))
        conn = (self.service.connections - before).pop()
        if send:
            peer.send(send)
            self.until(lambda: conn.request is not None or conn.idle
                       or conn.head_received >= len(send))
        self.settle()
        self.clock.advance(1)
        return peer

    @staticmethod
    def until(predicate) -> None:
        with gevent.Timeout(5):
            while not predicate():
                gevent.sleep(0.001)

    def settle(self) -> None:
        """Let the connections run until they wait again."""
        for _ in range(5):
            gevent.sleep(0.01)

    def make_room(self) -> bool:
        """Service.make_room from the event loop, as the gevent worker runs it."""
        done = gevent.event.AsyncResult()
        gevent.get_hub().loop.run_callback(lambda: done.set(self.service.make_room()))
        made = done.get(timeout=5)
        self.settle()
        return made

    def close(self) -> None:
        self.release.set()
        for peer in self.peers.values():
            peer.sock.close()
        gevent.killall(list(self.tasks.values()), timeout=5)
        self.listener.close()


def test_room_is_made_idle_first_then_least_head_oldest_first_never_a_request_served():
    clients = Clients()
    try:
        clients.connect("serving", b"GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
        idle = clients.connect("idle", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert idle.response()[2] == b"ok"
        clients.settle()
        clients.connect("five bytes", b"GET /")
        clients.connect("one byte", b"G")
        clients.connect("silent")
        assert len(clients.service.connections) == 5
        order = []
        while clients.make_room():
            gone = [name for name, task in clients.tasks.items()
                    if task.dead and name not in order]
            assert len(gone) == 1, gone
            assert clients.peers[gone[0]].closed()
            order.append(gone[0])
        assert order == ["idle", "silent", "one byte", "five bytes"]
        assert not clients.tasks["serving"].dead  # its request is being served: never chosen
        clients.release.set()
        assert clients.peers["serving"].response()[2] == b"ok"
    finally:
        clients.close()


def test_a_connection_just_accepted_is_left_alone():
    """Its head is likely on its way: it may be the very client room is made for."""
    clients = Clients()
    try:
        clients.connect("silent")
        clients.clock.advance(-1)  # accepted just now
        assert not clients.make_room()
        clients.clock.advance(eviction.GRACE)
        assert clients.make_room()
    finally:
        clients.close()


def test_a_connection_whose_request_is_served_is_never_chosen():
    clients = Clients()
    try:
        clients.connect("serving", b"GET /block HTTP/1.1\r\nHost: a\r\n\r\n")
        assert eviction.choose(clients.service.connections, clients.clock()) is None
        assert not clients.make_room()
    finally:
        clients.close()
