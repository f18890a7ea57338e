"""``composer convert kubernetes``: golden manifests and reports, one case per concern.

Each folder of ``data/kubernetes/`` holds a ``compose.yaml`` (and the files it names), an
optional ``options.json`` (:class:`composer.export.kubernetes.Options` fields), and what the
conversion must give: ``expected.yaml`` (the manifests) and ``expected-report.txt`` (the
report, the case folder written as ``.``). ``COMPOSER_UPDATE_GOLDEN=1`` rewrites them; read
the diff before committing it. The tests below the golden ones name the mapping of each
attribute, so that a change shows which one moved.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from composer.export.kubernetes import Conversion, Options, convert_loaded, to_yaml
from composer.manifest.loader import LoadOptions, load

DATA = Path(__file__).parent / "data" / "kubernetes"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "compose.yaml").is_file())
UPDATE = os.environ.get("COMPOSER_UPDATE_GOLDEN") == "1"


def convert_case(case: str, **overrides: Any) -> Conversion:
    folder = DATA / case
    options = json.loads((folder / "options.json").read_text()) \
        if (folder / "options.json").is_file() else {}
    options.update(overrides)
    loaded = load(LoadOptions(files=[str(folder / "compose.yaml")], cwd=str(folder),
                              environ={"HOME": "/home/composer-test", "PATH": os.defpath}))
    return convert_loaded(loaded, Options(**options))


def _golden(path: Path, actual: str) -> None:
    if UPDATE or not path.exists():
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8"), f"{path.name} differs"


@pytest.mark.parametrize("case", CASES)
def test_golden_manifests(case: str) -> None:
    _golden(DATA / case / "expected.yaml", to_yaml(convert_case(case).objects))


@pytest.mark.parametrize("case", CASES)
def test_golden_report(case: str) -> None:
    report = convert_case(case).report.render().replace(str(DATA / case), ".")
    _golden(DATA / case / "expected-report.txt", report)


def _objects(case: str, **overrides: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o
            for o in convert_case(case, **overrides).objects}


def _container(obj: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
    return container


# -- workload ------------------------------------------------------------------------------

def test_command_entrypoint_env_and_working_dir() -> None:
    web = _container(_objects("workload")[("Deployment", "web")])
    assert web["command"] == ["/docker-entrypoint.sh"]
    # $(...) would be expanded by Kubernetes: the literal text is escaped.
    assert web["args"] == ["nginx", "-g", "daemon off;", "-c", "$$(pwd)/nginx.conf"]
    assert web["env"] == [{"name": "EMPTY", "value": ""}, {"name": "MODE", "value": "production"}]
    assert web["workingDir"] == "/srv"


def test_replicas_from_scale_and_deploy_replicas() -> None:
    objects = _objects("workload")
    assert objects[("Deployment", "web")]["spec"]["replicas"] == 3
    assert objects[("Deployment", "worker")]["spec"]["replicas"] == 2


def test_user_resources_and_security() -> None:
    web = _container(_objects("workload")[("Deployment", "web")])
    assert web["securityContext"] == {
        "runAsUser": 101, "runAsGroup": 102, "capabilities": {"add": ["NET_ADMIN"],
                                                              "drop": ["ALL"]},
        "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}
    assert web["resources"] == {"limits": {"cpu": "1500m", "memory": "256Mi"},
                                "requests": {"cpu": "250m", "memory": "64Mi"}}
    assert web["tty"] is True and web["stdin"] is True
    assert web["imagePullPolicy"] == "Always"


def test_healthcheck_becomes_liveness_and_readiness_probes() -> None:
    web = _container(_objects("workload")[("Deployment", "web")])
    probe = {"exec": {"command": ["curl", "-f", "http://localhost/"]}, "periodSeconds": 10,
             "timeoutSeconds": 3, "failureThreshold": 5, "initialDelaySeconds": 60}
    assert web["livenessProbe"] == probe and web["readinessProbe"] == probe
    worker = _container(_objects("workload")[("Deployment", "worker")])
    # Docker's defaults (30s, 30s, 3), not Kubernetes' (10s, 1s, 3); CMD-SHELL runs in sh.
    assert worker["livenessProbe"] == {"exec": {"command": ["/bin/sh", "-c", "pgrep sh"]},
                                       "periodSeconds": 30, "timeoutSeconds": 30,
                                       "failureThreshold": 3}


def test_pod_attributes() -> None:
    pod = _objects("workload")[("Deployment", "web")]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 45
    assert pod["hostname"] == "front"
    assert pod["hostAliases"] == [{"ip": "10.0.0.5",
                                   "hostnames": ["cache.internal", "db.internal"]}]
    assert pod["dnsConfig"] == {"nameservers": ["10.0.0.2"], "searches": ["example.com"],
                                "options": [{"name": "ndots", "value": "2"}]}
    assert pod["securityContext"] == {"supplementalGroups": [2000], "sysctls": [
        {"name": "net.core.somaxconn", "value": "1024"}]}
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"}
    assert pod["enableServiceLinks"] is False
    assert pod["containers"][0]["lifecycle"] == {
        "postStart": {"exec": {"command": ["/bin/sh", "-c", "echo started"]}},
        "preStop": {"exec": {"command": ["nginx", "-s", "quit"]}}}


def test_labels_and_annotations_are_carried() -> None:
    web = _objects("workload")[("Deployment", "web")]
    pod_meta = web["spec"]["template"]["metadata"]
    assert pod_meta["labels"] == {"com.example.team": "storefront",
                                  "app.kubernetes.io/component": "frontend",
                                  "app.kubernetes.io/name": "web",
                                  "app.kubernetes.io/part-of": "shop"}
    # Not valid as a label value: an annotation.
    assert pod_meta["annotations"] == {
        "com.example.description": "the shop's web front, with spaces",
        "example.com/owner": "web-team"}
    assert web["metadata"]["labels"]["com.example.tier"] == "edge"
    assert web["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "composer"


def test_restart_policies() -> None:
    objects = _objects("workload")
    assert objects[("Deployment", "web")]["spec"]["template"]["spec"]["restartPolicy"] == \
        "Always"
    report = convert_case("workload").report.render()
    assert "services.worker.deploy.restart_policy: changed: restart 'on-failure': the pods " \
        "of a Deployment are always restarted" in report


def test_global_mode_is_a_daemon_set_with_a_node_selector() -> None:
    agent = _objects("workload")[("DaemonSet", "agent")]
    assert agent["spec"]["template"]["spec"]["nodeSelector"] == {
        "zone": "east", "kubernetes.io/os": "linux"}
    assert "replicas" not in agent["spec"]


# -- Services ------------------------------------------------------------------------------

def test_cluster_ip_service_keeps_the_container_ports() -> None:
    api = _objects("services")[("Service", "api")]
    assert api["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in api["spec"]["ports"]] == [(8000, 8000),
                                                                            (9000, 9000)]
    assert api["spec"]["selector"] == {"app.kubernetes.io/name": "api",
                                       "app.kubernetes.io/part-of": "net"}


def test_node_port_and_load_balancer_by_label() -> None:
    objects = _objects("services")
    web = objects[("Service", "web")]["spec"]
    assert web["type"] == "NodePort"
    assert {(p["port"], p["targetPort"], p.get("nodePort")) for p in web["ports"]} == {
        (80, 80, None), (81, 81, None), (443, 443, None), (8080, 80, None),
        (30080, 81, 30080), (8443, 443, None)}
    lb = objects[("Service", "lb")]["spec"]
    assert lb["type"] == "LoadBalancer"
    assert {(p["port"], p["protocol"]) for p in lb["ports"]} == {
        (8080, "TCP"), (80, "TCP"), (53, "UDP")}


def test_service_type_option() -> None:
    api = _objects("services", service_type="LoadBalancer")[("Service", "api")]
    assert api["spec"]["type"] == "LoadBalancer"


def test_dnsrr_is_headless_and_no_ports_means_no_service() -> None:
    objects = _objects("services")
    assert objects[("Service", "peers")]["spec"]["clusterIP"] == "None"
    assert ("Service", "quiet") not in objects
    assert ("Deployment", "quiet") in objects


# -- storage -------------------------------------------------------------------------------

def test_named_volumes_are_claims_mounted_where_the_service_mounts_them() -> None:
    objects = _objects("storage")
    claim = objects[("PersistentVolumeClaim", "store-db-data")]
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "20Gi"}},
                             "storageClassName": "fast-ssd"}
    assert claim["metadata"]["labels"]["com.example.backup"] == "daily"
    shared = objects[("PersistentVolumeClaim", "store-shared")]
    assert shared["spec"]["accessModes"] == ["ReadWriteMany"]  # two services mount it
    db = objects[("Deployment", "db")]
    assert db["spec"]["strategy"] == {"type": "Recreate"}
    mounts = {m["mountPath"]: m for m in _container(db)["volumeMounts"]}
    volumes = {v["name"]: v for v in db["spec"]["template"]["spec"]["volumes"]}
    data = mounts["/var/lib/postgresql/data"]
    assert volumes[data["name"]]["persistentVolumeClaim"] == {"claimName": "store-db-data"}
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"] == {"medium": "Memory",
                                                          "sizeLimit": "16Mi"}
    assert volumes[mounts["/run"]["name"]]["emptyDir"] == {"medium": "Memory",
                                                          "sizeLimit": "8Mi"}
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"] == {"medium": "Memory",
                                                              "sizeLimit": "128Mi"}
    assert volumes[mounts["/var/cache/anon"]["name"]]["emptyDir"] == {}
    backup = objects[("Deployment", "backup")]
    legacy = next(v for v in backup["spec"]["template"]["spec"]["volumes"]
                  if "persistentVolumeClaim" in v and
                  v["persistentVolumeClaim"]["claimName"] == "legacy-claim")
    assert legacy  # external: mounted, not created
    assert ("PersistentVolumeClaim", "legacy-claim") not in objects


def test_configs_and_secrets_are_read_and_mounted_at_their_targets() -> None:
    objects = _objects("storage")
    assert objects[("ConfigMap", "store-nginx")]["data"] == {"nginx": "server { listen 80; }\n"}
    assert objects[("ConfigMap", "store-greeting")]["data"] == {"greeting": "hello\nworld\n"}
    assert objects[("Secret", "store-db-password")]["data"] == {"db_password": "czNjcjN0Cg=="}
    assert objects[("Secret", "store-api-key")]["data"] == {"api_key": "YWJjMTIz"}
    assert ("ConfigMap", "site-config") not in objects
    db = _container(objects[("Deployment", "db")])
    mounts = {m["mountPath"]: m for m in db["volumeMounts"]}
    assert mounts["/run/secrets/db_password"]["subPath"] == "db_password"
    assert mounts["/run/secrets/api.key"]["readOnly"] is True
    volumes = {v["name"]: v for v in
               objects[("Deployment", "db")]["spec"]["template"]["spec"]["volumes"]}
    key = volumes[mounts["/run/secrets/api.key"]["name"]]["secret"]
    assert key == {"secretName": "store-api-key",
                   "items": [{"key": "api_key", "path": "api_key", "mode": 0o400}]}
    web = _container(objects[("Deployment", "web")])
    assert {m["mountPath"] for m in web["volumeMounts"]} == {
        "/srv/shared", "/etc/nginx/conf.d/default.conf", "/greeting", "/etc/extra.conf"}


# -- Jobs, images --------------------------------------------------------------------------

def test_one_shot_services_become_jobs() -> None:
    objects = _objects("jobs")
    migrate = objects[("Job", "migrate")]["spec"]
    assert migrate["backoffLimit"] == 0
    assert migrate["template"]["spec"]["restartPolicy"] == "Never"
    seed = objects[("Job", "seed")]["spec"]
    assert seed["backoffLimit"] == 4
    assert seed["template"]["spec"]["restartPolicy"] == "OnFailure"
    report = objects[("Job", "report")]["spec"]
    assert report["completions"] == report["parallelism"] == 3
    assert ("Deployment", "app") in objects


def test_built_images_are_named_under_the_registry() -> None:
    conversion = convert_case("build")
    objects = {(o["kind"], o["metadata"]["name"]): o for o in conversion.objects}
    app = _container(objects[("Deployment", "app")])
    assert app["image"] == "registry.example.com/team/built-app"
    assert "imagePullPolicy" not in app
    assert _container(objects[("Deployment", "tagged")])["image"] == \
        "registry.example.com/team/tagged:1.0"
    assert conversion.built_images["app"] == "registry.example.com/team/built-app"
    # The Dockerfile's EXPOSE and HEALTHCHECK (of the stage it builds from), read.
    assert app["ports"] == [{"containerPort": 8080, "protocol": "TCP", "name": "tcp-8080"}]
    assert app["livenessProbe"]["periodSeconds"] == 5
    assert app["livenessProbe"]["failureThreshold"] == 2
    assert objects[("Namespace", "built")]
    assert all(o["metadata"].get("namespace") == "built" for o in conversion.objects
               if o["kind"] != "Namespace")


def test_built_images_without_registry_are_reported() -> None:
    conversion = convert_case("build", registry=None)
    app = _container(next(o for o in conversion.objects if o["kind"] == "Deployment"))
    assert app["image"] == "built-app" and app["imagePullPolicy"] == "IfNotPresent"
    text = conversion.report.render().replace(str(DATA / "build"), ".")
    assert "./compose.yaml:6:5: services.app.build: dropped: a build section without an " \
        "image name: the cluster cannot pull 'built-app'" in text
