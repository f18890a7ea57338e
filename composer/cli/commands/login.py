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


def _read() -> dict[str, Any]:
    from composer.runtime.images.registry import docker_config_path

    try:
        with open(docker_config_path(), encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def _write(data: dict[str, Any]) -> None:
    from composer.runtime.images.registry import docker_config_path

    path = docker_config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    # Written whole and renamed, mode 0600: it holds secrets, and a crash must not cut it.
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".config.json.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent="\t")
        handle.write("\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def run_login(app: App, options: argparse.Namespace) -> int:
    from composer.runtime.images.reference import DOCKER_HUB
    from composer.runtime.images.registry import RegistryClient, credential_key

    username = options.username or ""
    password = options.password
    if options.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    if not username or password is None:
        app.abort("give the credentials: composer login SERVER -u USER --password-stdin")
    if options.password:
        app.warn("a password on the command line can be read by other users: prefer "
                 "--password-stdin")
    key = credential_key(options.server)
    domain = DOCKER_HUB if key.startswith("https://") else key
    with RegistryClient(credentials=lambda _domain: (username, password or "")) as client:
        client.ping(domain)
    data = _read()
    auths = data.setdefault("auths", {})
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    auths[key] = {"auth": token}
    _write(data)
    app.print("Login Succeeded")
    return 0


def run_logout(app: App, options: argparse.Namespace) -> int:
    from composer.runtime.images.registry import credential_key

    data = _read()
    auths = data.get("auths") or {}
    key = credential_key(options.server)
    if key not in auths:
        app.print(f"Not logged in to {options.server}")
        return 0
    del auths[key]
    _write(data)
    app.print(f"Removing login credentials for {options.server}")
    return 0
