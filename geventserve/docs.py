"""docs/settings.md, generated from the settings table: ``python -m geventserve.docs``."""

from __future__ import annotations

from typing import List

from .settings import HOOKS, SECTIONS, SETTINGS, Setting

HEADER = """# Settings

Generated from `geventserve/settings.py` by `make docs`; edit the table there, not this file.

Each setting can be given, from lowest to highest precedence, by its default, by the Python
config file (`-c FILE`, else `./geventserve.conf.py` or, failing that, `./gunicorn.conf.py` if
one exists; a gunicorn config file using the same names works unchanged), by the
`GEVENTSERVE_CMD_ARGS` environment variable (command-line flags, for example
`GEVENTSERVE_CMD_ARGS="-w 4 --timeout 60"`), and by the command line.
An unknown name in a config file is a warning; a bad value stops the server with one line
naming the setting and the value. `geventserve --print-config` shows the effective settings and
where each came from; `geventserve --check-config APP` also imports the application.
"""

HOOK_OBJECTS = """
The objects the hooks receive:

- `server`: the supervisor. `server.pid`, `server.cfg` (the settings: `server.cfg.bind`,
  `server.cfg.timeout`...), `server.log` (the error logger: `server.log.info(...)`),
  `server.num_workers` (the wanted number of workers), `server.workers` (PID -> record).
- `worker`: a worker. `worker.pid` (None in `pre_fork`), `worker.ppid` (the supervisor),
  `worker.age` (a counter: the n-th worker started), `worker.cfg`, `worker.log`, `worker.app`
  (once loaded).
- `req`: `req.method`, `req.uri` (the raw target), `req.path`, `req.query`, `req.version`
  (a tuple such as `(1, 1)`), `req.headers` (a list of `(NAME, value)`, names upper-cased as
  gunicorn gives them), `req.scheme`, `req.remote_addr`.
- `resp`: `resp.status` (`"200 OK"`), `resp.status_code`, `resp.headers` (as the app gave them),
  `resp.sent` (body bytes sent).

Hooks run where gunicorn runs them (the supervisor or the worker process, as noted). A hook that
raises is logged with its traceback and the server carries on.
"""


def _flags(setting: Setting) -> str:
    if not setting.flags:
        return "positional `APP`" if setting.name == "wsgi_app" else "-"
    if setting.action == "store_true":
        return ", ".join(f"`{flag}`" for flag in setting.flags)
    value = setting.metavar if setting.const is None else f"[{setting.metavar}]"
    return ", ".join(f"`{flag} {value}`" for flag in setting.flags)


def _default(setting: Setting) -> str:
    if setting.default_doc:
        return setting.default_doc
    return f"`{setting.default!r}`"


def _config_example(setting: Setting) -> str:
    if setting.action == "store_true":
        return f"`{setting.name} = True`"
    if not setting.examples:
        return f"`{setting.name} = ...`"
    value = setting.validate(setting.examples[0])
    if setting.action == "append" and not isinstance(value, list):
        value = [value]
    return f"`{setting.name} = {value!r}`"


def render() -> str:
    lines: List[str] = [HEADER]
    for section in SECTIONS:
        lines.append(f"## {section}\n")
        if section == HOOKS:
            lines.append("Functions defined in the config file, with gunicorn's names and "
                         "arguments.\n")
            for setting in SETTINGS:
                if setting.section == section:
                    signature, _, text = setting.help.partition(": ")
                    lines.append(f"- `{signature}`: {text}")
            lines.append(HOOK_OBJECTS)
            continue
        for setting in SETTINGS:
            if setting.section != section:
                continue
            lines.append(f"### `{setting.name}`\n")
            lines.append(f"{setting.help}\n")
            lines.append(f"- command line: {_flags(setting)}")
            lines.append(f"- config file: {_config_example(setting)}")
            lines.append(f"- default: {_default(setting)}\n")
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
