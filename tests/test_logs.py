"""Error log (time, level, pid) and access log (common log format, plus referer and agent)."""

import re
import sys

from helpers import Client, Server, request, run_command, wait_until

ERROR_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[(\d+)\] \[(INFO|WARNING|ERROR|DEBUG|CRITICAL)\] ")
ACCESS_LINE = re.compile(
    r'^(\S+) - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "(.*?)" (\d{3}) (\d+|-) "(.*?)" "(.*?)"$')


def test_error_log_lines_have_time_pid_and_level():
    with Server(["-w", "1"]) as srv:
        request(srv.port, "GET", "/error-before")
        srv.wait_for_log("boom before the headers")
    lines = [line for line in srv.lines if line.startswith("[")]
    assert lines and all(ERROR_LINE.match(line) for line in lines), lines
    pids = {ERROR_LINE.match(line).group(1) for line in lines}
    assert str(srv.pid) in pids and len(pids) >= 2  # the supervisor's and the worker's


def test_access_log_to_stdout_in_common_log_format():
    with Server(["-w", "1", "--access-logfile", "-"]) as srv:
        request(srv.port, "GET", "/pid?x=1", headers=[("Referer", "http://ref/"),
                                                      ("User-Agent", "tester/1.0")])
        request(srv.port, "POST", "/echo", body=b"12345")
        with Client(srv.port) as client:
            client.send(b"GET /pid HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
            client.read_response()
        request(srv.port, "GET", "/")  # flushes ordering: the bad request was logged before
    lines = [line for line in srv.out_lines if ACCESS_LINE.match(line)]
    lines = lines[[i for i, line in enumerate(lines) if "/pid?x=1" in line][0]:]
    assert len(lines) >= 4, srv.stdout
    first = ACCESS_LINE.match(lines[0]).groups()
    assert first == ("127.0.0.1", "GET /pid?x=1 HTTP/1.1", "200", first[3], "http://ref/", "tester/1.0")
    assert int(first[3]) > 0
    post = ACCESS_LINE.match(lines[1]).groups()
    assert post[1:4] == ("POST /echo HTTP/1.1", "200", "5")
    assert ACCESS_LINE.match(lines[2]).group(3) == "400"


def test_access_log_to_file(tmp_path):
    path = tmp_path / "access.log"
    with Server(["-w", "1", "--access-logfile", str(path)]) as srv:
        request(srv.port, "GET", "/")
    assert any(ACCESS_LINE.match(line) for line in path.read_text().splitlines())


def test_no_access_log_by_default():
    with Server(["-w", "1"]) as srv:
        request(srv.port, "GET", "/")
    assert not any(ACCESS_LINE.match(line) for line in srv.out_lines + srv.lines)


def test_error_log_to_file(tmp_path):
    path = tmp_path / "error.log"
    with Server(["-w", "1", "--error-logfile", str(path)], wait=False):
        wait_until(lambda: path.exists() and "Ready:" in path.read_text(), timeout=15)
    assert "Listening at" in path.read_text()
    assert "Shutting down" in path.read_text()


def test_unwritable_log_file_is_one_line():
    proc = run_command([sys.executable, "-m", "geventserve", "--access-logfile",
                        "/nonexistent-dir/access.log", "wsgi_app:app"], timeout=20)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "cannot open log file" in proc.stderr


def test_access_log_format_atoms():
    fmt = ('%(h)s|%(l)s|%(u)s|%(r)s|%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(b)s|%(f)s|%(a)s|'
           '%(T)s|%(M)s|%(D)s|%(L)s|%(p)s|%({x-custom}i)s|%({content-type}o)s|%({REMOTE_PORT}e)s')
    with Server(["-w", "1", "--access-logfile", "-", "--access-logformat", fmt]) as srv:
        request(srv.port, "GET", "/environ?q=1", headers=[("X-Custom", "abc"), ("Referer", "r"),
                                                         ("User-Agent", "ua")])
        request(srv.port, "GET", "/")
    line = [x for x in srv.out_lines if "/environ?q=1" in x][0]
    fields = line.split("|")
    assert fields[:9] == ["127.0.0.1", "-", "-", "GET /environ?q=1 HTTP/1.1", "GET", "/environ",
                          "q=1", "HTTP/1.1", "200"]
    assert int(fields[9]) > 0 and fields[9] == fields[10]
    assert fields[11:13] == ["r", "ua"]
    assert fields[13] == "0" and int(fields[14]) < 1000 and int(fields[15]) > 0
    assert float(fields[16]) < 1
    assert fields[17].startswith("<") and fields[17][1:-1].isdigit()
    assert fields[18:20] == ["abc", "text/plain"]
    assert fields[20].isdigit()


def test_access_log_json():
    import json

    with Server(["-w", "1", "--access-logfile", "-", "--access-log-json"]) as srv:
        request(srv.port, "POST", "/echo?x=2", body=b"12345", headers=[("User-Agent", "ua")])
        request(srv.port, "GET", "/")
    records = [json.loads(line) for line in srv.out_lines if line.startswith("{")]
    post = [r for r in records if r["method"] == "POST"][0]
    assert post["path"] == "/echo" and post["query"] == "x=2" and post["status"] == 200
    assert post["bytes"] == 5 and post["user_agent"] == "ua" and post["remote_addr"] == "127.0.0.1"
    assert post["duration_ms"] >= 0 and isinstance(post["pid"], int)


def test_capture_output_sends_prints_to_the_error_log(tmp_path):
    path = tmp_path / "error.log"
    with Server(["-w", "1", "--error-logfile", str(path), "--capture-output"],
                app="print_app:app", wait=False) as srv:
        wait_until(lambda: path.exists() and "Ready:" in path.read_text(), timeout=15)
        port = int(re.search(r"Listening at: http://127.0.0.1:(\d+)", path.read_text()).group(1))
        request(port, "GET", "/")
        wait_until(lambda: "printed by the app" in path.read_text(), timeout=5)
    assert "printed by the app" not in srv.stdout
