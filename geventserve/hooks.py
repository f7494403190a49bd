"""Calling the server hooks of the config file: a failing hook is logged, never fatal."""

from __future__ import annotations

from typing import Any

from . import logs
from .settings import Config


class HookNames:
    """The attribute names gunicorn's hooks use on the server and worker objects."""

    config: Config

    @property
    def cfg(self) -> Config:
        return self.config

    @property
    def log(self) -> Any:
        return logs.error_log


def call(config: Config, name: str, *args: Any) -> None:
    """Run hook ``name`` if the config file defines it; log (and swallow) its exception."""
    function = config.values.get(name)
    if function is None:
        return
    try:
        function(*args)
    except Exception:
        logs.error_log.exception("The %s hook failed (the server carries on)", name)


def defined(config: Config, name: str) -> bool:
    return config.values.get(name) is not None
