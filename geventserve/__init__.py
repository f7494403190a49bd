"""geventserve: a pre-forking WSGI server whose gevent workers serve I/O-bound apps.

The public API is small: ``serve(app, **settings)`` runs the server in this process, with the
same settings as the command line (``geventserve --help``).
"""

from __future__ import annotations

from typing import Any, Callable

__version__ = "0.1.0"
SERVER_SOFTWARE = f"geventserve/{__version__}"

__all__ = ["__version__", "serve"]


def serve(app: Callable[..., Any], **settings: Any) -> int:
    """Serve the WSGI callable ``app`` with the given settings; return the exit status.

    ``settings`` take the names of the config file (``bind``, ``workers``, ``worker_class``...);
    a wrong name or value raises SettingError. The call blocks until the server stops (SIGTERM,
    SIGINT, SIGQUIT); the workers are forked from the calling process.
    """
    from .config import FixedConfig
    from .settings import Config
    from .startup import configure_logs
    from .supervisor import Supervisor

    config = Config()
    for name, value in settings.items():
        config.set(name, value, source="serve()")
    config.check()
    configure_logs(config)
    return Supervisor(FixedConfig(config), config, app=app).run()
