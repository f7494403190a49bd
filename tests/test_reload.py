"""--reload for development: editing the app's source restarts the workers with the new code."""

import time

import pytest

from helpers import Server, request, wait_until

APP = ("import helper_module\n"
       "def app(environ, start_response):\n"
       "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
       "    return [{body!r} + helper_module.SUFFIX]\n")


@pytest.mark.parametrize("worker_class", ["gevent", "sync"])
def test_editing_the_app_changes_the_response(tmp_path, worker_class):
    (tmp_path / "reload_app.py").write_text(APP.format(body=b"first"))
    (tmp_path / "helper_module.py").write_text("SUFFIX = b'-one'\n")
    template = tmp_path / "page.html"
    template.write_text("v1")
    with Server(["-k", worker_class, "-w", "1", "--reload", "--chdir", str(tmp_path),
                 "--reload-extra-file", str(template)], app="reload_app:app",
                env={"PYTHONDONTWRITEBYTECODE": "1"}) as srv:
        assert request(srv.port, "GET", "/").body == b"first-one"
        time.sleep(1.1)  # a different modification time than the first write
        (tmp_path / "reload_app.py").write_text(APP.format(body=b"second"))
        started = time.monotonic()
        wait_until(lambda: request(srv.port, "GET", "/").body == b"second-one", timeout=10)
        assert time.monotonic() - started < 5
        # a module the app imports is watched too
        (tmp_path / "helper_module.py").write_text("SUFFIX = b'-two'\n")
        wait_until(lambda: request(srv.port, "GET", "/").body == b"second-two", timeout=10)
        # and an extra file
        count = srv.log.count("Reloading:")
        template.write_text("v2")
        wait_until(lambda: srv.log.count("Reloading:") > count, timeout=10)
    assert "Reloading: reload_app.py changed" in srv.log


def test_broken_code_does_not_start_a_fork_loop(tmp_path):
    (tmp_path / "reload_app.py").write_text(APP.format(body=b"good"))
    (tmp_path / "helper_module.py").write_text("SUFFIX = b''\n")
    with Server(["-w", "1", "--reload", "--chdir", str(tmp_path)], app="reload_app:app",
                env={"PYTHONDONTWRITEBYTECODE": "1"}) as srv:
        time.sleep(1.1)
        (tmp_path / "reload_app.py").write_text("import missing_dependency_xyz\n")
        srv.wait_for_log("Reload failed: importing 'reload_app' failed")
        time.sleep(2.0)  # a fork loop would fail several times a second meanwhile
        assert srv.log.count("Reload failed") == 1
        assert request(srv.port, "GET", "/").body == b"good"
        (tmp_path / "reload_app.py").write_text(APP.format(body=b"fixed"))
        wait_until(lambda: request(srv.port, "GET", "/").body == b"fixed", timeout=10)
