"""Metric families rendered in Prometheus's text format (0.0.4) or in OpenMetrics 1.0.

A family is anything with prometheus_client's attribute names (``name``, ``type``,
``documentation``, ``samples`` of (name, labels, value)), so that the app's multiprocess
metrics, read with prometheus_client, render beside the server's own. The supervisor renders
the same series again and again: the text of each label set is kept (``_LABEL_TEXTS``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Tuple

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

Sample = Tuple[str, Dict[str, str], float]  # name, labels, value


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
        self.samples.append((self.name + suffix, labels, value))
        return self


def histogram(name: str, documentation: str, bounds: Iterable[float], counts: List[int],
              total: float, **labels: str) -> Family:
    """A histogram family from per-bucket (not cumulative) counts, the last one for +Inf."""
    family = Family(name, "histogram", documentation)
    samples, bucket = family.samples, name + "_bucket"
    cumulative = 0
    for le, count in zip(_le_labels(tuple(bounds)), counts):
        cumulative += count
        samples.append((bucket, {**labels, "le": le}, cumulative))
    samples.append((name + "_count", labels, cumulative))
    samples.append((name + "_sum", labels, total))
    return family


@functools.lru_cache(maxsize=8)
def _le_labels(bounds: Tuple[float, ...]) -> List[str]:
    return [number(float(bound)) for bound in bounds] + ["+Inf"]


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
    if type(value) is int:
        return str(value)
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


_LABEL_TEXTS: Dict[Tuple[Tuple[str, Any], ...], str] = {}


def _labels(labels: Dict[str, Any]) -> str:
    if not labels:
        return ""
    key = tuple(labels.items())
    text = _LABEL_TEXTS.get(key)
    if text is None:
        text = "{" + ",".join(f'{name}="{_escape(str(value))}"' for name, value in key) + "}"
        if len(_LABEL_TEXTS) > 10_000:
            _LABEL_TEXTS.clear()  # label values come and go (an app's): start afresh
        _LABEL_TEXTS[key] = text
    return text


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
        lines += [f"{sample[0]}{_labels(sample[1])} {number(sample[2])}"
                  for sample in family.samples]
    if openmetrics:
        lines.append("# EOF")
    return ("\n".join(lines) + "\n").encode("utf-8"), OPENMETRICS if openmetrics else TEXT
