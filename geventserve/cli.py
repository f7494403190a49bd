"""The command line: argv (and GEVENTSERVE_CMD_ARGS, and the config file) to a Config, then serve.

Every mistake a user can make here ends with one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any, Dict, List, NoReturn, Optional, Sequence

from . import __version__, logs
from .exits import ExitCode
from .settings import BY_NAME, SECTIONS, SETTINGS, Config, SettingError

DEFAULT_CONFIG_FILE = "geventserve.conf.py"
ENV_ARGS = "GEVENTSERVE_CMD_ARGS"


class UsageError(Exception):
    """A mistake on the command line; the message is one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="geventserve",
        usage="geventserve [OPTIONS] [APP]",
        description="Serve a WSGI application with pre-forked gevent (or sync) workers.",
        epilog="APP is MODULE:ATTRIBUTE (myproject.wsgi:app), MODULE:FACTORY(ARGS) "
               "(myapp:create_app('prod')) or MODULE (uses 'application', then 'app').",
        allow_abbrev=False,
    )
    parser.add_argument("-v", "--version", action="version", version=f"geventserve {__version__}")
    parser.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                        help=f"Python config file (default: ./{DEFAULT_CONFIG_FILE} if it "
                             "exists); gunicorn.conf.py files work too.")
    parser.add_argument("--check-config", action="store_true", default=argparse.SUPPRESS,
                        help="Load the settings and import the application, then exit (0 if "
                             "both are fine) without serving.")
    parser.add_argument("--print-config", action="store_true", default=argparse.SUPPRESS,
                        help="Print the effective settings, as a config file, and exit.")
    groups = {section: parser.add_argument_group(section) for section in SECTIONS}
    for setting in SETTINGS:
        if not setting.flags:
            continue
        kwargs: Dict[str, Any] = {"dest": setting.name, "default": argparse.SUPPRESS,
                                  "help": setting.help}
        if setting.action == "store_true":
            kwargs["action"] = "store_true"
        else:
            kwargs["action"] = setting.action
            kwargs["metavar"] = setting.metavar or "VALUE"
        groups[setting.section].add_argument(*setting.flags, **kwargs)
    parser.add_argument("app", nargs="?", metavar="APP", default=argparse.SUPPRESS,
                        help="the WSGI application to serve")
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str], where: str) -> Dict[str, Any]:
    try:
        namespace = parser.parse_args(list(argv))
    except UsageError as exc:
        raise UsageError(f"{exc} ({where})" if where != "command line" else str(exc)) from None
    return vars(namespace)


def load_config_file(path: str, config: Config) -> None:
    """Execute a Python config file and apply the settings it defines."""
    try:
        with open(path, "rb") as fh:
            source = fh.read()
    except OSError as exc:
        raise SettingError(f"cannot read config file {path!r}: {exc.strerror}") from None
    namespace: Dict[str, Any] = {"__file__": os.path.abspath(path), "__name__": "__config__"}
    try:
        code = compile(source, path, "exec")
        exec(code, namespace)
    except SyntaxError as exc:
        raise SettingError(f"config file {path!r}, line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:
        raise SettingError(f"config file {path!r} failed: {type(exc).__name__}: {exc}") from None
    source_name = f"config file {path}"
    for name, value in namespace.items():
        if name.startswith("_") or isinstance(value, type(os)):
            continue
        if name in BY_NAME:
            config.set(name, value, source_name)
        else:
            logs.error_log.warning("config file %s: unknown setting %r ignored", path, name)


ACTIONS = ("config", "check_config", "print_config")


def _apply_args(config: Config, values: Dict[str, Any], source: str) -> None:
    values = {k: v for k, v in values.items() if k not in ACTIONS}
    app = values.pop("app", None)
    if app is not None:
        config.set("wsgi_app", app, source)
    for name, value in values.items():
        config.set(name, value, source)


def make_config(argv: Sequence[str], environ: Optional[Dict[str, str]] = None) -> Config:
    """The settings of a command line (and of the config file and environment it implies)."""
    return layer_settings(parse_command_line(argv), environ)


def parse_command_line(argv: Sequence[str]) -> Dict[str, Any]:
    """The flags given (settings and actions), as parsed; UsageError with one line."""
    return _parse(build_parser(), argv, "command line")


def layer_settings(cli: Dict[str, Any], environ: Optional[Dict[str, str]] = None) -> Config:
    """Layer the settings: defaults < config file < GEVENTSERVE_CMD_ARGS < command line."""
    environ = os.environ if environ is None else environ
    parser = build_parser()
    env_text = environ.get(ENV_ARGS, "")
    try:
        env_argv = shlex.split(env_text)
    except ValueError as exc:
        raise UsageError(f"{ENV_ARGS}: {exc}") from None
    env = _parse(parser, env_argv, ENV_ARGS) if env_argv else {}
    config = Config()
    config_path = cli.get("config") or env.get("config")
    if config_path is None and os.path.exists(DEFAULT_CONFIG_FILE):
        config_path = DEFAULT_CONFIG_FILE
    if config_path:
        load_config_file(config_path, config)
    _apply_args(config, env, ENV_ARGS)
    _apply_args(config, cli, "command line")
    if not config.wsgi_app and not cli.get("print_config"):
        raise UsageError("no application given: geventserve [OPTIONS] MODULE:APP "
                         "(for example myproject.wsgi:app)")
    config.check()
    return config


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
    logs.setup()
    try:
        actions = parse_command_line(argv)
        config = layer_settings(actions)
    except UsageError as exc:
        print(f"geventserve: error: {exc} (see geventserve --help)", file=sys.stderr)
        return ExitCode.USAGE
    except SettingError as exc:
        print(f"geventserve: error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    if actions.get("print_config"):
        print_config(config)
        return ExitCode.OK
    if actions.get("check_config"):
        logs.setup(config.loglevel)
        return check_config(config)
    from .supervisor import Supervisor, configure_logs

    try:
        configure_logs(config)
    except OSError as exc:
        print(f"geventserve: error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG

    try:
        return Supervisor(config, argv=argv).run()
    except SettingError as exc:
        logs.error_log.error("%s", exc)
        return ExitCode.CONFIG
    except KeyboardInterrupt:
        return ExitCode.OK
