"""The benchmark's charts: one SVG per workload, written as text with the standard library only.

Two panels side by side: requests/s per server (a bar each, its ratio to the reference server,
gunicorn, written on it and the figure above it), and latency per server (p50 and p99 side by
side, on a log scale: a gevent worker's p99 can be a thousand times another's). Each bar is a
``rect`` of class ``rps``, ``p50`` or ``p99`` with a ``data-server`` attribute, so a test can
find them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple
from xml.sax.saxutils import escape, quoteattr

#: each server's colour (others take PALETTE's in turn)
COLOURS = {"geventserve": "#2b6cb0", "gunicorn": "#8a8a8a", "granian": "#d97706"}
PALETTE = ("#2f855a", "#9b2c2c", "#6b46c1")
WIDTH, HEIGHT = 840, 390
TOP, PLOT_HEIGHT = 70, 250  # the plots' top edge and height, in px
PANELS = ((60, 330), (480, 330))  # (left edge, width) of the req/s and latency panels


@dataclass(frozen=True)
class Bar:
    """One server's medians for a workload: requests/s, and p50 and p99 in seconds."""

    server: str
    rps: float
    p50: float
    p99: float


def ratio_text(value: float, reference: float) -> str:
    """``value / reference`` as ``"1.76x"`` (``"-"`` when there is no reference)."""
    return f"{value / reference:.2f}x" if reference > 0 else "-"


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return "-" if ms != ms else f"{ms:.1f}" if ms < 10 else f"{ms:.0f}"


def _text(x: float, y: float, text: str, size: int = 12, anchor: str = "middle",
          fill: str = "#222", weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{fill}" font-weight="{weight}">{escape(text)}</text>')


def _rect(kind: str, server: str, x: float, width: float, height: float, fill: str,
          opacity: float = 1.0) -> str:
    y = TOP + PLOT_HEIGHT - height
    return (f'<rect class="{kind}" data-server={quoteattr(server)} x="{x:.1f}" y="{y:.1f}" '
            f'width="{width:.1f}" height="{height:.1f}" fill="{fill}" '
            f'fill-opacity="{opacity:g}"/>')


def _colours(bars: Sequence[Bar]) -> List[str]:
    others = iter(PALETTE * len(bars))
    return [COLOURS.get(bar.server) or next(others) for bar in bars]


def _rps_panel(bars: Sequence[Bar], reference: str) -> List[str]:
    left, width = PANELS[0]
    top = max(bar.rps for bar in bars) or 1.0
    base = next((bar.rps for bar in bars if bar.server == reference), 0.0)
    slot = width / len(bars)
    out = [_text(left + width / 2, TOP - 22, f"requests/s (the ratio to {reference} on the bars)",
                 13, weight="bold")]
    for i, (bar, colour) in enumerate(zip(bars, _colours(bars))):
        x, bar_width = left + slot * i + slot * 0.2, slot * 0.6
        height = max(bar.rps / top * PLOT_HEIGHT, 1.0)
        middle = x + bar_width / 2
        out.append(_rect("rps", bar.server, x, bar_width, height, colour))
        out.append(_text(middle, TOP + PLOT_HEIGHT - height - 6, f"{bar.rps:,.0f}"))
        ratio = ratio_text(bar.rps, base)
        if height >= 24:  # on the bar, else just above the figure
            out.append(_text(middle, TOP + PLOT_HEIGHT - height + 18, ratio, 14, fill="#fff",
                             weight="bold"))
        else:
            out.append(_text(middle, TOP + PLOT_HEIGHT - height - 22, ratio, 14, weight="bold"))
        out.append(_text(middle, TOP + PLOT_HEIGHT + 18, bar.server, 13))
    return out


def _log_range(values: Sequence[float]) -> Tuple[float, float]:
    """Decades (in ms) that hold ``values`` (ms, those > 0)."""
    positive = [v for v in values if v > 0] or [1.0]
    low = 10.0 ** math.floor(math.log10(min(positive)))
    high = 10.0 ** math.ceil(math.log10(max(positive)))
    return low, high if high > low else low * 10


def _latency_panel(bars: Sequence[Bar]) -> List[str]:
    left, width = PANELS[1]
    values = [v * 1000 for bar in bars for v in (bar.p50, bar.p99) if v == v]
    low, high = _log_range(values)
    span = math.log10(high) - math.log10(low)
    out = [_text(left + width / 2, TOP - 22, "latency p50 | p99 (ms, log scale)", 13,
                 weight="bold")]
    decade = low
    while decade <= high * 1.001:  # the decades' grid lines
        y = TOP + PLOT_HEIGHT - (math.log10(decade) - math.log10(low)) / span * PLOT_HEIGHT
        out.append(f'<line x1="{left}" x2="{left + width}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#ddd"/>')
        out.append(_text(left - 4, y + 4, f"{decade:g}", 10, anchor="end", fill="#666"))
        decade *= 10
    slot = width / len(bars)
    for i, (bar, colour) in enumerate(zip(bars, _colours(bars))):
        bar_width = slot * 0.3
        for j, (kind, seconds) in enumerate((("p50", bar.p50), ("p99", bar.p99))):
            x = left + slot * i + slot * 0.2 + j * bar_width
            ms = seconds * 1000
            height = (max((math.log10(ms) - math.log10(low)) / span * PLOT_HEIGHT, 1.0)
                      if ms == ms and ms > 0 else 0.0)
            out.append(_rect(kind, bar.server, x, bar_width, height, colour,
                             0.5 if kind == "p50" else 1.0))
            out.append(_text(x + bar_width / 2, TOP + PLOT_HEIGHT - height - 6, _ms(seconds),
                             11))
            out.append(_text(x + bar_width / 2, TOP + PLOT_HEIGHT + 32, kind, 10, fill="#666"))
        out.append(_text(left + slot * i + slot / 2, TOP + PLOT_HEIGHT + 18, bar.server, 13))
    return out


def workload_chart(title: str, bars: Sequence[Bar], reference: str = "gunicorn",
                   note: str = "") -> str:
    """The SVG document of one workload: ``bars`` (one per server, in that order) under
    ``title``, each server's requests/s with its ratio to ``reference``; ``note`` (how it was
    measured) in small print at the bottom."""
    if not bars:
        raise ValueError("a chart needs at least one server")
    body = [f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
            _text(WIDTH / 2, 26, title, 16, weight="bold"),
            *_rps_panel(bars, reference), *_latency_panel(bars),
            _text(WIDTH / 2, HEIGHT - 14, note, 11, fill="#666")]
    for left, width in PANELS:  # the panels' base lines
        y = TOP + PLOT_HEIGHT
        body.append(f'<line x1="{left}" x2="{left + width}" y1="{y}" y2="{y}" stroke="#444"/>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">\n'
            f'<title>{escape(title)}</title>\n' + "\n".join(body) + "\n</svg>\n")
