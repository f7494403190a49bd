"""The command line: argv to settings (config.py), then print them, check them, or serve.

Every mistake a user can make here ends with one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import sys
from typing import List, NoReturn, Optional, Sequence

from . import logs
from .config import CommandLineConfig, ConfigError, UsageError, parse_command_line
from .exits import ExitCode
from .settings import Config, SettingError
from .startup import configure_logs
from .supervisor import Supervisor


def print_config(config: Config) -> None:
    """The effective settings, as a Python config file with where each value came from."""
    for name, value in config.items():
        if callable(value):
            value_text = f"<function {getattr(value, '__name__', '?')}>"
            print(f"# {name} = {value_text}  # {config.sources[name]}")
            continue
        print(f"{name} = {value!r}  # {config.sources[name]}")


def check_config(config: Config) -> int:
    """--check-config: import the app as a worker would (patched first for gevent)."""
    from .loading import AppLoadError, load_app, prepare_path
    from .workers import load_worker_class

    try:
        worker_class = load_worker_class(config.worker_class)
        config.worker_count  # noqa: B018 - validates WEB_CONCURRENCY
    except (ImportError, SettingError) as exc:
        print(f"geventserve: error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    worker_class.before_app_import()
    try:
        prepare_path(config.chdir, config.pythonpath)
        load_app(config.wsgi_app)
    except AppLoadError as exc:
        print(f"geventserve: error: {exc}", file=sys.stderr)
        logs.error_log.debug("application load failed", exc_info=True)
        return ExitCode.APP_LOAD
    print(f"geventserve: configuration OK; {config.wsgi_app} loads with the "
          f"{config.worker_class} worker")
    return ExitCode.OK


def main(argv: Optional[List[str]] = None) -> NoReturn:
    sys.exit(run(sys.argv[1:] if argv is None else argv))


def run(argv: Sequence[str]) -> int:
    if argv[:1] == ["status"]:  # geventserve status ADDRESS (an app module so named: status:app)
        from .metrics.status import main as status_main

        return status_main(argv[1:])
    logs.setup()
    source = CommandLineConfig(argv)
    try:
        actions = parse_command_line(argv)
        config = source.load()
    except ConfigError as exc:
        hint = " (see geventserve --help)" if isinstance(exc, UsageError) else ""
        print(f"geventserve: error: {exc}{hint}", file=sys.stderr)
        return exc.code
    if actions.get("print_config"):
        print_config(config)
        return ExitCode.OK
    if actions.get("check_config"):
        logs.setup(config.loglevel)
        return check_config(config)
    try:
        configure_logs(config)
    except OSError as exc:
        print(f"geventserve: error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG

    try:
        return Supervisor(source, config).run()
    except SettingError as exc:
        logs.error_log.error("%s", exc)
        return ExitCode.CONFIG
    except KeyboardInterrupt:
        return ExitCode.OK
