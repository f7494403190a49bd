"""Find and import the WSGI application named by "module:attr", "module:factory(args)" or "module".

Every failure is an AppLoadError whose message is one line naming what was tried.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import sys
import traceback
from typing import Any, Callable, List, Optional, Tuple

_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
DEFAULT_NAMES = ("application", "app")


class AppLoadError(Exception):
    """The application could not be loaded; str() is a one-line explanation."""


def parse_app_spec(spec: str) -> Tuple[str, Optional[ast.expr]]:
    """Split an app spec into the module name and the parsed expression after the colon."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("expected MODULE:APP, such as myproject.wsgi:app")
    module_name, colon, expr_text = spec.strip().partition(":")
    if module_name.endswith(".py"):
        raise ValueError("give the module name, not the file name "
                         f"({module_name[:-3].replace('/', '.')!r} instead of {module_name!r})")
    if not _MODULE.fullmatch(module_name):
        raise ValueError(f"{module_name!r} is not a module name (expected MODULE:APP, such as "
                         "myproject.wsgi:app)")
    if not colon:
        return module_name, None
    try:
        expr = ast.parse(expr_text.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(f"{expr_text!r} is not a name or a call such as create_app() or "
                         "create_app('production')") from None
    _check_expression(spec, expr)
    return module_name, expr


def _check_expression(spec: str, expr: ast.expr) -> None:
    target = expr.func if isinstance(expr, ast.Call) else expr
    while isinstance(target, ast.Attribute):
        target = target.value
    if not isinstance(target, ast.Name):
        raise ValueError("after the colon give a name or a call, such as app or create_app()")
    if isinstance(expr, ast.Call):
        for arg in list(expr.args) + [kw.value for kw in expr.keywords]:
            try:
                ast.literal_eval(arg)
            except ValueError:
                raise ValueError("factory arguments must be literals (strings, numbers, "
                                 "True/False/None, lists, dicts)") from None
        if any(kw.arg is None for kw in expr.keywords):
            raise ValueError("**kwargs are not supported in factory calls")


def prepare_path(chdir: str = "", pythonpath: str = "") -> None:
    """Apply --chdir and --pythonpath, and make the working directory importable."""
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise AppLoadError(f"cannot change to directory {chdir!r}: {exc.strerror}") from None
    for entry in reversed([p.strip() for p in pythonpath.split(",") if p.strip()]):
        path = os.path.abspath(entry)
        if path not in sys.path:
            sys.path.insert(0, path)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


_OWN_FILES = os.path.dirname(os.path.abspath(__file__))


def _where(exc: BaseException) -> str:
    """' (file.py, line N)' for the innermost frame of exc in the app's code, or ''."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({os.path.basename(exc.filename)}, line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    frames = [f for f in frames if "importlib" not in f.filename
              and not f.filename.startswith(_OWN_FILES)]
    if not frames:
        return ""
    last = frames[-1]
    return f" ({os.path.basename(last.filename)}, line {last.lineno})"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def import_module(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise AppLoadError(f"cannot import {module_name!r}: no module named {missing!r} "
                               f"(looked in {os.getcwd()} and the Python path; use --chdir or "
                               "--pythonpath to point elsewhere)") from exc
        raise AppLoadError(f"importing {module_name!r} failed: {_describe(exc)}"
                           f"{_where(exc)}") from exc
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        if isinstance(exc, SystemExit):
            raise AppLoadError(f"importing {module_name!r} failed: the module called "
                               f"exit({exc.code!r})") from exc
        raise AppLoadError(f"importing {module_name!r} failed: {_describe(exc)}"
                           f"{_where(exc)}") from exc


def _resolve(module: Any, spec: str, expr: ast.expr) -> Any:
    call = expr if isinstance(expr, ast.Call) else None
    target = call.func if call else expr
    names: List[str] = []
    while isinstance(target, ast.Attribute):
        names.insert(0, target.attr)
        target = target.value
    names.insert(0, target.id)  # type: ignore[attr-defined]
    obj = module
    for i, name in enumerate(names):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            owner = module.__name__ if i == 0 else ".".join(names[:i])
            raise AppLoadError(f"cannot load {spec!r}: {owner!r} has no attribute {name!r}"
                               + _available(module if i == 0 else None)) from None
    if call is None:
        return obj
    args = [ast.literal_eval(a) for a in call.args]
    kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    label = ".".join(names) + "()"
    if not callable(obj):
        raise AppLoadError(f"cannot load {spec!r}: {'.'.join(names)} is a {type(obj).__name__}, "
                           "not a factory function")
    try:
        return obj(*args, **kwargs)
    except Exception as exc:
        raise AppLoadError(f"cannot load {spec!r}: calling {label} failed: {_describe(exc)}"
                           f"{_where(exc)}") from exc


def _available(module: Any) -> str:
    if module is None:
        return ""
    found = [name for name, value in vars(module).items()
             if not name.startswith("_") and callable(value) and not inspect.isclass(value)
             and getattr(value, "__module__", None) == module.__name__]
    return f" (callables defined there: {', '.join(sorted(found)[:8])})" if found else ""


def _check_wsgi_callable(app: Any, spec: str) -> None:
    if not callable(app):
        raise AppLoadError(f"cannot load {spec!r}: it is a {type(app).__name__}, not a WSGI "
                           "callable")
    if inspect.isfunction(app) or inspect.ismethod(app):
        params = [p for p in inspect.signature(app).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
        # A WSGI callable takes environ and start_response, and neither has a default.
        factory_like = len(params) < 2 or all(
            p.default is not p.empty for p in params[:2] if p.kind != p.VAR_POSITIONAL)
        if params and params[0].kind == params[0].VAR_POSITIONAL:
            factory_like = False
        if factory_like:
            names = ", ".join(inspect.signature(app).parameters)
            raise AppLoadError(f"cannot load {spec!r}: a WSGI callable takes (environ, "
                               f"start_response), this one takes ({names}); it looks like an "
                               f"application factory: write {spec}()")


def load_app(spec: str) -> Callable[..., Any]:
    """Import the module of ``spec`` and return the WSGI callable it names."""
    try:
        module_name, expr = parse_app_spec(spec)
    except ValueError as exc:
        raise AppLoadError(f"invalid application {spec!r}: {exc}") from None
    module = import_module(module_name)
    if expr is None:
        for name in DEFAULT_NAMES:
            if hasattr(module, name):
                app = getattr(module, name)
                _check_wsgi_callable(app, f"{module_name}:{name}")
                return app
        raise AppLoadError(f"cannot load {spec!r}: module {module_name!r} has neither "
                           "'application' nor 'app'; name the callable as "
                           f"{module_name}:NAME" + _available(module))
    app = _resolve(module, spec, expr)
    _check_wsgi_callable(app, spec)
    return app
