"""systemd's notify protocol: a unix datagram socket made here stands for systemd ($NOTIFY_SOCKET, a
path or an abstract @name), and reads what the server says through start, HUP, USR2 and TERM."""

import os
import signal
import socket
import time

import pytest

from helpers import Server, wait_until


class FakeSystemd:
    """The receiving end of $NOTIFY_SOCKET: each datagram as {field: value}."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.messages = []

    def read(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                return self.messages
            self.messages.append(dict(line.split("=", 1) for line in data.decode().split("\n")))

    def wait_for(self, field, value=None, start=0, timeout=15):
        def found():
            return next((m for m in self.read()[start:] if field in m
                         and (value is None or m[field] == value)), None)
        return wait_until(found, timeout=timeout, message=f"{field}={value} from the server")

    def close(self):
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def systemd(request, tmp_path):
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
        fake, env = FakeSystemd(address), address
    else:
        name = f"geventserve-test-{os.getpid()}-{time.monotonic_ns()}"
        fake, env = FakeSystemd("\0" + name), "@" + name
    fake.env = {"NOTIFY_SOCKET": env}
    yield fake
    fake.close()


def test_start_hup_usr2_term(systemd, tmp_path):
    pidfile = tmp_path / "gs.pid"
    with Server(["-w", "2", "--pid", str(pidfile)], env=systemd.env) as srv:
        ready = systemd.wait_for("READY", "1")
        assert ready["MAINPID"] == str(srv.pid)
        assert ready["STATUS"] == "Serving with 2 worker(s)"
        # -- HUP: RELOADING=1 with the monotonic clock, then READY=1 once the new workers serve
        mark = len(systemd.read())
        hup_at = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        srv.signal(signal.SIGHUP)
        reloading = systemd.wait_for("RELOADING", "1", start=mark)
        assert hup_at <= int(reloading["MONOTONIC_USEC"]) <= hup_at + 5_000_000
        after = systemd.wait_for("READY", "1", start=mark)
        assert systemd.messages.index(reloading) < systemd.messages.index(after)
        assert "MAINPID" not in after
        # -- TTIN: the count in STATUS follows
        srv.signal(signal.SIGTTIN)
        systemd.wait_for("STATUS", "Serving with 3 worker(s)", start=mark)
        # -- USR2: the new supervisor says it is the main process once it serves
        mark = len(systemd.read())
        srv.signal(signal.SIGUSR2)
        new_pid = int(srv.wait_for_log(r"started a new supervisor \(pid:(\d+)\)").group(1))
        handover = systemd.wait_for("MAINPID", str(new_pid), start=mark, timeout=30)
        assert handover["READY"] == "1"
        # -- TERM to the old one: it leaves without a word (the new one is the service now)
        mark = len(systemd.read())
        srv.signal(signal.SIGTERM)
        assert srv.wait(20) == 0
        time.sleep(0.3)
        assert systemd.read()[mark:] == []
        # -- TERM to the new one: STOPPING=1
        os.kill(new_pid, signal.SIGTERM)
        stopping = systemd.wait_for("STOPPING", "1", start=mark)
        assert stopping["STATUS"] == "Stopping"
        wait_until(lambda: not os.path.exists(f"/proc/{new_pid}/fd"), timeout=20,
                   message="the new supervisor gone")


def test_failed_reload_still_says_ready(systemd, tmp_path):
    """A HUP whose settings do not load (here: a config file broken meanwhile) keeps the
    workers serving; systemd must hear READY=1 again, or the unit stays 'reloading'."""
    conf = tmp_path / "gs.conf.py"
    conf.write_text("workers = 1\n")
    with Server(["-c", str(conf)], env=systemd.env) as srv:
        systemd.wait_for("READY", "1")
        mark = len(systemd.read())
        conf.write_text("workers = 'many'\n")
        srv.signal(signal.SIGHUP)
        srv.wait_for_log("Reload failed")
        systemd.wait_for("RELOADING", "1", start=mark)
        systemd.wait_for("READY", "1", start=mark)


def test_term_with_a_drain_delay_says_stopping_at_once(systemd):
    with Server(["-w", "1", "--drain-delay", "5"], env=systemd.env) as srv:
        systemd.wait_for("READY", "1")
        srv.signal(signal.SIGTERM)
        systemd.wait_for("STOPPING", "1", timeout=2)
        assert srv.proc.poll() is None  # still draining
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0


def test_no_notify_socket_is_no_harm():
    with Server(["-w", "1"], env={"NOTIFY_SOCKET": "/nonexistent/notify.sock"}) as srv:
        srv.signal(signal.SIGHUP)
        srv.wait_for_log("Ready:", count=2)
        srv.signal(signal.SIGTERM)
        assert srv.wait(10) == 0

