"""``POST /v1/build``: the builder over the engine's API, its events streamed as ndjson."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.engine.build import Builder, BuildRequest
from composer.engine.build_mounts import BuildSecret
from composer.errors import ComposerError

if TYPE_CHECKING:
    from composer.engine.containers import ContainerManager


class BuildRoutes:
    """``POST /v1/build``: a build of a context on this host (the engine reads it in place:
    it runs on the same machine as root), its events streamed as they happen."""

    def __init__(self, manager: ContainerManager) -> None:
        self.m = manager

    def add_to(self, router: Any) -> None:
        router.add("POST", "/v1/build", self.build)

    def build(self, request: Any) -> Any:
        from composer.engine.server import Stream

        return Stream(self._streamed(request_from_body(request.body or {})))

    def _streamed(self, build_request: BuildRequest) -> Iterator[dict[str, Any]]:
        """The build's events as they happen: ``{"output": line, "step": ...}`` while a RUN
        prints, ``{"step": {...}}`` when a step is done, then ``{"id": ...}`` or
        ``{"error": message}`` last. The build runs in a thread of its own, so a reader
        that goes away does not stop it half way."""
        import queue
        import threading

        events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        builder = Builder(self.m, emit=lambda step: events.put({"step": step.to_json()}),
                          output=lambda step, line: events.put(
                              {"output": line, "instruction": step.instruction}))

        def work() -> None:
            try:
                events.put({"id": builder.build(build_request).id})
            except ComposerError as e:
                events.put({"error": str(e)})
            except Exception as e:
                # A bug: the client hears of it, and the engine's log gets the traceback.
                events.put({"error": f"the build failed: {e}"})
                raise
            finally:
                events.put(None)

        threading.Thread(target=work, name="composer-build", daemon=True).start()
        while (event := events.get()) is not None:
            yield event


def request_from_body(body: Mapping[str, Any]) -> BuildRequest:
    """The builder's request from the JSON body of ``POST /v1/build`` (``composer up`` sends
    the same body for a service it builds)."""
    from composer.engine.server import ApiError

    try:
        context = Path(str(body["context"]))
    except KeyError:
        raise ApiError(400, "a build needs its context directory") from None
    if not context.is_dir():
        raise ApiError(400, f"the build context {context} is not a directory")
    dockerfile = body.get("dockerfile")
    return BuildRequest(
        context=context,
        dockerfile=(context / str(dockerfile)) if dockerfile else None,
        dockerfile_text=body.get("dockerfile_text"),
        labels={str(k): str(v) for k, v in (body.get("labels") or {}).items()},
        tags=tuple(str(t) for t in body.get("tags") or ()),
        build_args={str(k): str(v) for k, v in (body.get("build_args") or {}).items()},
        target=body.get("target") or None, no_cache=bool(body.get("no_cache")),
        pull=bool(body.get("pull")), network=str(body.get("network") or "bridge"),
        shm_size=int(body["shm_size"]) if body.get("shm_size") else None,
        extra_hosts=tuple(str(h) for h in body.get("extra_hosts") or ()),
        secrets=_secrets(body.get("secrets") or ()),
        platform=str(body["platform"]) if body.get("platform") else None)


def _secrets(items: Any) -> dict[str, BuildSecret]:
    """``[{"id", "file" | "value", "origin"}]``: a host file the engine reads when the step
    runs, or the value itself (an environment variable's, read by the client); neither for
    a source the client found unset. A later id replaces an earlier one, as a repeated
    ``--secret`` does in Docker."""
    from composer.engine.server import ApiError

    found: dict[str, BuildSecret] = {}
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or not item.get("id"):
            raise ApiError(400, "each build secret needs an id")
        file, value = item.get("file"), item.get("value")
        if file is not None and not Path(str(file)).is_absolute():
            raise ApiError(400, f"secret {item['id']}: its file must be an absolute path")
        found[str(item["id"])] = BuildSecret(
            str(item["id"]), Path(str(file)) if file is not None else None,
            str(value) if value is not None else None, str(item.get("origin") or ""))
    return found
