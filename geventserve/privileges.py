"""--user, --group, --umask, --initgroups: the supervisor binds the sockets and opens its files as
the user that started it (root, for a port below 1024) and stays that user; each worker takes the
user and group after the fork, before the app is imported.

The supervisor stays root, as gunicorn's does: a reload (HUP) may bind a new low port and open
new log files, a re-exec (USR2) starts a supervisor that must do the same, and only root may
signal and kill workers of another user in every case. It runs no application code (unless
--preload, which imports the app as root as gunicorn does).
"""

from __future__ import annotations

import os
import pwd
from typing import Iterable, Optional, Tuple

from .settings import Config

Owner = Tuple[int, int]  # uid, gid; -1 leaves one unchanged (as chown(2) takes it)


def owner(config: Config) -> Optional[Owner]:
    """Whom the workers run as, None when neither --user nor --group is given. Without
    --group, the user's own group (gunicorn would keep root's group 0)."""
    uid, gid = config.user, config.group
    if uid is None and gid is None:
        return None
    if gid is None:
        gid = pwd.getpwuid(uid).pw_gid
    return (-1 if uid is None else uid), gid


def set_umask(config: Config) -> None:
    """--umask, in the supervisor before it binds (unix sockets take it) and for its workers."""
    if config.umask is not None:
        os.umask(config.umask)


def give(config: Config, paths: Iterable[str]) -> None:
    """Give files the supervisor made (log files, unix sockets) to the workers' user, so that
    they can write to them (a log file they reopen on USR1); only root may."""
    who = owner(config)
    if who is None or os.geteuid() != 0:
        return
    for path in paths:
        try:
            os.chown(path, *who)
        except OSError:
            pass  # gone meanwhile, or a file system without owners: nothing to give


def become(config: Config) -> None:
    """In a worker just forked: take --group (and no supplementary group but the user's with
    --initgroups), then --user, for good (real, effective and saved ids); OSError if not
    allowed."""
    who = owner(config)
    if who is None:
        return
    uid, gid = who
    if uid == os.geteuid() and gid == os.getegid():
        return
    if os.geteuid() == 0:  # root's supplementary groups must not stay with the worker
        if config.initgroups and uid >= 0:
            os.initgroups(pwd.getpwuid(uid).pw_name, gid)
        else:
            os.setgroups([gid])
    os.setresgid(gid, gid, gid)
    if uid >= 0:
        os.setresuid(uid, uid, uid)


def describe(config: Config) -> str:
    """'nobody (65534:65534)', for the messages."""
    who = owner(config)
    if who is None:
        return "unchanged"
    uid, gid = who
    try:
        name = pwd.getpwuid(uid).pw_name if uid >= 0 else "-"
    except KeyError:
        name = str(uid)
    return f"{name} ({uid}:{gid})"
