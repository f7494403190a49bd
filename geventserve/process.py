"""Process chores: titles (with setproctitle when installed), the PID file, fork, exit statuses."""

from __future__ import annotations

import os
import resource
import signal
import sys
from typing import Any, Callable, Iterable, Iterator, Optional, Tuple

from .exits import ExitCode

try:
    from setproctitle import setproctitle as _setproctitle
except ImportError:  # optional: titles are a convenience
    _setproctitle = None


def set_title(role: str, name: str) -> None:
    """geventserve: master [name] / geventserve: worker [name]."""
    if _setproctitle is not None:
        _setproctitle(f"geventserve: {role} [{name}]")


class PidFile:
    """The supervisor's PID file; renamed to <file>.oldbin by a re-exec, removed on exit."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    def running_owner(self) -> Optional[Tuple[int, bool]]:
        """The PID of a geventserve that may still run under this file, and whether that is
        certain; None when there is no file or a stale one (its process is gone, started after
        the file was written, or runs another program)."""
        try:
            with open(self.path) as fh:
                pid = int(fh.read().strip())
            written = os.stat(self.path).st_mtime
        except (OSError, ValueError):
            return None
        if pid <= 0 or pid in (os.getpid(), os.getppid()):  # the parent: a USR2 re-exec
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
        runs = _runs_geventserve(pid, written)
        return None if runs is False else (pid, runs is True)

    def write(self, pid: int) -> None:
        tmp = f"{self.path}.{pid}.tmp"
        try:
            with open(tmp, "w") as fh:
                fh.write(f"{pid}\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            raise OSError(f"cannot write the PID file {self.path!r}: {exc.strerror}") from None

    def rename(self, suffix: str) -> None:
        try:
            os.replace(self.path, self.path + suffix)
            self.path += suffix
        except OSError:
            pass

    def rename_back(self) -> None:
        """Undo rename(): the new supervisor died, this one owns the file again."""
        base, dot, suffix = self.path.rpartition(".")
        if dot:
            try:
                os.replace(self.path, base)
                self.path = base
            except OSError:
                pass

    def remove(self, pid: int) -> None:
        """Remove the file if it still names ``pid`` (a new supervisor may own it now)."""
        try:
            with open(self.path) as fh:
                if fh.read().strip() != str(pid):
                    return
            os.unlink(self.path)
        except OSError:
            pass


def _runs_geventserve(pid: int, written: float) -> Optional[bool]:
    """Whether process ``pid`` is a geventserve supervisor that could have written a PID file
    at time ``written``; None when this cannot be told (not Linux, or hidden)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
        with open(f"/proc/{pid}/stat", "rb") as fh:
            ticks = int(fh.read().rpartition(b")")[2].split()[19])  # field 22: start time
        with open("/proc/stat", "rb") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith(b"btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    if boot + ticks / os.sysconf("SC_CLK_TCK") > written + 1:
        return False  # started after the file was written: the PID was reused
    # "geventserve: master [...]" (its title), ".../geventserve ...", "python -m geventserve ..."
    return (argv[0].startswith(b"geventserve: master") or argv[0].endswith(b"/geventserve")
            or argv[0] == b"geventserve" or argv[1:3] == [b"-m", b"geventserve"])


def original(module: str, name: str) -> Any:
    """The standard-library function, even after gevent has patched the module."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched(module):
        return monkey.get_original(module, name)
    return getattr(__import__(module), name)


def raise_open_files_limit(needed: int) -> Tuple[int, int, bool]:
    """Raise the soft open-files limit towards ``needed`` (up to the hard limit).

    Returns (before, after, enough).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft, soft, True
    target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        return soft, soft, False
    return soft, target, target >= needed



def fork(blocked: Iterable[int], child: Callable[[Any], None]) -> int:
    """fork(2) with the ``blocked`` signals blocked across it, so that the child gets none
    before its own handlers are in place (the parent's would act in the wrong process, the
    defaults kill). The child runs ``child(mask)``, which restores the mask, and never returns
    from here. OSError when the system refuses (EAGAIN: process limits, ENOMEM)."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return pid
    try:
        child(mask)
    finally:
        os._exit(ExitCode.WORKER_BOOT)


def reap() -> Iterator[Tuple[int, int]]:
    """The children that have exited, as (pid, wait status), without waiting for the others."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        if not pid:
            return
        yield pid, status


def describe_exit(status: int) -> str:
    """'exit code 3' or 'signal SIGKILL' for a wait status."""
    if os.WIFSIGNALED(status):
        num = os.WTERMSIG(status)
        try:
            name = signal.Signals(num).name
        except ValueError:
            name = str(num)
        return f"signal {name}" + (" (core dumped)" if os.WCOREDUMP(status) else "")
    return f"exit code {os.WEXITSTATUS(status)}"
