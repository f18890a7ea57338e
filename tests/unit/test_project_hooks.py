"""The pure parts of lifecycle hooks: init container names, configs and specs, the record
of a step, and how hook output and environment are read. (Running them: e2e/test_hooks.py.)"""

from __future__ import annotations

from typing import Any

from composer.engine import project_hooks as H
from composer.engine.service_spec import container_spec, project_context
from composer.manifest.model import Project, project_from_document
from composer.plan.down import plan_down
from composer.plan.reconcile import reconcile
from composer.state.containers import ContainerRow
from composer.state.observed import EXITED, Observed, ObservedContainer


def _project(service: dict[str, Any]) -> Project:
    tree = {"name": "demo", "services": {"web": service},
            "networks": {"default": {"name": "demo_default"}},
            "volumes": {"data": {"name": "demo_data"}}}
    return project_from_document({"name": "demo", "working_dir": "/srv", "tree": tree})


WEB = {
    "image": "app:1", "entrypoint": ["/entry"], "command": ["serve"],
    "environment": {"A": "service", "B": "service"},
    "ports": [{"target": 80, "published": "8080", "protocol": "tcp", "mode": "ingress"}],
    "volumes": [{"type": "volume", "source": "data", "target": "/data"}],
    "networks": {"default": {"aliases": ["www"], "ipv4_address": "10.5.0.9"}},
    "container_name": "fixed", "restart": "always",
    "healthcheck": {"test": ["CMD", "true"]},
    "pre_start": [{"command": ["migrate"], "environment": {"B": "hook"}, "user": "1000"}],
}


def test_init_names_per_service_and_per_replica() -> None:
    service = _project(WEB).services["web"]
    assert H.init_name("demo", service, 0, None) == "demo-web-pre_start-0"
    assert H.init_name("demo", service, 2, "demo-web-3") == "demo-web-3-pre_start-2"


def test_init_config_is_the_service_with_the_step_and_nothing_that_clashes() -> None:
    service = _project(WEB).services["web"]
    config = H.init_config(service, service.spec["pre_start"][0])
    assert config["command"] == ["migrate"]
    assert config["entrypoint"] == ["/entry"]  # the service's image: its entrypoint too
    assert config["user"] == "1000"
    assert config["environment"] == {"A": "service", "B": "hook"}
    assert config["healthcheck"] == {"disable": True}
    for gone in ("ports", "container_name", "restart", "volumes"):
        assert gone not in config
    assert config["networks"] == {"default": None}
    other = H.init_config(service, {"command": ["x"], "image": "tools:2"})
    assert other["image"] == "tools:2" and "entrypoint" not in other


def test_init_spec_takes_the_service_container_volumes_and_no_aliases() -> None:
    project = _project(WEB)
    service = project.services["web"]
    config = H.init_config(service, service.spec["pre_start"][0])
    plain, _ = container_spec(project_context(project), "web", config,
                              name="demo-web-pre_start-0", image="app:1", labels={})
    spec = H.init_plain(plain, "abc123")
    assert spec["volumes_from"] == ["abc123"]
    assert spec["mounts"] == []
    assert spec["ports"] == []
    assert spec["restart"] == "no"
    assert [(a["network"], a["aliases"], a["ipv4_address"]) for a in spec["networks"]] == \
        [("demo_default", [], None)]


def test_a_record_holds_for_the_same_step_image_and_service_only() -> None:
    hook = {"command": ["migrate"]}
    first = H.record_hash(hook, "app:1", "sha256:1", "h1")
    assert first == H.record_hash(dict(hook), "app:1", "sha256:1", "h1")
    assert len({first, H.record_hash({"command": ["other"]}, "app:1", "sha256:1", "h1"),
                H.record_hash(hook, "app:1", "sha256:2", "h1"),
                H.record_hash(hook, "app:1", "sha256:1", "h2")}) == 4

    def kept(status: Any, code: int, recorded: str) -> ContainerRow:
        return ContainerRow(id="i", name="demo-web-pre_start-0", image_id="", image_ref="",
                            spec={"labels": {H.HOOK_HASH: recorded}}, created=1.0,
                            status=status, exit_code=code)

    assert H.succeeded(kept("exited", 0, first), first)
    assert not H.succeeded(kept("exited", 1, first), first)
    assert not H.succeeded(kept("running", 0, first), first)
    assert not H.succeeded(kept("exited", 0, "other"), first)


def test_output_tail_environment_and_commands() -> None:
    assert H.tail("") == ""
    said = H.tail("\n".join(f"line {i}" for i in range(10)) + "\n")
    assert said == "; its last output:\n" + "\n".join(f"line {i}" for i in range(5, 10))
    assert len(H.tail("x" * 5000)) < 700
    assert H.environment({"environment": {"A": 1, "B": None, "C": True}}) == \
        {"A": "1", "C": "true"}
    assert H.environment({"environment": ["A=b=c"]}) == {"A": "b=c"}
    assert H.command_words("sh -c 'echo hi'") == ["sh", "-c", "echo hi"]
    assert H.command_words(["echo", 1]) == ["echo", "1"]


def _init_container(name: str = "demo-web-pre_start-0") -> ObservedContainer:
    return ObservedContainer(id="i" * 64, name=name, service="web", number=1,
                             config_hash="", state=EXITED, exit_code=0, oneoff=True)


def test_the_planner_leaves_init_containers_alone_and_down_removes_them() -> None:
    project = _project({"image": "app:1", "command": ["serve"]})
    observed = Observed(project="demo", containers=(_init_container(),),
                        images={"app:1": "sha256:1"})
    plan = reconcile(project, observed)
    assert all(c.params.get("name") != "demo-web-pre_start-0" for c in plan.changes)
    assert not any("orphan" in w for w in plan.warnings)
    down = plan_down(project, observed)
    assert [c.params["name"] for c in down.changes if c.action.value == "remove orphan"] == \
        ["demo-web-pre_start-0"]
