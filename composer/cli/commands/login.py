"""``composer login`` and ``composer logout``: registry credentials, where Docker keeps them.

Credentials go to ``~/.docker/config.json`` (or ``$DOCKER_CONFIG/config.json``) under
``auths``, as ``docker login`` writes them without a credential helper, so both tools share
them. ``login`` checks them against the registry first and writes nothing when they fail.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
from typing import Any

from composer.cli.app import App

#: The key Docker uses for Docker Hub in config.json.
HUB_KEY = "https://index.docker.io/v1/"


def register(commands: Any) -> None:
    login = commands.add_parser("login", help="log in to a registry")
    login.add_argument("server", nargs="?", default="docker.io")
    login.add_argument("-u", "--username")
    login.add_argument("-p", "--password")
    login.add_argument("--password-stdin", action="store_true")
    login.set_defaults(handler=run_login)
    logout = commands.add_parser("logout", help="forget the credentials of a registry")
    logout.add_argument("server", nargs="?", default="docker.io")
    logout.set_defaults(handler=run_logout)


def config_path() -> str:
    folder = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    return os.path.join(folder, "config.json")


def _key(server: str) -> str:
    server = server.removeprefix("https://").removeprefix("http://").rstrip("/")
    return HUB_KEY if server in ("docker.io", "index.docker.io", "registry-1.docker.io") \
        else server


def _read() -> dict[str, Any]:
    try:
        with open(config_path(), encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def _write(data: dict[str, Any]) -> None:
    path = config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    # Written whole and renamed, mode 0600: it holds secrets, and a crash must not cut it.
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".config.json.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent="\t")
        handle.write("\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def run_login(app: App, options: argparse.Namespace) -> int:
    from composer.runtime.images.registry import RegistryClient

    username = options.username or ""
    password = options.password
    if options.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if not username or password is None:
        app.abort("give the credentials: composer login SERVER -u USER --password-stdin")
    if options.password:
        app.warn("a password on the command line can be read by other users: prefer "
                 "--password-stdin")
    domain = "docker.io" if _key(options.server) == HUB_KEY else _key(options.server)
    with RegistryClient(credentials=lambda _domain: (username, password or "")) as client:
        client.ping(domain)
    data = _read()
    auths = data.setdefault("auths", {})
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    auths[_key(options.server)] = {"auth": token}
    _write(data)
    app.print("Login Succeeded")
    return 0


def run_logout(app: App, options: argparse.Namespace) -> int:
    data = _read()
    auths = data.get("auths") or {}
    key = _key(options.server)
    if key not in auths:
        app.print(f"Not logged in to {options.server}")
        return 0
    del auths[key]
    _write(data)
    app.print(f"Removing login credentials for {options.server}")
    return 0
