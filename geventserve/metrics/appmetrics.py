"""The app's own metrics: prometheus_client in multiprocess mode, served on --metrics-bind.

The supervisor points PROMETHEUS_MULTIPROC_DIR at a fresh directory per start (unless the user
set one) before the first fork, marks each worker that ends as dead the way prometheus_client
expects (``mark_process_dead``), and merges the workers' files when scraped.

prometheus_client's package imports ssl, http.server and urllib.request: a gevent worker forked
from a supervisor holding those would patch ssl after its import, which gevent warns against and
which breaks SSLContext subclasses. So, unless the real package is loaded already (an app
preloaded in the supervisor, after patching), the supervisor loads only the multiprocess module
and what that imports (no ssl, no socket users) under a stand-in package, then takes them out
of sys.modules again: the workers import the real package as usual.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import types
from typing import Any, List, MutableMapping, Optional

from .. import logs

ENV = "PROMETHEUS_MULTIPROC_DIR"
#: the directory a supervisor made itself (a re-executed one makes its own)
OWN_DIR_ENV = "GEVENTSERVE_PROMETHEUS_DIR"


def load_multiprocess() -> Optional[Any]:
    """prometheus_client.multiprocess, loaded without the package's imports (see above); None
    when prometheus_client is not installed."""
    if "prometheus_client" in sys.modules:
        return importlib.import_module("prometheus_client.multiprocess")
    spec = importlib.util.find_spec("prometheus_client")
    if spec is None or not spec.submodule_search_locations:
        return None
    stand_in = types.ModuleType("prometheus_client")
    stand_in.__path__ = list(spec.submodule_search_locations)
    sys.modules["prometheus_client"] = stand_in
    try:
        return importlib.import_module("prometheus_client.multiprocess")
    finally:
        for name in [n for n in sys.modules
                     if n == "prometheus_client" or n.startswith("prometheus_client.")]:
            del sys.modules[name]


class AppMetrics:
    """The multiprocess directory of this start, and what the supervisor does with it."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        path = environ.get(ENV, "")
        self.created = not path or path == environ.get(OWN_DIR_ENV)
        if self.created:
            path = tempfile.mkdtemp(prefix="geventserve-prometheus-")
            environ[ENV] = environ[OWN_DIR_ENV] = path
        else:
            os.makedirs(path, exist_ok=True)
        self.path = path
        self._module: Any = None  # prometheus_client.multiprocess once looked for; False: none

    def _multiprocess(self) -> Any:
        if self._module is None:
            try:
                self._module = load_multiprocess() or False
            except Exception:
                logs.error_log.warning("cannot load prometheus_client: the app's metrics are "
                                       "not served", exc_info=True)
                self._module = False
        return self._module

    def _files(self) -> List[str]:
        try:
            return os.listdir(self.path)
        except OSError:
            return []

    def families(self) -> List[Any]:
        """The app's metrics, merged over the workers (none without prometheus_client or
        before the app wrote any)."""
        if not any(name.endswith(".db") for name in self._files()):
            return []
        module = self._multiprocess()
        if not module:
            return []
        try:
            return list(module.MultiProcessCollector(None, self.path).collect())
        except Exception:  # a file being created, or damaged by a worker killed mid-write
            logs.error_log.debug("cannot read the app's metrics", exc_info=True)
            return []

    def worker_ended(self, pid: int) -> None:
        if not any(name.endswith(f"_{pid}.db") for name in self._files()):
            return
        module = self._multiprocess()
        if module:
            module.mark_process_dead(pid, self.path)

    def remove(self) -> None:
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
