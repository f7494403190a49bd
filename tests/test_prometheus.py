"""A real Prometheus scrapes --metrics-bind every second while 1 000 requests go to 2 workers,
with one worker killed and one HUP in between: what it stored adds up exactly, the app's own
multiprocess counter too, promtool accepts the page, and every query of
examples/grafana-dashboard.json finds data."""

import json
import math
import os
import signal
import threading

from harness import EXAMPLES
from harness.prometheus import JOB, Prometheus, promtool_check_metrics
from helpers import Client, metrics_server, samples, scrape, total, value, wait_until

REQUESTS = 1000
PHASES = (400, 300, 300)  # before the kill, between the kill and the HUP, after the HUP
DASHBOARD = os.path.join(EXAMPLES, "grafana-dashboard.json")
RATE_INTERVAL = "1m"  # Grafana's $__rate_interval: the whole test


def send(port, count, clients=8):
    """``count`` GET / over ``clients`` keep-alive connections; how many got a 200."""
    answered = []

    def client(share):
        with Client(port, timeout=10) as conn:
            for _ in range(share):
                conn.request("GET", "/")
                answered.append(conn.read_response().status)

    threads = [threading.Thread(target=client, args=(count // clients + (i < count % clients),))
               for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answered.count(200)


def dashboard_queries():
    with open(DASHBOARD) as fh:
        dashboard = json.load(fh)
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = (target["expr"].replace("$__rate_interval", RATE_INTERVAL)
                    .replace("$job", JOB).replace("$instance", ".*"))
            yield panel["title"], expr


def test_prometheus_counts_every_request_across_a_kill_and_a_reload(tmp_path):
    with metrics_server(["-w", "2"], app="prom_app:app") as srv, \
            Prometheus(tmp_path, [f"127.0.0.1:{srv.metrics_port}"]).start() as prometheus:
        # scraping steadily (a machine busy with other work can hold the first scrapes back)
        wait_until(lambda: (prometheus.value(f'count_over_time(up{{job="{JOB}"}}[1m])') or 0)
                   >= 3, timeout=20, message="three scrapes")
        sent = send(srv.port, PHASES[0])
        # A worker adds its counts at the end of each turn of its loop: the last ones before
        # the kill are in (what SIGKILL can lose is at most the turn under way).
        wait_until(lambda: total(samples(srv), "geventserve_requests_total") == sent)
        victim = srv.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in srv.worker_pids() and len(srv.worker_pids()) == 2)
        wait_until(lambda: value(samples(srv), "app_workers_alive") == 2, message="replaced")
        sent += send(srv.port, PHASES[1])
        old = set(srv.worker_pids())
        srv.signal(signal.SIGHUP)
        wait_until(lambda: srv.log.count("] Ready: ") >= 2, message="reloaded")
        wait_until(lambda: not old & set(srv.worker_pids()), message="old workers gone")
        sent += send(srv.port, PHASES[2])
        assert sent == REQUESTS
        prometheus.wait_value("sum(geventserve_requests_total)", REQUESTS)
        prometheus.wait_value('sum(app_requests_total{path="/"})', REQUESTS)
        assert prometheus.value("sum(resets(geventserve_requests_total[5m]))") == 0
        assert prometheus.value("sum(resets(app_requests_total[5m]))") == 0
        prometheus.wait_value('geventserve_worker_restarts_total{reason="signal"}', 1)
        prometheus.wait_value('geventserve_worker_restarts_total{reason="reload"}', 2)
        prometheus.wait_value("sum(app_workers_alive)", 2)
        checked = promtool_check_metrics(scrape(srv).text)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        for title, expr in dashboard_queries():
            wait_until(lambda q=expr: any(not math.isnan(float(r["value"][1]))
                                          for r in prometheus.query(q)),
                       timeout=20, interval=0.5, message=f"data for {title!r}: {expr}")
