"""gunicorn's logging configs: ``--log-config`` (an ini file for logging.config.fileConfig),
``--log-config-json`` and ``logconfig_dict`` (dictConfig).

Applied as gunicorn applies them, so that its users' files work unchanged: only one of the three
(the dict, else the JSON file, else the ini file); a dict or JSON config is laid over gunicorn's
defaults (the handlers ``console`` and ``error_console`` and the formatter ``generic`` that such
configs refer to); existing loggers are kept unless the config says otherwise.
"""

from __future__ import annotations

import copy
import json
import logging.config
import os
from typing import Any, Dict, Optional

#: gunicorn's defaults under a dict config, with geventserve's (identical) line format
DEFAULTS: Dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": True},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": True},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "generic",
                    "stream": "ext://sys.stdout"},
        "error_console": {"class": "logging.StreamHandler", "formatter": "generic",
                          "stream": "ext://sys.stderr"},
    },
    "formatters": {
        "generic": {"format": "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
                    "datefmt": "%Y-%m-%d %H:%M:%S %z"},
    },
}


class LogConfigError(ValueError):
    """A logging config that cannot be applied; the message is one line naming it."""


def _one_line(exc: BaseException) -> str:
    """The exception and its causes (dictConfig wraps the one that says what is wrong)."""
    parts = []
    seen: Optional[BaseException] = exc
    while seen is not None and len(parts) < 4:
        parts.append(" ".join(str(seen).split()) or type(seen).__name__)
        seen = seen.__cause__
    return f"{type(exc).__name__}: " + ": ".join(parts)


def apply(config_dict: Optional[Dict[str, Any]], json_path: Optional[str],
          ini_path: Optional[str]) -> bool:
    """Apply the logging config the settings name, if any (False when there is none)."""
    if config_dict:
        _dict_config(config_dict, "logconfig_dict")
    elif json_path:
        try:
            with open(json_path, encoding="utf-8") as fh:
                loaded = json.load(fh)
        except OSError as exc:
            raise LogConfigError(f"cannot read --log-config-json {json_path!r}: "
                                 f"{exc.strerror}") from None
        except ValueError as exc:
            raise LogConfigError(f"--log-config-json {json_path!r} is not JSON: "
                                 f"{_one_line(exc)}") from None
        if not isinstance(loaded, dict):
            raise LogConfigError(f"--log-config-json {json_path!r}: expected a JSON object "
                                 "(a logging dictConfig)")
        _dict_config(loaded, f"--log-config-json {json_path!r}")
    elif ini_path:
        if not os.path.isfile(ini_path):
            raise LogConfigError(f"cannot read --log-config {ini_path!r}: no such file")
        defaults = {"__file__": ini_path, "here": os.path.dirname(ini_path)}
        try:
            logging.config.fileConfig(ini_path, defaults=defaults, disable_existing_loggers=False)
        except Exception as exc:
            raise LogConfigError(f"--log-config {ini_path!r} cannot be applied: "
                                 f"{_one_line(exc)}") from None
    else:
        return False
    return True


def _dict_config(given: Dict[str, Any], where: str) -> None:
    merged = copy.deepcopy(DEFAULTS)
    merged.update(given)  # as gunicorn: a key given replaces the default's whole entry
    try:
        logging.config.dictConfig(merged)
    except Exception as exc:
        raise LogConfigError(f"{where} cannot be applied: {_one_line(exc)}") from None
