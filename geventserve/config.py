"""Where the settings come from: the command line and the Python config file, both derived from
the settings table and layered defaults < config file < GEVENTSERVE_CMD_ARGS < command line;
and the sources the supervisor is given, which it loads again on HUP.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any, Dict, List, Mapping, NoReturn, Optional, Protocol, Sequence

from . import __version__, logs
from .exits import ExitCode
from .settings import BY_NAME, SECTIONS, SETTINGS, Config, SettingError

ENV_ARGS = "GEVENTSERVE_CMD_ARGS"
#: read when no -c is given: the first of these found in the current directory (gunicorn
#: reads ./gunicorn.conf.py, so a project moving over keeps its file)
DEFAULT_CONFIG_FILES = ("geventserve.conf.py", "gunicorn.conf.py")
ACTIONS = ("config", "check_config", "print_config")


class ConfigError(Exception):
    """The settings cannot be loaded; the message is one line, ``code`` the exit status."""

    code = ExitCode.CONFIG


class UsageError(ConfigError):
    """A mistake on the command line (or in GEVENTSERVE_CMD_ARGS)."""

    code = ExitCode.USAGE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="geventserve",
        usage="geventserve [OPTIONS] [APP]",
        description="Serve a WSGI application with pre-forked gevent (or sync) workers.",
        epilog="APP is MODULE:ATTRIBUTE (myproject.wsgi:app), MODULE:FACTORY(ARGS) "
               "(myapp:create_app('prod')) or MODULE (uses 'application', then 'app'). "
               "geventserve status ADDRESS shows the workers of a server started with "
               "--metrics-bind ADDRESS.",
        allow_abbrev=False,
    )
    parser.add_argument("-v", "--version", action="version", version=f"geventserve {__version__}")
    parser.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                        help=f"Python config file (default: ./{DEFAULT_CONFIG_FILES[0]}, else "
                             f"./{DEFAULT_CONFIG_FILES[1]}, if one exists); gunicorn's config "
                             "files work unchanged.")
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
            if setting.const is not None:  # the value may be left out
                kwargs.update(nargs="?", const=setting.const)
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
    """Execute a Python config file and apply the settings it defines (SettingError)."""
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
    config.file = os.path.abspath(path)


def _apply_args(config: Config, values: Dict[str, Any], source: str) -> None:
    values = {k: v for k, v in values.items() if k not in ACTIONS}
    app = values.pop("app", None)
    if app is not None:
        config.set("wsgi_app", app, source)
    for name, value in values.items():
        config.set(name, value, source)


def parse_command_line(argv: Sequence[str]) -> Dict[str, Any]:
    """The flags given (settings and actions), as parsed; UsageError with one line."""
    return _parse(build_parser(), argv, "command line")


def layer_settings(cli: Dict[str, Any], environ: Optional[Mapping[str, str]] = None,
                   env_name: str = ENV_ARGS) -> Config:
    """Layer the settings: defaults < config file < ``env_name`` < command line.

    Raises UsageError or SettingError, with one line.
    """
    environ = os.environ if environ is None else environ
    env_text = environ.get(env_name, "")
    try:
        env_argv = shlex.split(env_text)
    except ValueError as exc:
        raise UsageError(f"{env_name}: {exc}") from None
    env = _parse(build_parser(), env_argv, env_name) if env_argv else {}
    config = Config()
    config_path = cli.get("config") or env.get("config")
    if config_path is None:
        config_path = next((name for name in DEFAULT_CONFIG_FILES if os.path.exists(name)), None)
    if config_path:
        load_config_file(config_path, config)
    _apply_args(config, env, env_name)
    _apply_args(config, cli, "command line")
    if not config.wsgi_app and not cli.get("print_config"):
        raise UsageError("no application given: geventserve [OPTIONS] MODULE:APP "
                         "(for example myproject.wsgi:app)")
    config.check()
    return config


class ConfigSource(Protocol):
    """What the supervisor is given: settings it loads again on HUP, and how to start the
    same server again on USR2."""

    #: where the server started: relative paths of the settings are taken from here
    start_dir: str

    def load(self) -> Config:
        """The settings as they are now; ConfigError with one line."""
        ...

    def reexec_command(self) -> Optional[List[str]]:
        """The command that starts this server again (USR2); None when there is none."""
        ...


class CommandLineConfig:
    """The settings of a command line: each load() reads the config file and the environment
    variable again, from the directory the server started in."""

    def __init__(self, argv: Sequence[str], env_name: str = ENV_ARGS,
                 start_dir: Optional[str] = None) -> None:
        self.argv = list(argv)
        self.env_name = env_name
        self.start_dir = start_dir or os.getcwd()

    def load(self) -> Config:
        here = os.getcwd()  # the supervisor may have moved (--chdir with --preload)
        try:
            os.chdir(self.start_dir)
        except OSError as exc:
            raise ConfigError(f"cannot enter the start directory {self.start_dir!r}: "
                              f"{exc.strerror}") from None
        try:
            return layer_settings(parse_command_line(self.argv), os.environ, self.env_name)
        except SettingError as exc:
            raise ConfigError(str(exc)) from None
        finally:
            os.chdir(here)

    def reexec_command(self) -> Optional[List[str]]:
        return [sys.executable, "-m", "geventserve"] + self.argv


class FixedConfig:
    """Settings given once, as to geventserve.serve(): a reload keeps them, and there is no
    command to re-execute."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.start_dir = os.getcwd()

    def load(self) -> Config:
        return self.config

    def reexec_command(self) -> Optional[List[str]]:
        return None
