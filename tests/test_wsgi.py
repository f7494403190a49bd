"""The WSGI layer (PEP 3333): environ, wsgi.input, start_response, write, close, errors."""

import json
import signal
import socket
import subprocess

import pytest

from helpers import Client, request


def environ_of(server, path="/environ", **kw):
    response = request(server.port, "GET", path, **kw)
    assert response.status == 200, response.text
    return json.loads(response.body)


# -- environ ------------------------------------------------------------------------------

def test_required_environ_keys(server):
    environ = environ_of(server, "/environ?a=1&b=%20")
    for key in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
                "SERVER_PORT", "SERVER_PROTOCOL", "wsgi.version", "wsgi.url_scheme",
                "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "REMOTE_ADDR",
                "REMOTE_PORT", "RAW_URI", "SERVER_SOFTWARE", "wsgi.input_terminated"):
        assert key in environ, key
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/environ"
    assert environ["QUERY_STRING"] == "a=1&b=%20"
    assert environ["RAW_URI"] == "/environ?a=1&b=%20"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["wsgi.version"] == [1, 0]
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.run_once"] is False
    assert environ["wsgi.multiprocess"] is False  # one worker
    assert environ["wsgi.input_terminated"] is True
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["REMOTE_PORT"].isdigit()
    assert environ["wsgi.errors_has_write"] and environ["wsgi.file_wrapper_present"]
    assert environ["SERVER_SOFTWARE"].startswith("geventserve/")


def test_server_name_and_port_from_host(server):
    environ = environ_of(server, host="example.com:8080")
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.com", "8080")
    assert environ["HTTP_HOST"] == "example.com:8080"
    environ = environ_of(server, host="example.com")
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.com", "80")
    environ = environ_of(server, host="[::1]:81")
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("[::1]", "81")


def test_server_name_from_the_socket_for_http10_without_host(server):
    response = request(server.port, "GET", "/environ", version="HTTP/1.0", host=None)
    environ = json.loads(response.body)
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", str(server.port))


def test_path_info_is_percent_decoded_as_latin1(server):
    environ = environ_of(server, "/environ/caf%C3%A9/%2F/a%20b?x=%C3%A9")
    assert environ["PATH_INFO"] == "/environ/caf\u00c3\u00a9///a b"
    assert environ["QUERY_STRING"] == "x=%C3%A9"
    assert environ["RAW_URI"] == "/environ/caf%C3%A9/%2F/a%20b?x=%C3%A9"


def test_absolute_form_target(server):
    environ = environ_of(server, "http://other.example:8081/environ?q=1", host="ignored")
    assert environ["PATH_INFO"] == "/environ"
    assert environ["QUERY_STRING"] == "q=1"
    assert environ["HTTP_HOST"] == "other.example:8081"
    assert environ["SERVER_NAME"] == "other.example"


def test_absolute_form_ipv6_host_keeps_its_brackets(server):
    environ = environ_of(server, "http://[::1]:8081/environ")
    assert environ["HTTP_HOST"] == "[::1]:8081"
    assert environ["SERVER_NAME"] == "[::1]"
    assert environ["SERVER_PORT"] == "8081"


def test_host_without_a_name_keeps_server_name(server):
    environ = environ_of(server, host=":8081")
    assert environ["SERVER_NAME"] == "127.0.0.1"
    assert environ["SERVER_PORT"] == "8081"


def test_headers_in_environ(server):
    environ = environ_of(server, headers=[("X-Multi", "a"), ("X-Multi", "b"), ("Cookie", "a=1"),
                                          ("Cookie", "b=2"), ("Content-Type", "text/x-test"),
                                          ("x-lower", "kept")])
    assert environ["HTTP_X_MULTI"] == "a,b"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["CONTENT_TYPE"] == "text/x-test"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert environ["HTTP_X_LOWER"] == "kept"


def test_content_length_in_environ(server):
    response = request(server.port, "POST", "/environ", body=b"abc")
    environ = json.loads(response.body)
    assert environ["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_LENGTH" not in environ


def test_latin1_header_values(server):
    with Client(server.port) as client:
        client.send(b"GET /environ HTTP/1.1\r\nHost: a\r\nX-Latin: caf\xe9\r\n\r\n")
        environ = json.loads(client.read_response().body)
    assert environ["HTTP_X_LATIN"] == "caf\u00e9"


def test_multiprocess_flag_with_several_workers():
    from helpers import Server

    with Server(["-w", "2"]) as srv:
        assert environ_of(srv)["wsgi.multiprocess"] is True


# -- wsgi.input ---------------------------------------------------------------------------

def test_read_with_size_and_eof(server):
    response = request(server.port, "POST", "/echo-sized?4", body=b"0123456789")
    assert json.loads(response.body) == {"parts": ["0123", "4567", "89"], "eof": ""}


def test_read_sized_from_chunked_body(server):
    with Client(server.port) as client:
        client.send(b"POST /echo-sized?3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"2\r\nab\r\n5\r\ncdefg\r\n0\r\n\r\n")
        assert json.loads(client.read_response().body) == {"parts": ["abc", "def", "g"], "eof": ""}


def test_readline_readlines(server):
    body = b"first line\nsecond\nthird\nlast without newline"
    response = request(server.port, "POST", "/echo-lines", body=body)
    assert json.loads(response.body) == {
        "first": "first line\n", "limited": "se", "rest": ["cond\n", "third\n", "last without newline"],
        "end": ""}


def test_input_iteration(server):
    response = request(server.port, "POST", "/echo-iter", body=b"a\nb\n\nc")
    assert json.loads(response.body) == ["a\n", "b\n", "\n", "c"]


def test_input_without_body(server):
    response = request(server.port, "GET", "/echo")
    assert response.status == 200 and response.body == b""


# -- start_response, write, close ---------------------------------------------------------

def test_start_response_called_from_the_iterable(server):
    assert request(server.port, "GET", "/late-start").body == b"late"


def test_write_callable(server):
    assert request(server.port, "GET", "/write").body == b"written,returned"


def test_exc_info_replaces_headers_before_they_are_sent(server):
    response = request(server.port, "GET", "/exc-info")
    assert response.status == 500
    assert response.header("x-replaced") == "yes"
    assert response.body == b"replaced"


def test_exc_info_after_headers_sent_aborts(server):
    with Client(server.port) as client:
        client.request("GET", "/exc-info-after")
        head = client._read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert client.closed_by_server()
        assert b"0\r\n\r\n" not in client.buffer  # the response is left incomplete
    server.wait_for_log("ValueError: too late")


def test_second_start_response_without_exc_info_is_an_error(server):
    assert request(server.port, "GET", "/twice").status == 500


def test_close_called_after_success(server):
    before = int(request(server.port, "GET", "/closed-count").text)
    request(server.port, "GET", "/stream")
    assert int(request(server.port, "GET", "/closed-count").text) == before + 1


def test_close_called_after_error_in_iteration(server):
    before = int(request(server.port, "GET", "/closed-count").text)
    with Client(server.port) as client:
        client.request("GET", "/error-after")
        assert client.closed_by_server()
    assert int(request(server.port, "GET", "/closed-count").text) == before + 1


def test_close_called_when_client_disconnects(gevent_server):
    before = int(request(gevent_server.port, "GET", "/closed-count").text)
    with Client(gevent_server.port) as client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.request("GET", "/too-short")
    # the response of a reset connection still has close() called
    for _ in range(50):
        if int(request(gevent_server.port, "GET", "/closed-count").text) == before + 1:
            break
    assert int(request(gevent_server.port, "GET", "/closed-count").text) == before + 1


def test_error_in_close_is_logged(server):
    response = request(server.port, "GET", "/error-in-close")
    assert response.body == b"ok"
    assert request(server.port, "GET", "/").status == 200
    server.wait_for_log("close failed")


# -- errors -------------------------------------------------------------------------------

def test_exception_before_headers_gives_500(server):
    pid = request(server.port, "GET", "/pid").text
    response = request(server.port, "GET", "/error-before")
    assert response.status == 500
    assert b"RuntimeError" not in response.body  # no traceback to the client
    server.wait_for_log("boom before the headers")
    assert "Traceback" in server.log
    assert request(server.port, "GET", "/pid").text == pid


def test_exception_in_a_head_request_gives_500_without_a_body(server):
    with Client(server.port) as client:
        client.request("HEAD", "/error-before")
        response = client.read_response("HEAD")
        assert response.status == 500
        assert client.closed_by_server()
        assert client.buffer == b"", "a body followed the head of a HEAD response"


def test_exception_after_headers_closes_the_connection(server):
    with Client(server.port) as client:
        client.request("GET", "/error-after")
        head = client._read_until(b"\r\n\r\n")
        assert b"200 OK" in head and b"Transfer-Encoding: chunked" in head
        assert client.closed_by_server()
        assert client.buffer.endswith(b"first chunk\r\n")  # no terminating chunk


@pytest.mark.parametrize("kind", ["crlf", "lf", "nul", "name", "colon", "bytes", "value-type",
                                  "non-latin1", "cl"])
def test_invalid_header_gives_500_and_is_never_sent(server, kind):
    with Client(server.port) as client:
        client.request("GET", f"/bad-header?{kind}")
        response = client.read_response()
        assert response.status == 500
        assert b"Injected" not in response.raw_head and b"X-Bad" not in response.raw_head
        assert b"never be sent" not in response.body


@pytest.mark.parametrize("kind", ["crlf", "short", "text", "int", "over"])
def test_invalid_status_gives_500(server, kind):
    response = request(server.port, "GET", f"/bad-status?{kind}")
    assert response.status == 500
    assert b"X: y" not in response.raw_head


def test_namedtuple_headers_and_str_subclasses_are_accepted(server):
    response = request(server.port, "GET", "/odd-headers")
    assert response.status == 200
    assert (response.header("x-named"), response.header("x-safe")) == ("tuple", "str")


def test_non_bytes_body_gives_500(server):
    assert request(server.port, "GET", "/not-bytes").status == 500


def test_no_start_response_gives_500(server):
    assert request(server.port, "GET", "/no-start-response").status == 500


def test_wsgi_errors_goes_to_the_error_log(server):
    assert request(server.port, "GET", "/errors-stream").status == 200
    server.wait_for_log("written to wsgi.errors")


# -- wsgi.file_wrapper --------------------------------------------------------------------

def test_file_wrapper_sends_the_file(server):
    response = request(server.port, "GET", "/file?300000", timeout=10)
    assert response.header("content-length") == "300000"
    assert response.body == bytes(i % 251 for i in range(300000))


def test_file_wrapper_from_current_position(server):
    assert request(server.port, "GET", "/file-offset").body == b"456789"


def test_file_wrapper_over_non_file(server):
    assert request(server.port, "GET", "/file-bytesio").body == b"from bytesio"


@pytest.mark.parametrize("worker_class", ["gevent", "sync"])
def test_file_wrapper_uses_sendfile(worker_class):
    """A real file goes out through sendfile(2), watched with strace on the worker."""
    from helpers import Server

    with Server(["-k", worker_class, "-w", "1"]) as srv:
        worker = srv.worker_pids()[0]
        tracer = subprocess.Popen(["strace", "-f", "-e", "trace=sendfile", "-p", str(worker)],
                                  stderr=subprocess.PIPE, text=True)
        try:
            assert "attached" in tracer.stderr.readline()
            response = request(srv.port, "GET", "/file?4000000", timeout=20)
            assert len(response.body) == 4000000
        finally:
            tracer.send_signal(signal.SIGINT)
            output = tracer.communicate(timeout=10)[1]
    calls = [line for line in output.splitlines() if "sendfile(" in line]
    assert calls, output
    assert sum(int(line.rsplit("=", 1)[1]) for line in calls if "EAGAIN" not in line) == 4000000


def test_head_with_file_wrapper(gevent_server):
    with Client(gevent_server.port) as client:
        client.request("HEAD", "/file?1000")
        response = client.read_response("HEAD")
        assert response.header("content-length") == "1000"
        client.request("GET", "/pid")  # no byte of the file came between the two
        assert client.read_response().body.isdigit()
