"""Golden plans: a small desired project and an observed state in, the plan's text out.

Each case is a function of a temporary folder returning ``(project, observed, options)``;
``data/plans.txt`` holds, under ``### <case>``, the exact text the planner must produce. No
root, no runtime: the planner is pure. After a deliberate change of the planner, rewrite that
file with ``python -m tests.unit.test_plan`` and review its diff line by line.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.manifest.model import Project
from composer.plan.down import DownOptions, plan_down
from composer.plan.reconcile import FORCE, NEVER, Options, reconcile
from composer.plan.render import to_json, to_text
from composer.state.observed import Observed, ObservedContainer, ObservedResource
from tests.unit.plan_cases import WEB_DB, edit, project, running, with_state

Case = tuple[Project, Observed, Options | DownOptions]
CASES: dict[str, Callable[[Path], Case]] = {}


def case(func: Callable[[Path], Case]) -> Callable[[Path], Case]:
    CASES[func.__name__] = func
    return func


def nothing(p: Project) -> Observed:
    return Observed(project=p.name)


def changed(tmp: Path, old: str, new: str, **options: Any) -> Case:
    """The project as ``old`` runs, planned as ``new``."""
    before = project(tmp, old)
    return project(tmp, new), running(before), Options(**options)


ONE_SHOT = """
services:
  migrate:
    image: app:1
    command: [migrate]
  app:
    image: app:1
    depends_on:
      migrate: {condition: service_completed_successfully}
"""

SIDECAR = """
services:
  vpn:
    image: vpn:1
    environment: {REGION: eu}
  app:
    image: app:1
    network_mode: service:vpn
  logs:
    image: logs:1
    volumes_from: [app]
  client:
    image: client:1
    depends_on: [app]
"""

RESTART = """
services:
  db:
    image: postgres:16
    environment: {V: "1"}
  api:
    image: api:1
    depends_on:
      db: {condition: service_started, restart: true}
  worker:
    image: worker:1
    depends_on: [db]
"""

BUILT = """
services:
  api:
    build: ./api
  web:
    image: nginx:1.27
    pull_policy: always
"""

PROFILES = """
services:
  web:
    image: nginx:1.27
  debug:
    image: busybox:1
    profiles: [dev]
"""

NETWORKS = """
services:
  web:
    image: nginx:1.27
    networks: [front]
  db:
    image: postgres:16
    networks: [back]
networks:
  front: {}
  back: {internal: true}
"""


# --- up: fresh, no-op, changes ----------------------------------------------------------------

@case
def fresh_up(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, nothing(p), Options()


@case
def fresh_up_no_start(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, nothing(p), Options(no_start=True)


@case
def no_op_up(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, running(p), Options()


@case
def image_tag_changed(tmp: Path) -> Case:
    return changed(tmp, WEB_DB, WEB_DB.replace("nginx:1.27", "nginx:1.28"))


@case
def image_rebuilt_under_the_same_tag(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    observed = running(p)
    images = {**observed.images, "nginx:1.27": "sha256:0123456789abcdef0123"}
    return p, dataclasses.replace(observed, images=images), Options()


@case
def environment_changed(tmp: Path) -> Case:
    return changed(tmp, WEB_DB, WEB_DB.replace('DEBUG: "0"', 'DEBUG: "1"'))


@case
def environment_added_and_port_changed(tmp: Path) -> Case:
    new = WEB_DB.replace('DEBUG: "0"', 'DEBUG: "0", MODE: fast').replace("8080:80", "9090:80")
    return changed(tmp, WEB_DB, new)


@case
def config_changed_without_recorded_config(tmp: Path) -> Case:
    new = project(tmp, WEB_DB.replace('DEBUG: "0"', 'DEBUG: "1"'))
    old = running(project(tmp, WEB_DB))
    return new, edit(old, "web", lambda c: dataclasses.replace(c, config=None)), Options()


@case
def healthcheck_changed_recreates_the_dependency_only(tmp: Path) -> Case:
    return changed(tmp, WEB_DB, WEB_DB.replace("[CMD, pg_isready]", "[CMD, pg_isready, -q]"))


@case
def replicas_and_depends_on_do_not_recreate(tmp: Path) -> Case:
    new = WEB_DB.replace("      db: {condition: service_healthy}",
                         "      db: {condition: service_started}")
    return changed(tmp, WEB_DB, new)


@case
def build_section_changed_does_not_recreate(tmp: Path) -> Case:
    old = BUILT.replace("pull_policy: always", "pull_policy: missing")
    return changed(tmp, old, old.replace("build: ./api", "build: {context: ./api, "
                                                         "args: {V: '2'}}"))


# --- start, stop, scale -----------------------------------------------------------------------

@case
def stopped_containers_are_started(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, edit(running(p), "web", with_state("exited", 137)), Options()


@case
def created_containers_are_started(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, running(p, state="created"), Options()


@case
def scale_up(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, running(p), Options(scale={"web": 3})


@case
def scale_up_from_the_file(tmp: Path) -> Case:
    return changed(tmp, WEB_DB, WEB_DB.replace("    image: nginx:1.27",
                                               "    image: nginx:1.27\n    scale: 2"))


@case
def scale_down_removes_the_highest_numbers_first(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    many = project(tmp, WEB_DB.replace("    image: nginx:1.27", "    image: nginx:1.27\n"
                                       "    scale: 4"))
    return p, running(many), Options()


@case
def scale_to_zero(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, running(p), Options(scale={"web": 0})


@case
def a_missing_replica_is_created(tmp: Path) -> Case:
    two = project(tmp, WEB_DB.replace("    image: nginx:1.27", "    image: nginx:1.27\n"
                                      "    scale: 2"))
    observed = edit(running(two), "web", lambda c: c if c.number == 2 else None)
    return two, observed, Options()


# --- orphans ----------------------------------------------------------------------------------

def _with_orphan(tmp: Path) -> tuple[Project, Observed]:
    old = project(tmp, WEB_DB.replace("services:\n", "services:\n  cache:\n    image: redis:7\n"))
    return project(tmp, WEB_DB), running(old)


@case
def orphans_are_named(tmp: Path) -> Case:
    return (*_with_orphan(tmp), Options())


@case
def orphans_are_removed_with_remove_orphans(tmp: Path) -> Case:
    return (*_with_orphan(tmp), Options(remove_orphans=True))


@case
def one_off_containers_are_not_orphans(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    observed = running(p)
    run = ObservedContainer(id="run0000000000001", name="p-web-run-0123456789ab", service="web",
                            number=1, config_hash="x", oneoff=True)
    gone = ObservedContainer(id="old0000000000001", name="p-old-run-0123456789ab",
                             service="old", number=1, config_hash="x", oneoff=True)
    return p, dataclasses.replace(observed, containers=(*observed.containers, run, gone)), \
        Options(remove_orphans=True)


# --- cascades ---------------------------------------------------------------------------------

@case
def namespace_and_volumes_from_cascade(tmp: Path) -> Case:
    return changed(tmp, SIDECAR, SIDECAR.replace("REGION: eu", "REGION: us"))


@case
def plain_depends_on_does_not_cascade(tmp: Path) -> Case:
    return changed(tmp, SIDECAR, SIDECAR.replace("image: app:1", "image: app:2"))


@case
def depends_on_restart_restarts_the_dependent(tmp: Path) -> Case:
    return changed(tmp, RESTART, RESTART.replace('V: "1"', 'V: "2"'))


@case
def depends_on_restart_without_a_recreate_does_nothing(tmp: Path) -> Case:
    p = project(tmp, RESTART)
    return p, running(p), Options()


# --- gating -----------------------------------------------------------------------------------

@case
def healthy_gating(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, nothing(p), Options()


@case
def completed_gating(tmp: Path) -> Case:
    p = project(tmp, ONE_SHOT)
    return p, nothing(p), Options()


@case
def a_completed_one_shot_is_left_alone(tmp: Path) -> Case:
    p = project(tmp, ONE_SHOT)
    return p, edit(running(p), "migrate", with_state("exited", 0)), Options()


@case
def a_failed_one_shot_runs_again(tmp: Path) -> Case:
    p = project(tmp, ONE_SHOT)
    return p, edit(running(p), "migrate", with_state("exited", 1)), Options()


@case
def a_recreated_dependency_gates_its_dependents_start(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    observed = edit(running(p), "web", lambda c: None)
    return p, edit(observed, "db", lambda c: dataclasses.replace(c, config_hash="old")), Options()


# --- profiles, targets, policies --------------------------------------------------------------

@case
def profiles_leave_disabled_services_out(tmp: Path) -> Case:
    p = project(tmp, PROFILES)
    return p, nothing(p), Options()


@case
def profiles_enabled(tmp: Path) -> Case:
    p = project(tmp, PROFILES, profiles=["dev"])
    return p, nothing(p), Options()


@case
def targeted_service_pulls_in_its_dependencies(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, nothing(p), Options(services=("web",))


@case
def targeted_service_with_no_deps(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, nothing(p), Options(services=("web",), no_deps=True)


@case
def targeted_dependency_leaves_its_dependents(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, nothing(p), Options(services=("db",))


@case
def force_recreate(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, running(p), Options(recreate=FORCE)


@case
def force_recreate_of_a_target_keeps_its_dependencies(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, running(p), Options(services=("web",), recreate=FORCE)


@case
def always_recreate_deps(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, running(p), Options(services=("web",), recreate_deps=FORCE)


@case
def no_recreate_keeps_diverged_containers(tmp: Path) -> Case:
    return changed(tmp, WEB_DB, WEB_DB.replace("nginx:1.27", "nginx:1.28"), recreate=NEVER)


@case
def renew_anon_volumes(tmp: Path) -> Case:
    return changed(tmp, WEB_DB, WEB_DB.replace('DEBUG: "0"', 'DEBUG: "1"'),
                   renew_anon_volumes=True)


# --- images, networks, volumes ----------------------------------------------------------------

@case
def images_are_built_and_pulled_as_the_policy_says(tmp: Path) -> Case:
    p = project(tmp, BUILT)
    return p, nothing(p), Options()


@case
def pull_always_pulls(tmp: Path) -> Case:
    p = project(tmp, BUILT)
    return p, running(p), Options()


@case
def build_flag_rebuilds(tmp: Path) -> Case:
    p = project(tmp, BUILT.replace("pull_policy: always", "pull_policy: missing"))
    return p, running(p), Options(build=True)


@case
def pull_never_with_a_missing_image(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, nothing(p), Options(pull="never")


@case
def a_missing_network_is_made(tmp: Path) -> Case:
    p = project(tmp, NETWORKS)
    observed = running(p)
    return p, dataclasses.replace(observed, networks=observed.networks[1:]), Options()


@case
def a_changed_network_is_made_anew(tmp: Path) -> Case:
    return changed(tmp, NETWORKS, NETWORKS.replace("back: {internal: true}", "back: {}"))


@case
def a_changed_volume_is_kept(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    observed = running(p)
    volumes = tuple(dataclasses.replace(v, config_hash="old") for v in observed.volumes)
    return p, dataclasses.replace(observed, volumes=volumes), Options()


# --- down -------------------------------------------------------------------------------------

@case
def down(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, running(p), DownOptions()


@case
def down_with_volumes(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, running(p), DownOptions(volumes=True)


@case
def down_with_orphans_named(tmp: Path) -> Case:
    return (*_with_orphan(tmp), DownOptions())


@case
def down_remove_orphans_and_local_images(tmp: Path) -> Case:
    old = project(tmp, BUILT.replace("services:\n", "services:\n  cache:\n    image: redis:7\n"))
    return project(tmp, BUILT), running(old), DownOptions(remove_orphans=True, rmi="local")


@case
def down_of_stopped_containers_skips_the_stop(tmp: Path) -> Case:
    p = project(tmp, SIDECAR)
    return p, edit(running(p), "logs", with_state("exited", 0)), DownOptions(rmi="all")


@case
def down_of_one_service_keeps_the_networks_the_rest_uses(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, running(p), DownOptions(volumes=True, services=("web",))


@case
def down_of_nothing(tmp: Path) -> Case:
    p = project(tmp, WEB_DB)
    return p, nothing(p), DownOptions(volumes=True)


def plan_of(built: Case) -> Any:
    desired, observed, options = built
    if isinstance(options, DownOptions):
        return plan_down(desired, observed, options)
    return reconcile(desired, observed, options)


GOLDEN_FILE = Path(__file__).parent / "data" / "plans.txt"


def _golden() -> dict[str, str]:
    plans: dict[str, str] = {}
    name = None
    for line in GOLDEN_FILE.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("### "):
            name = line[4:].strip()
            plans[name] = ""
        elif name is not None:
            plans[name] += line
    return plans


GOLDEN = _golden() if GOLDEN_FILE.exists() else {}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_plan(tmp_path: Path, name: str) -> None:
    assert to_text(plan_of(CASES[name](tmp_path))) == GOLDEN[name]


def test_there_are_at_least_forty_golden_plans() -> None:
    assert len(CASES) >= 40 and set(CASES) == set(GOLDEN)


def _shuffled(observed: Observed, rnd: random.Random) -> Observed:
    def mix(items: tuple[Any, ...]) -> tuple[Any, ...]:
        out = list(items)
        rnd.shuffle(out)
        return tuple(out)

    images = list(observed.images.items())
    rnd.shuffle(images)
    return dataclasses.replace(observed, containers=mix(observed.containers),
                               networks=mix(observed.networks), volumes=mix(observed.volumes),
                               images=dict(images))


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_order_observed_state_arrives_in_does_not_change_the_plan(
        tmp_path: Path, name: str) -> None:
    desired, observed, options = CASES[name](tmp_path)
    expected = to_text(plan_of((desired, observed, options)))
    for seed in range(5):
        shuffled = _shuffled(observed, random.Random(seed))
        assert to_text(plan_of((desired, shuffled, options))) == expected


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(sorted(CASES)), st.randoms(use_true_random=False))
def test_shuffled_observed_state_never_changes_a_plan(name: str, rnd: random.Random) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        desired, observed, options = CASES[name](Path(tmp))
        expected = to_text(plan_of((desired, observed, options)))
        assert to_text(plan_of((desired, _shuffled(observed, rnd), options))) == expected


def test_every_requirement_comes_earlier_and_exists(tmp_path: Path) -> None:
    for name, build in CASES.items():
        plan = plan_of(build(tmp_path))
        ids = [c.id for c in plan.changes]
        assert ids == list(range(1, len(ids) + 1)), name
        for change in plan.changes:
            assert all(0 < r < change.id for r in change.requires), (name, change)


def test_json_form(tmp_path: Path) -> None:
    import json

    data = json.loads(to_json(plan_of(CASES["environment_changed"](tmp_path))))
    first = data["changes"][0]
    assert first["action"] == "create" and first["address"] == "service web #1"
    assert first["fields"] == ["environment.DEBUG"]
    assert data["project"] == "p"


def test_volumes_in_the_observed_state_of_another_key_are_left_alone(tmp_path: Path) -> None:
    p = project(tmp_path, WEB_DB)
    observed = running(p)
    stray = ObservedResource(key="other", name="p_other", config_hash="x")
    plan = reconcile(p, dataclasses.replace(observed, volumes=(*observed.volumes, stray)))
    assert not plan.changes


if __name__ == "__main__":
    import tempfile

    with GOLDEN_FILE.open("w", encoding="utf-8") as handle:
        for name in sorted(CASES):
            with tempfile.TemporaryDirectory() as tmp:
                handle.write(f"### {name}\n{to_text(plan_of(CASES[name](Path(tmp))))}")
