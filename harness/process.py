"""A command run in a process group of its own, its output kept, always stopped by PID."""

from __future__ import annotations

import ctypes
import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, TypeVar

from harness.probe import http_get
from harness.procfs import children

#: Variables of the calling shell that would change a server's settings behind the caller's back.
SERVER_ENV_DROP = ("GEVENTSERVE_CMD_ARGS", "GUNICORN_CMD_ARGS", "WEB_CONCURRENCY", "FLASK_APP",
                   "FLASK_DEBUG", "FLASK_RUN_PORT", "FLASK_RUN_HOST")


_Owner = TypeVar("_Owner", bound="ProcessOwner")


class ProcessError(Exception):
    """A process did not do what was awaited: it exited, or a log line or an answer never came."""


def server_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """This process's environment for a server: unbuffered output, none of SERVER_ENV_DROP, and
    loopback never through the shell's proxy; then ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV_DROP}
    env["PYTHONUNBUFFERED"] = "1"
    bypass = "127.0.0.1,localhost,::1"
    for name in ("no_proxy", "NO_PROXY"):
        env[name] = f"{env[name]},{bypass}" if env.get(name) else bypass
    env.update(extra or {})
    return env


PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent() -> None:
    """A Popen ``preexec_fn``: the child gets SIGKILL when the process that started it dies, so
    a run killed by a timeout leaves no server behind."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Process:
    """A command in a process group of its own, stopped by PID (its group's) whatever happens.

    Its output is kept in memory (stderr in ``lines``, stdout in ``out_lines``) or, given ``log``,
    written to that file, both streams after a first line with the command (``append`` keeps what
    the file had). ``start()`` runs it; ``stop()`` sends ``stop_signal`` to the group and SIGKILL
    to what is left after ``stop_timeout`` seconds.
    """

    def __init__(self, cmd: Sequence[str], *, name: str = "", cwd: Optional[str] = None,
                 env: Optional[Dict[str, str]] = None, log: Optional[str] = None,
                 append: bool = False, stop_signal: int = signal.SIGTERM,
                 stop_timeout: float = 8.0, **popen: Any) -> None:
        self.cmd = [str(arg) for arg in cmd]
        self.name = name or os.path.basename(self.cmd[0])
        self.cwd, self.env, self.popen = cwd, env, popen
        self.log_path = str(log) if log else None
        self.append = append
        self.stop_signal, self.stop_timeout = stop_signal, stop_timeout
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self._log_start = 0  # where this run's output starts in the log file
        self._err: List[str] = []
        self._out: List[str] = []
        self._lock = threading.Lock()
        self._readers: List[threading.Thread] = []

    def start(self) -> Process:
        popen = dict(self.popen, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                     start_new_session=True)
        if self.log_path is None:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         **popen)
            self._readers = [threading.Thread(target=self._read, args=(stream, sink), daemon=True)
                             for stream, sink in ((self.proc.stderr, self._err),
                                                  (self.proc.stdout, self._out))]
            for reader in self._readers:
                reader.start()
            return self
        with open(self.log_path, "ab" if self.append else "wb") as out:
            out.write(("$ " + " ".join(self.cmd) + "\n").encode())
            out.flush()
            self._log_start = out.tell()
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, **popen)
        return self

    def _read(self, stream: IO[bytes], sink: List[str]) -> None:
        for raw in iter(stream.readline, b""):
            with self._lock:
                sink.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.pid

    @property
    def lines(self) -> List[str]:
        """What it logged so far, a line an item: its stderr, or its part of the log file."""
        if self.log_path is None:
            with self._lock:
                return list(self._err)
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_start)
                return fh.read().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return []

    @property
    def out_lines(self) -> List[str]:
        """Its stdout so far, when kept in memory (with a log file, stdout is in the log)."""
        with self._lock:
            return list(self._out)

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    @property
    def stdout(self) -> str:
        return "\n".join(self.out_lines)

    def log_excerpt(self, lines: int = 30) -> str:
        """For an error message: the log in memory whole, or the path and tail of the file."""
        if self.log_path is None:
            return f"log:\n{self.log}"
        tail = "\n".join("    " + line for line in self.lines[-lines:])
        return f"its log ({self.log_path}):\n{tail}"

    def exited(self) -> Optional[int]:
        """The exit code, or None while it runs (or before it started)."""
        return None if self.proc is None else self.proc.poll()

    def wait_for_log(self, pattern: str, timeout: float = 10.0, start: int = 0,
                     count: int = 1) -> re.Match:
        """The ``count``-th line from line ``start`` on where ``pattern`` is found, once logged."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            code = self.exited()
            if code is not None:
                for reader in self._readers:  # the last lines may still be in the pipe
                    reader.join(0.2)
            found = [match for match in map(regex.search, self.lines[start:]) if match]
            if len(found) >= count:
                return found[count - 1]
            times = f" {count} times" if count > 1 else ""
            self._give_up_if(code, deadline, f"logging {pattern!r}{times}", timeout)
            time.sleep(0.02)

    def wait_answer(self, url: str, timeout: float = 15.0,
                    accept: Optional[Callable[[int], bool]] = None) -> int:
        """Poll ``url`` until a GET is answered (with a status ``accept`` takes); the status."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            try:
                status, _ = http_get(url, timeout=2)
                if accept is None or accept(status):
                    return status
                last = f"status {status}"
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            self._give_up_if(self.exited(), deadline, f"answering {url}", timeout, f" ({last})")
            time.sleep(0.05)

    def wait_ready(self, ready: Callable[[], bool], timeout: float = 15.0) -> None:
        """Poll ``ready()`` until it is true (ProcessError if the process exits or ``timeout``
        passes first)."""
        deadline = time.monotonic() + timeout
        while not ready():
            self._give_up_if(self.exited(), deadline, "answering", timeout)
            time.sleep(0.05)

    def _give_up_if(self, code: Optional[int], deadline: float, what: str, timeout: float,
                    detail: str = "") -> None:
        """Raise ProcessError if it exited (``code``) or ``deadline`` passed before ``what``."""
        if code is not None:
            raise ProcessError(f"{self.name} exited ({code}) before {what}; "
                               f"{self.log_excerpt()}")
        if time.monotonic() > deadline:
            raise ProcessError(f"{self.name}: still not {what} after {timeout:g}s{detail}; "
                               f"{self.log_excerpt()}")

    def worker_pids(self) -> List[int]:
        """Its live children (a supervisor's workers)."""
        return children(self.pid)

    def signal(self, sig: int) -> None:
        """``sig`` to the process itself (not its group)."""
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None, f"{self.name} not started"
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """``stop_signal`` to the whole group, then SIGKILL to whatever is left of it (workers
        that outlived their parent share its group). Safe to call again."""
        if self.proc is None:
            return
        pid = self.proc.pid
        if self.proc.poll() is None:
            try:
                os.killpg(pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                print(f"{self.name} (pid {pid}) still running {self.stop_timeout:g}s after "
                      f"{signal.Signals(self.stop_signal).name}: killed", file=sys.stderr)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            print(f"{self.name} (pid {pid}) did not die", file=sys.stderr)
        for reader in self._readers:
            reader.join(2)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ProcessOwner:
    """A server run as one Process (``process``, set once started): stopped by ``stop()`` or on
    leaving a ``with`` block."""

    process: Optional[Process] = None

    def stop(self) -> None:
        """Its process stopped (see Process.stop); safe to call again."""
        if self.process is not None:
            self.process.stop()

    def __enter__(self: _Owner) -> _Owner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_command(cmd: Sequence[str], timeout: float = 30.0,
                **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """subprocess.run with text output, in a session of its own: whatever the command leaves
    behind (a supervisor's workers) is killed with its process group, also on a timeout."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.returncode is None:
            proc.communicate()
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)
