"""--user, --group, --umask, --initgroups, as root: the supervisor binds a port below 1024 and a
unix socket and stays root; its workers run as the user (read from /proc/PID/status), through HUP
and USR2; the log files stay writable by the workers across USR1 (logrotate)."""

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import uuid

import pytest

from helpers import Client, Server, children, request, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
NOBODY = 65534


def ids(pid, field):
    """The ids of /proc/PID/status line ``field`` (Uid, Gid: real, effective, saved, fs)."""
    with open(f"/proc/{pid}/status") as fh:
        line = next(line for line in fh if line.startswith(field + ":"))
    return [int(x) for x in line.split()[1:]]


@pytest.fixture(scope="module", autouse=True)
def python_readable_by_others():
    """A worker that runs as another user imports the standard library after the switch, as
    it would from /usr/lib/python3 on a usual system. This machine's Python may live under a
    home directory only root may enter (/root, 0700): let others through it (not list it) for
    the tests, and put the modes back afterwards."""
    changed = []
    for path in {sysconfig.get_paths()["stdlib"], os.path.realpath(sys.executable)}:
        path = os.path.realpath(path)
        while path != "/":
            mode = os.stat(path).st_mode
            if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
                os.chmod(path, stat.S_IMODE(mode) | stat.S_IXOTH)
                changed.append((path, stat.S_IMODE(mode)))
            path = os.path.dirname(path)
    yield
    for path, mode in changed:
        os.chmod(path, mode)


@pytest.fixture
def folder():
    """A folder every user may enter (pytest's tmp_path is root's own): log files, socket."""
    path = tempfile.mkdtemp(prefix="gs-priv-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def free_low_port():
    for port in range(1023, 900, -1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


def owner(path):
    info = os.stat(path)
    return info.st_uid, info.st_gid


def start(args, folder, port, **kw):
    """A server whose error log is a file: ready once that file says so."""
    error_log = os.path.join(folder, "error.log")
    srv = Server(["--error-logfile", error_log, *args], wait=False,
                 bind=[f"127.0.0.1:{port}", f"unix:{folder}/gs.sock"], **kw)
    try:
        wait_until(lambda: "Ready:" in _read(error_log) or srv.exited() is not None,
                   timeout=20, message="Ready in the error log")
        assert srv.exited() is None, _read(error_log) + srv.log
    except BaseException:
        srv.stop()
        raise
    srv.error_log = error_log
    return srv


def _read(path):
    try:
        with open(path) as fh:
            return fh.read()
    except FileNotFoundError:
        return ""


def workers_of(srv, supervisor=None):
    """The workers of ``srv``, or of another ``supervisor`` (one started by USR2)."""
    pids = srv.worker_pids() if supervisor is None else children(supervisor)
    return [pid for pid in pids if _is_worker(pid)]


def _is_worker(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().startswith(b"geventserve: worker")
    except OSError:
        return False


def test_workers_run_as_the_user_through_usr1_hup_and_usr2(folder):
    port = free_low_port()
    access = os.path.join(folder, "access.log")
    pidfile = os.path.join(folder, "gs.pid")
    srv = start(["-w", "2", "--user", "nobody", "--umask", "007", "--access-logfile", access,
                 "--pid", pidfile], folder, port)
    try:
        wait_until(lambda: len(workers_of(srv)) == 2, message="2 workers")
        assert ids(srv.pid, "Uid")[:3] == [0, 0, 0]  # the supervisor stays root
        for pid in workers_of(srv):
            assert ids(pid, "Uid") == [NOBODY] * 4
            assert ids(pid, "Gid") == [NOBODY] * 4  # nobody's own group, not root's 0
            assert ids(pid, "Groups") == [NOBODY]  # none of root's supplementary groups
        assert request(port, "GET", "/").body == b"hello"
        with Client(unix=f"{folder}/gs.sock") as client:
            client.request("GET", "/pid")
            assert int(client.read_response().text) in workers_of(srv)
        sock_info = os.stat(f"{folder}/gs.sock")
        assert (sock_info.st_uid, stat.S_IMODE(sock_info.st_mode)) == (NOBODY, 0o770)
        for path in (access, srv.error_log):
            assert owner(path) == (NOBODY, NOBODY), path
        assert owner(pidfile)[0] == 0

        # -- USR1 after logrotate moved the files: new files, given to the user, written to
        for path in (access, srv.error_log):
            os.rename(path, path + ".1")
        srv.signal(signal.SIGUSR1)
        wait_until(lambda: os.path.exists(srv.error_log), message="a new error log")
        wait_until(lambda: request(port, "GET", "/after-usr1").status == 404 and
                   "/after-usr1" in _read(access), timeout=10, message="a worker logs to it")
        for path in (access, srv.error_log):
            assert owner(path) == (NOBODY, NOBODY), path
        assert "cannot reopen" not in _read(srv.error_log) + _read(srv.error_log + ".1")

        # -- HUP: the new workers are the user too
        before = set(workers_of(srv))
        srv.signal(signal.SIGHUP)
        wait_until(lambda: len(set(workers_of(srv)) - before) == 2
                   and not before & set(workers_of(srv)), timeout=20, message="new workers")
        for pid in workers_of(srv):
            assert ids(pid, "Uid")[1] == NOBODY

        # -- USR2: a new supervisor (root) on the same sockets, its workers the user
        srv.signal(signal.SIGUSR2)
        wait_until(lambda: os.path.exists(pidfile) and os.path.exists(pidfile + ".oldbin")
                   and _read(pidfile).strip() != str(srv.pid), timeout=20,
                   message="the new supervisor's PID file")
        new = int(_read(pidfile))
        wait_until(lambda: len(workers_of(srv, new)) == 2, timeout=20, message="its workers")
        assert ids(new, "Uid")[1] == 0
        for pid in workers_of(srv, new):
            assert ids(pid, "Uid")[1] == NOBODY
        srv.signal(signal.SIGTERM)
        srv.wait(20)
        assert request(port, "GET", "/").body == b"hello"
        os.rename(access, access + ".2")
        os.kill(new, signal.SIGUSR1)
        wait_until(lambda: request(port, "GET", "/after-usr2").status == 404 and
                   "/after-usr2" in _read(access), timeout=10, message="reopened after USR2")
        assert owner(access) == (NOBODY, NOBODY)
        os.kill(new, signal.SIGTERM)
        wait_until(lambda: not os.path.exists(f"/proc/{new}/fd"), timeout=20,
                   message="the new supervisor gone")
        assert not os.path.exists(pidfile)
    finally:
        srv.stop()


@pytest.fixture
def temporary_user():
    """A user made for the test, in a second group; both removed afterwards."""
    name = f"gst{uuid.uuid4().hex[:8]}"
    extra = f"{name}x"
    subprocess.run(["groupadd", extra], check=True, timeout=30)
    try:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", "--groups", extra, name], check=True, timeout=30)
        try:
            import grp
            import pwd
            yield pwd.getpwnam(name), grp.getgrnam(extra).gr_gid
        finally:
            subprocess.run(["userdel", name], timeout=30)
    finally:
        subprocess.run(["groupdel", extra], timeout=30)


@pytest.mark.parametrize("initgroups", [False, True])
def test_initgroups_gives_the_users_groups(folder, temporary_user, initgroups):
    user, extra_gid = temporary_user
    port = free_low_port()
    srv = start(["-w", "1", "--user", user.pw_name, "--group", str(user.pw_gid),
                 *(["--initgroups"] if initgroups else [])], folder, port)
    try:
        wait_until(lambda: workers_of(srv), message="a worker")
        (worker,) = workers_of(srv)
        assert ids(worker, "Uid")[1] == user.pw_uid
        assert ids(worker, "Gid")[1] == user.pw_gid
        expected = {user.pw_gid, extra_gid} if initgroups else {user.pw_gid}
        assert set(ids(worker, "Groups")) == expected
    finally:
        srv.stop()


def test_a_worker_that_may_not_switch_says_so():
    """Started as a user that may not switch (here: the supervisor itself runs as nobody),
    the workers fail to boot with one line naming the user; exit 3, as for a boot failure."""
    srv = Server(["-w", "1", "--user", "root"], wait=False, bind=["127.0.0.1:0"],
                 preexec_fn=lambda: (os.setgid(NOBODY), os.setuid(NOBODY)))
    try:
        assert srv.wait(30) == 3
    finally:
        srv.stop()
    assert "worker cannot run as root (0:0): Operation not permitted" in srv.log, srv.log
