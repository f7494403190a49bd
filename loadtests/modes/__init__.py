"""The modes of loadtests/run.py, a module each (run, compare, seeds, chat), and what they all
share: paths, exit codes, errors."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.process import ProcessError

HERE = Path(__file__).resolve().parent.parent  # loadtests/
ROOT = HERE.parent
EXAMPLES = ROOT / "examples"
REPORTS = HERE / "reports"
README = HERE / "README.md"
LOCUSTFILE_IO = HERE / "locustfile_io.py"
LOCUSTFILE_HELLO = HERE / "locustfile_hello.py"
LOCUSTFILE_CHAT = HERE / "locustfile_chat.py"

EXIT_FAILURES = 1
EXIT_SERVER = 3
EXIT_LOCUST = 4


class StartError(ProcessError):
    """A server did not start, or did not answer its first requests."""


class LocustError(Exception):
    """Locust exited abnormally or left no statistics."""


def require(*paths: Path) -> None:
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.exists()]
    if missing:
        raise StartError("missing: " + ", ".join(missing))


def print_header(title: str) -> None:
    print(f"\n== {title}", flush=True)


def positive(text: str) -> int:
    """An argparse type: an integer of 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text}")
    return value


def write_section(readme: Path, start: str, end: str, section: str) -> None:
    """Replace what is between the markers ``start`` and ``end`` of ``readme`` with
    ``section`` (a table a mode measured)."""
    text = readme.read_text()
    first, last = text.find(start), text.find(end)
    if first < 0 or last < first:
        raise StartError(f"{readme} has no {start} ... {end} section")
    readme.write_text(text[:first + len(start)] + "\n" + section + "\n" + text[last:])
