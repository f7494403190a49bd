"""The benchmark's short form: bench/bench.py run for real on the plain hello with its three
servers (one round of 1 s, into a temporary --results), and bench/charts.py on fixed numbers."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from types import ModuleType
from typing import Dict, List

from harness import ROOT
from harness.process import run_command

SVG = "{http://www.w3.org/2000/svg}"
SERVERS = ("geventserve", "gunicorn", "granian")


def load_charts() -> ModuleType:
    """bench/charts.py by its path (bench/ on sys.path would shadow other modules: apps)."""
    spec = importlib.util.spec_from_file_location("bench_charts",
                                                  os.path.join(ROOT, "bench", "charts.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def bars_of(svg: ET.Element, kind: str) -> Dict[str, float]:
    """The heights of the bars of class ``kind``, by server."""
    return {rect.get("data-server", ""): float(rect.get("height", "nan"))
            for rect in svg.iter(f"{SVG}rect") if rect.get("class") == kind}


def texts_of(svg: ET.Element) -> List[str]:
    return [text.text or "" for text in svg.iter(f"{SVG}text")]


def test_chart_on_fixed_numbers() -> None:
    charts = load_charts()
    bars = [charts.Bar("geventserve", 6893.0, 0.0133, 0.0239),
            charts.Bar("gunicorn", 3922.0, 0.0275, 2.22),
            charts.Bar("granian", 8850.0, 0.0116, 0.0358)]
    svg = ET.fromstring(charts.workload_chart("Flask hello, <100> & more", bars, note="a note"))
    assert svg.tag == f"{SVG}svg"
    rps = bars_of(svg, "rps")
    assert rps["gunicorn"] < rps["geventserve"] < rps["granian"]
    p50, p99 = bars_of(svg, "p50"), bars_of(svg, "p99")
    assert p50["granian"] < p50["geventserve"] < p50["gunicorn"]
    assert p99["geventserve"] < p99["granian"] < p99["gunicorn"]
    assert all(p50[server] < p99[server] for server in SERVERS)
    texts = texts_of(svg)
    for ratio in ("1.76x", "1.00x", "2.26x"):  # each server's req/s over gunicorn's, on its bar
        assert ratio in texts
    assert "Flask hello, <100> & more" in texts and "a note" in texts
    assert "6,893" in texts and "2220" in texts  # the figures: req/s, p99 in ms


def test_chart_without_the_reference() -> None:
    charts = load_charts()
    svg = ET.fromstring(charts.workload_chart("one", [charts.Bar("geventserve", 10.0, 0.001,
                                                                 float("nan"))]))
    assert "-" in texts_of(svg)  # no gunicorn to compare with, no p99: said, not drawn
    assert bars_of(svg, "p99") == {"geventserve": 0.0}


def test_bench_short_form(tmp_path) -> None:
    """One round of 1 s of the plain hello on the three servers: the table has a row of numbers
    for each, geventserve's with its two ratios, and the chart shows the same ratio."""
    command = [sys.executable, os.path.join(ROOT, "bench", "bench.py"), "--workloads", "plain",
               "--rounds", "1", "--duration", "1", "--servers", ",".join(SERVERS),
               "--results", str(tmp_path)]
    done = run_command(command, timeout=90, env={**os.environ, "BENCH_QUICK": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {}
    for line in done.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0].startswith("plain WSGI hello"):
            rows[cells[1]] = cells
    assert sorted(rows) == sorted(SERVERS), done.stdout
    for cells in rows.values():
        assert float(cells[2]) > 0, cells  # req/s
        assert re.fullmatch(r"[\d.]+ ms", cells[3]) and re.fullmatch(r"[\d.]+ ms", cells[4])
    to_gunicorn, to_granian = rows["geventserve"][-2:]
    assert re.fullmatch(r"\d+\.\d\dx", to_gunicorn) and re.fullmatch(r"\d+\.\d\dx", to_granian)
    assert rows["gunicorn"][-2:] == ["", ""] and rows["granian"][-2:] == ["", ""]

    figures = json.loads((tmp_path / "latest.json").read_text())
    assert sorted(figures["results"]["plain"]) == sorted(SERVERS)
    assert (tmp_path / "latest.md").read_text() == done.stdout.rstrip("\n") + "\n"
    svg = ET.parse(tmp_path / "plain.svg").getroot()
    assert sorted(bars_of(svg, "rps")) == sorted(SERVERS)
    texts = texts_of(svg)
    assert to_gunicorn in texts and "1.00x" in texts
