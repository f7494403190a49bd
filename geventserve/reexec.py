"""USR2: start a new supervisor from the same command, on the same listening sockets.

The new supervisor finds the sockets' fds in its environment, in the order of --bind, with
where they first came from (systemd's are kept whatever --bind says). The old one goes on
serving until it is sent TERM; its PID file is <file>.oldbin meanwhile.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Callable, Dict, List, Optional

from . import logs
from .exits import ExitCode
from .process import PidFile, describe_exit

if TYPE_CHECKING:  # imported for the annotations only (sockets imports this module)
    from .config import ConfigSource
    from .sockets import ListenerSet

INHERITED_FDS = "GEVENTSERVE_FDS"
INHERITED_FDS_KIND = "GEVENTSERVE_FDS_KIND"


def reexec_environ(fds: List[int], kind: str) -> Dict[str, str]:
    """The environment of the re-executed server: its listeners' fds, and where they came
    from."""
    env = dict(os.environ)
    env[INHERITED_FDS] = ",".join(str(fd) for fd in fds)
    env[INHERITED_FDS_KIND] = kind
    return env


class Reexec:
    """The new supervisor a USR2 started, while it runs (``pid``, 0 when there is none)."""

    def __init__(self) -> None:
        self.pid = 0

    def start(self, source: ConfigSource, listeners: ListenerSet, pidfile: Optional[PidFile],
              before_exec: Callable[[], None]) -> None:
        """Fork and exec ``source``'s command with the current ``listeners``."""
        command = source.reexec_command()
        if self.pid:
            logs.error_log.warning("USR2 ignored: a new supervisor (pid:%d) is already running",
                                   self.pid)
            return
        if command is None:
            logs.error_log.warning("USR2 ignored: re-executing needs the command line "
                                   "(this server was started by serve())")
            return
        fds = [sock.fileno() for sock in listeners.current]
        if pidfile is not None:
            pidfile.rename(".oldbin")  # before the new supervisor writes its own
        try:
            pid = os.fork()
        except OSError as exc:
            if pidfile is not None:
                pidfile.rename_back()
            logs.error_log.error("USR2 failed: cannot fork the new supervisor: %s; this one "
                                 "goes on serving", exc.strerror)
            return
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                for fd in fds:
                    os.set_inheritable(fd, True)
                os.chdir(source.start_dir)
                before_exec()
                os.execve(command[0], command, reexec_environ(fds, listeners.origin))
            finally:
                os._exit(ExitCode.WORKER_BOOT)
        self.pid = pid
        logs.error_log.info("Handling signal: USR2: started a new supervisor (pid:%d) on the "
                            "same sockets; send TERM to this one (pid:%d) once it is ready",
                            pid, os.getpid())

    def reaped(self, pid: int, status: int, pidfile: Optional[PidFile]) -> bool:
        """Whether ``pid`` was the new supervisor; it exited, so this one owns the PID file
        again and keeps serving."""
        if not self.pid or pid != self.pid:
            return False
        logs.error_log.warning("The new supervisor (pid:%d) exited with %s; this one keeps "
                               "serving", pid, describe_exit(status))
        self.pid = 0
        if pidfile is not None and pidfile.path.endswith(".oldbin"):
            pidfile.rename_back()
        return True
