"""``composer engine start|stop|status|run``: control the engine by hand.

Other commands need not: :func:`engine_client` starts the engine on demand. The engine of a
state root keeps its socket, lock and pid file in the run root: ``COMPOSER_RUN_ROOT``, else
``<root>/run`` for a state root other than the default (``--root`` or ``COMPOSER_ROOT``, so that
test roots side by side never share one), else ``/run/composer``.

``COMPOSER_ENGINE_SETUP=module:function`` makes ``engine run`` call that function instead of
``composer.engine.app.setup``: for tests and embedders.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.cli.app import App
from composer.cli.commands.image import state_root

if TYPE_CHECKING:
    from composer.engine.client import EngineClient
    from composer.engine.daemon import EngineContext, Setup

EXIT_NOT_RUNNING = 1


def register(commands: Any) -> None:
    engine = commands.add_parser("engine", help="control the engine (start, stop, status, run)")
    verbs = engine.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = verbs.add_parser("start", help="start the engine in the background (prints its pid)")
    p.add_argument("--timeout", type=float, default=10, metavar="SECONDS",
                   help="how long to wait for it to answer (default 10)")
    p = verbs.add_parser("stop", help="stop the engine (containers keep running)")
    p.add_argument("-t", "--timeout", type=float, default=10, metavar="SECONDS",
                   help="seconds before SIGKILL (default 10)")
    p = verbs.add_parser("status", help="show whether the engine runs (exit code 1 if not)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    verbs.add_parser("run", help="run the engine in the foreground (for systemd and debugging)")
    engine.set_defaults(handler=run)


def run_root(options: argparse.Namespace) -> Path:
    """The run root of the engine the command line names."""
    from composer.state.layout import run_root_for

    return run_root_for(Path(state_root(options)))


def context(options: argparse.Namespace) -> EngineContext:
    from composer.engine.daemon import paths

    return paths(Path(state_root(options)), run_root(options))


def engine_client(options: argparse.Namespace, *, start: bool = True) -> EngineClient:
    """A client of the engine the command line names, started on demand."""
    from composer.engine.client import connect

    return connect(Path(state_root(options)), run_root(options), start=start)


def run(app: App, options: argparse.Namespace) -> int:
    code: int = _VERBS[options.verb](app, context(options), options)
    return code


def _start(app: App, ctx: EngineContext, options: argparse.Namespace) -> int:
    from composer.engine import daemon

    running = daemon.status(ctx)
    pid = daemon.start(ctx, timeout=options.timeout)
    if running is not None and running["pid"] == pid:
        app.err.write(f"the engine already runs (pid {pid}, socket {ctx.socket_path})\n")
    app.print(str(pid))
    return 0


def _stop(app: App, ctx: EngineContext, options: argparse.Namespace) -> int:
    from composer.engine import daemon

    running = daemon.status(ctx)
    if not daemon.stop(ctx, timeout=options.timeout):
        app.print("the engine is not running")
        return 0
    app.print(f"stopped the engine (pid {running['pid'] if running else '?'})")
    return 0


def _status(app: App, ctx: EngineContext, options: argparse.Namespace) -> int:
    from composer.engine import daemon

    info = daemon.status(ctx)
    if options.format == "json":
        app.print(json.dumps(info or {"running": False, "socket": str(ctx.socket_path)},
                             indent=2))
        return 0 if info else EXIT_NOT_RUNNING
    if info is None:
        app.print(f"not running (socket {ctx.socket_path})")
        return EXIT_NOT_RUNNING
    rows = [("running", f"pid {info['pid']}"), ("socket", info["socket"]),
            ("log", info["log"])]
    if info["answering"]:
        rows += [("api", f"{info['api']} (composer {info['version']})"),
                 ("uptime", _duration(info["uptime"]))]
    else:
        rows.append(("api", "not answering (starting, or stuck: see the log)"))
    for name, value in rows:
        app.print(f"{name:<9} {value}")
    return 0


def _run(app: App, ctx: EngineContext, options: argparse.Namespace) -> int:
    from composer.engine import daemon

    return daemon.run(ctx, _setup())


def _setup() -> Setup:
    named = os.environ.get("COMPOSER_ENGINE_SETUP")
    if named:
        module, _, function = named.partition(":")
        setup: Setup = getattr(importlib.import_module(module), function or "setup")
        return setup
    try:
        app = importlib.import_module("composer.engine.app")
    except ModuleNotFoundError as exc:
        if exc.name != "composer.engine.app":
            raise
        return _bare
    real: Setup = app.setup
    return real


def _bare(ctx: EngineContext, router: Any) -> None:
    import logging

    logging.getLogger("composer.engine").warning(
        "composer.engine.app is absent: serving the version route only")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n] or ["0s"]
    return "".join(shown[:2])


_VERBS = {"start": _start, "stop": _stop, "status": _status, "run": _run}
