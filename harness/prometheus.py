"""Prometheus run for real (Debian's package): one scrape job on the targets given, every
second, its data in a working directory, its HTTP API queried; and promtool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
from typing import Any, Dict, List, Optional, Sequence

from harness.ports import free_port
from harness.probe import http_get
from harness.process import Process, ProcessError

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
JOB = "geventserve"


def promtool_check_metrics(text: str) -> subprocess.CompletedProcess:
    """``promtool check metrics`` on a text exposition: its exit status and findings."""
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)


class Prometheus(Process):
    """Prometheus scraping ``targets`` (HOST:PORT) every ``interval`` seconds, listening on a
    free loopback port (``port``), everything it writes in ``workdir``; a harness Process."""

    def __init__(self, workdir: str, targets: Sequence[str], interval: float = 1.0) -> None:
        workdir = str(workdir)
        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w") as fh:
            fh.write(f"global:\n  scrape_interval: {interval:g}s\n"
                     f"  scrape_timeout: {interval:g}s\n"
                     f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n"
                     f"      - targets: {json.dumps(list(targets))}\n")
        self.port = free_port()
        super().__init__(
            [PROMETHEUS, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}",
             f"--storage.tsdb.path={os.path.join(workdir, 'data')}", "--log.level=warn"],
            name="prometheus", cwd=workdir, log=os.path.join(workdir, "prometheus.out"),
            stop_timeout=10)

    def start(self, timeout: float = 30.0) -> Prometheus:
        """Start it and wait until it says it is ready."""
        super().start()
        self.wait_answer(f"http://127.0.0.1:{self.port}/-/ready", timeout=timeout,
                         accept=lambda status: status == 200)
        return self

    def query(self, expr: str) -> List[Dict[str, Any]]:
        """An instant query: the result vector ([{"metric": {...}, "value": [t, "v"]}])."""
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": expr}))
        status, body = http_get(url, timeout=10)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise ProcessError(f"prometheus refused {expr!r}: {answer.get('error', status)}")
        return answer["data"]["result"]

    def value(self, expr: str) -> Optional[float]:
        """The single value of ``expr`` (None when it has no data)."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, expr: str, wanted: float, timeout: float = 15.0) -> float:
        deadline = time.monotonic() + timeout
        while True:
            found = self.value(expr)
            if found == wanted:
                return found
            if time.monotonic() > deadline:
                raise ProcessError(f"prometheus: {expr} is {found}, not {wanted}, after "
                                   f"{timeout:g}s")
            time.sleep(0.2)
