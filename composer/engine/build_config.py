"""The builder's config-only instructions (ENV, LABEL, WORKDIR, USER, CMD, ENTRYPOINT,
EXPOSE, VOLUME, STOPSIGNAL, SHELL, HEALTHCHECK, ONBUILD): each changes the stage's container
config (and, for ENV, its variables), as Docker records them in the image config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from composer.engine.build import State
    from composer.runtime.images.build import Dockerfile, Instruction

DEFAULT_SHELL = ("/bin/sh", "-c")


def configure(state: State, instruction: Instruction, env: dict[str, str],
               dockerfile: Dockerfile) -> None:
    """A config-only instruction applied to ``state.config`` (and the scope)."""
    from composer.runtime.images.build import expand

    keyword, config = instruction.keyword, state.config

    def x(word: str) -> str:
        return expand(word, env, escape=dockerfile.escape)

    if keyword == "ENV":
        pairs = [(x(k), x(v or "")) for k, v in instruction.pairs]
        current = [e for e in config.get("Env") or []
                   if e.split("=", 1)[0] not in {k for k, _ in pairs}]
        for name, value in pairs:
            state.scope.set_env(name, value)
        config["Env"] = current + [f"{k}={v}" for k, v in pairs]
    elif keyword == "LABEL":
        config["Labels"] = {**(config.get("Labels") or {}),
                            **{x(k): x(v or "") for k, v in instruction.pairs}}
    elif keyword == "WORKDIR":
        import posixpath

        config["WorkingDir"] = posixpath.join(config.get("WorkingDir") or "/",
                                              x(instruction.value))
    elif keyword == "USER":
        config["User"] = x(instruction.value)
    elif keyword in ("CMD", "ENTRYPOINT"):
        argv = list(instruction.json_form) if instruction.json_form is not None else \
            [*(config.get("Shell") or DEFAULT_SHELL), instruction.value]
        config["Cmd" if keyword == "CMD" else "Entrypoint"] = argv
        if keyword == "CMD":
            state.cmd_set = True
        elif not state.cmd_set:
            config.pop("Cmd", None)  # Docker: a new ENTRYPOINT resets an inherited CMD
    elif keyword == "EXPOSE":
        ports = dict(config.get("ExposedPorts") or {})
        for word in x(instruction.value).split():
            ports[word if "/" in word else f"{word}/tcp"] = {}
        config["ExposedPorts"] = ports
    elif keyword == "VOLUME":
        volumes = dict(config.get("Volumes") or {})
        paths = instruction.json_form or tuple(x(instruction.value).split())
        for path in paths:
            volumes[path] = {}
        config["Volumes"] = volumes
    elif keyword == "STOPSIGNAL":
        config["StopSignal"] = x(instruction.value)
    elif keyword == "SHELL":
        config["Shell"] = list(instruction.json_form or ())
    elif keyword == "HEALTHCHECK":
        check = instruction.healthcheck
        if check is None:
            raise _error(f"{dockerfile.path}:{instruction.line}: HEALTHCHECK without "
                             "a test")
        health: dict[str, Any] = {"Test": list(check.test)}
        for name, amount in (("Interval", check.interval), ("Timeout", check.timeout),
                             ("StartPeriod", check.start_period),
                             ("StartInterval", check.start_interval),
                             ("Retries", check.retries)):
            if amount:
                health[name] = amount
        config["Healthcheck"] = health
    elif keyword == "ONBUILD":
        config["OnBuild"] = [*(config.get("OnBuild") or []),
                             instruction.original.split(None, 1)[1]]


def _error(message: str) -> Exception:
    from composer.engine.build import BuildError

    return BuildError(message)
