"""Planner and executor together, on the in-memory runtime: plan, apply, observe, plan again.

The second plan of an unchanged project must be empty (invariant 1: idempotent), and a
change must touch only what it names. The observation is rebuilt from what the runtime
holds, by the labels the plan wrote, as the engine will rebuild it from the host.
"""

from __future__ import annotations

from pathlib import Path

from composer.apply.executor import execute
from composer.manifest.model import Project
from composer.plan.actions import Action
from composer.plan.down import DownOptions, plan_down
from composer.plan.reconcile import Options, reconcile
from composer.plan.render import to_text
from composer.state import labels as L
from composer.state.observed import Observed, ObservedContainer, ObservedResource
from tests.unit.memory_runtime import MemoryRuntime
from tests.unit.plan_cases import WEB_DB, project


def observe(runtime: MemoryRuntime, desired: Project) -> Observed:
    containers = []
    for container in runtime.containers.by_name.values():
        tags = container.labels
        if tags.get(L.LABEL_PROJECT) != desired.name:
            continue
        containers.append(ObservedContainer(
            id=container.id, name=container.name, service=tags[L.LABEL_SERVICE],
            number=int(tags[L.LABEL_NUMBER]), config_hash=tags[L.LABEL_CONFIG_HASH],
            state=container.state, exit_code=container.exit_code,
            image=str(container.spec["image"]),
            image_id=runtime.images.by_ref.get(str(container.spec["image"]), ""),
            oneoff=tags[L.LABEL_ONEOFF] == "True"))

    def resources(kind: str, found: dict[str, object]) -> tuple[ObservedResource, ...]:
        out = []
        for name, resource in found.items():
            tags = getattr(resource, "labels", {})
            if tags.get(L.LABEL_PROJECT) == desired.name:
                out.append(ObservedResource(key=tags[f"com.docker.compose.{kind}"], name=name,
                                            config_hash=tags[L.LABEL_CONFIG_HASH]))
        return tuple(out)

    return Observed(project=desired.name, containers=tuple(containers),
                    networks=resources("network", dict(runtime.networks.by_name)),
                    volumes=resources("volume", dict(runtime.volumes.by_name)),
                    images=dict(runtime.images.by_ref))


def apply(desired: Project, runtime: MemoryRuntime, options: Options | None = None) -> str:
    plan = reconcile(desired, observe(runtime, desired), options)
    result = execute(plan, runtime, sink=lambda event: None, parallel=2)
    assert result.ok, result.failed
    return to_text(plan)


def test_up_twice_changes_nothing_the_second_time(tmp_path: Path) -> None:
    desired = project(tmp_path, WEB_DB)
    runtime = MemoryRuntime()
    first = apply(desired, runtime)
    assert "create service web #1" in first and "wait healthy service db #1" in first
    assert {c.name: c.state for c in runtime.containers.by_name.values()} == {
        "p-db-1": "running", "p-web-1": "running"}
    assert apply(desired, runtime) == "nothing to do\n"


def test_a_change_touches_only_its_service_and_then_settles(tmp_path: Path) -> None:
    runtime = MemoryRuntime()
    apply(project(tmp_path, WEB_DB), runtime)
    db_id = runtime.containers.by_name["p-db-1"].id
    changed = project(tmp_path, WEB_DB.replace('DEBUG: "0"', 'DEBUG: "1"'))
    plan = apply(changed, runtime)
    # The runtime keeps no recorded config here, so the reason names the hashes.
    assert plan.splitlines()[0].startswith("  1 create service web #1: config hash changed (")
    assert all("service db" not in line for line in plan.splitlines())
    assert runtime.containers.by_name["p-db-1"].id == db_id
    assert runtime.containers.by_name["p-web-1"].state == "running"
    assert apply(changed, runtime) == "nothing to do\n"


def test_scale_up_and_down_through_the_runtime(tmp_path: Path) -> None:
    desired = project(tmp_path, WEB_DB)
    runtime = MemoryRuntime()
    apply(desired, runtime)
    apply(desired, runtime, Options(scale={"web": 3}))
    assert sorted(runtime.containers.by_name) == ["p-db-1", "p-web-1", "p-web-2", "p-web-3"]
    apply(desired, runtime, Options(scale={"web": 1}))
    assert sorted(runtime.containers.by_name) == ["p-db-1", "p-web-1"]


def test_down_leaves_nothing_and_keeps_volumes_without_v(tmp_path: Path) -> None:
    desired = project(tmp_path, WEB_DB)
    runtime = MemoryRuntime()
    apply(desired, runtime)
    plan = plan_down(desired, observe(runtime, desired), DownOptions())
    assert execute(plan, runtime, sink=lambda event: None).ok
    assert runtime.containers.by_name == {} and runtime.networks.by_name == {}
    assert list(runtime.volumes.by_name) == ["p_data"]
    again = plan_down(desired, observe(runtime, desired), DownOptions(volumes=True))
    assert [c.action for c in again.changes] == [Action.REMOVE_VOLUME]
    assert execute(again, runtime, sink=lambda event: None).ok
    assert runtime.volumes.by_name == {}
