"""Mode ``chat``: the Flask-SocketIO chat room (examples/chat.py) under geventserve -k gevent,
its users on open WebSockets (locustfile_chat.py); fails if anything failed: a connection, a
join, a message not heard back, lost or misrouted, a connection the server closed."""

from __future__ import annotations

import argparse
from contextlib import ExitStack

from harness.ports import free_port
from loadtests.modes import EXAMPLES, LOCUSTFILE_CHAT, REPORTS, StartError, print_header, require
from loadtests.modes.measure import conclude, run_locust
from loadtests.modes.servers import preflight, start_server

HELP = "geventserve -k gevent serving examples/chat.py (Socket.IO over WebSockets)"
CONNECT_TIMEOUT = 15.0  # seconds for the check's own Socket.IO connection


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # One worker: Socket.IO keeps its rooms in the worker's memory (with more, a room's members
    # on other workers never hear each other). Every user holds a WebSocket and hears all the
    # messages of its room, so the work grows as users x users / rooms: a few hundred users
    # are what one locust process on a small machine can check.
    parser.set_defaults(workers=1, users=200, spawn_rate=50)


def check_websocket(base: str) -> None:
    """One Socket.IO client connects over the WebSocket transport alone and joins a room, or
    locust would only count failures."""
    import socketio

    client = socketio.Client(reconnection=False)
    try:
        client.connect(base, transports=["websocket"], wait_timeout=CONNECT_TIMEOUT)
        client.call("join", {"room": "check", "name": "check"}, timeout=CONNECT_TIMEOUT)
    except Exception as exc:
        raise StartError(f"chat: a Socket.IO client could not connect over a WebSocket and "
                         f"join: {type(exc).__name__}: {exc}") from None
    finally:
        client.disconnect()


def main(args: argparse.Namespace) -> int:
    require(EXAMPLES / "chat.py", LOCUSTFILE_CHAT)
    label = f"geventserve -k gevent -w {args.workers}"
    print_header(f"{label}: examples/chat.py, {args.users} users on WebSockets, "
                 f"{args.spawn_rate:g}/s, {args.run_time}")
    base = f"http://127.0.0.1:{free_port()}"
    with ExitStack() as stack:
        server = start_server(stack, "geventserve", "gevent", args.workers,
                              [base[len("http://"):]], "chat:app",
                              max(args.worker_connections, args.users + 100),
                              REPORTS / "chat_server.log", ready_url=base + "/", name=label)
        preflight(base, ["/"], label)
        check_websocket(base)
        stats = run_locust(LOCUSTFILE_CHAT, base, "chat", args, [("chat (geventserve)",
                                                                  server.pid)])
    return conclude(stats, "chat")
