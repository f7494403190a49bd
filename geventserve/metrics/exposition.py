"""Metric families rendered in Prometheus's text format (0.0.4) or in OpenMetrics 1.0.

A family is anything with prometheus_client's attribute names (``name``, ``type``,
``documentation``, ``samples`` of (name, labels, value)), so that the app's multiprocess
metrics, read with prometheus_client, render beside the server's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, NamedTuple, Tuple

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


class Sample(NamedTuple):
    name: str
    labels: Dict[str, str]
    value: float


@dataclass
class Family:
    """One metric: ``name`` without the _total of a counter (OpenMetrics' family name)."""

    name: str
    type: str  # counter, gauge, histogram
    documentation: str
    samples: List[Sample] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> Family:
        """A sample; a counter's is named <name>_total unless ``suffix`` says otherwise."""
        if not suffix and self.type == "counter":
            suffix = "_total"
        self.samples.append(Sample(self.name + suffix, labels, value))
        return self


def histogram(name: str, documentation: str, bounds: Iterable[float], counts: List[int],
              total: float, **labels: str) -> Family:
    """A histogram family from per-bucket (not cumulative) counts, the last one for +Inf."""
    family = Family(name, "histogram", documentation)
    cumulative = 0
    for bound, count in zip([*bounds, math.inf], counts):
        cumulative += count
        family.add(cumulative, "_bucket", **labels, le=number(bound))
    family.add(cumulative, "_count", **labels)
    family.add(total, "_sum", **labels)
    return family


def wants_openmetrics(accept: str) -> bool:
    """Whether an Accept header asks for OpenMetrics (Prometheus's does, first)."""
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        if media.strip().lower() != "application/openmetrics-text":
            continue
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def number(value: float) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return f"{value:.1f}"
    return repr(float(value))


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _labels(labels: Dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels.items()) + "}"


# prometheus_client's types that the text format names otherwise
_TEXT_TYPES = {"unknown": "untyped", "info": "gauge", "stateset": "gauge",
               "gaugehistogram": "histogram"}


def render(families: Iterable[Any], openmetrics: bool = False) -> Tuple[bytes, str]:
    """(body, content type) of ``families``."""
    lines: List[str] = []
    for family in families:
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        if openmetrics:
            lines.append("# HELP {} {}".format(family.name, help_text.replace('"', r"\"")))
            lines.append(f"# TYPE {family.name} {family.type}")
        else:
            name = family.name + ("_total" if family.type == "counter" else "")
            name += "_info" if family.type == "info" else ""
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {_TEXT_TYPES.get(family.type, family.type)}")
        for sample in family.samples:
            lines.append(f"{sample[0]}{_labels(sample[1])} {number(sample[2])}")
    if openmetrics:
        lines.append("# EOF")
    return ("\n".join(lines) + "\n").encode("utf-8"), OPENMETRICS if openmetrics else TEXT
