"""What ran the numbers: the machine in one line, and the versions of the packages measured."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from typing import Sequence


def machine_line() -> str:
    """CPU model, cores this process may use, kernel and Python, e.g. for a report's header."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores, Linux {platform.release()}, Python "
            f"{platform.python_version()}")


def package_version(name: str) -> str:
    """The installed version of distribution ``name``, "?" if it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def versions(*names: str) -> str:
    """``name version`` of each package, comma-separated."""
    return ", ".join(f"{name} {package_version(name)}" for name in names)


def program_version(name: str, command: Sequence[str], pattern: str) -> str:
    """``NAME VERSION``, the version being group 1 of ``pattern`` in what ``command`` prints
    (``NAME ?`` if it cannot tell)."""
    try:
        out = subprocess.run(list(command), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return f"{name} ?"
    match = re.search(pattern, out.stdout + out.stderr)
    return f"{name} {match.group(1)}" if match else f"{name} ?"
