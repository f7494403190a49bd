"""The public API: geventserve.serve(app, **settings) runs the server in the calling process."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading

from helpers import APPS, request, run_command, wait_until

SCRIPT = textwrap.dedent("""
    import sys
    import geventserve

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"served by serve()"]

    sys.exit(geventserve.serve(app, bind=sys.argv[1], workers=1, keepalive=0))
""")


def test_serve_runs_an_app_object(tmp_path):
    script = tmp_path / "embedded.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), "127.0.0.1:0"], cwd=APPS,
                            stderr=subprocess.PIPE, start_new_session=True)
    log = []
    reader = threading.Thread(target=lambda: log.extend(iter(proc.stderr.readline, b"")),
                              daemon=True)
    reader.start()
    try:
        wait_until(lambda: b"Ready:" in b"".join(log), timeout=15)
        port = int(re.search(rb"Listening at: http://127.0.0.1:(\d+)", b"".join(log)).group(1))
        response = request(port, "GET", "/")
        assert response.body == b"served by serve()"
        assert response.header("connection") == "close"  # keepalive=0 was applied
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        reader.join(5)
        proc.stderr.close()


def test_serve_refuses_an_unknown_setting():
    proc = run_command([sys.executable, "-c", "import geventserve; "
                        "geventserve.serve(lambda e, s: [], wrokers=2)"], timeout=20)
    assert proc.returncode != 0
    assert "unknown setting 'wrokers'" in proc.stderr
