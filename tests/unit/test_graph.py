"""The service dependency graph: edge kinds, start/stop order, selections, cascades, cycles."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import composer
from composer.errors import CycleError, ManifestError
from composer.graph import Edge, ServiceGraph

KITCHEN = """\
services:
  db:
    image: alpine
    healthcheck: {test: ["CMD", "true"]}
  vpn: {image: alpine}
  data: {image: alpine}
  debug: {image: alpine, profiles: [debug]}
  migrate: {image: alpine, depends_on: [db]}
  web:
    image: alpine
    depends_on:
      db: {condition: service_healthy, restart: true}
      migrate: {condition: service_completed_successfully}
      ghost: {condition: service_started, required: false}
      debug: {condition: service_started, required: false}
    links: ["db:database"]
    volumes_from: ["data:ro", "container:elsewhere"]
  side:
    image: alpine
    network_mode: service:vpn
    ipc: service:vpn
    pid: service:web
"""


def load(tmp_path: Path, text: str) -> ServiceGraph:
    path = tmp_path / "compose.yaml"
    path.write_text(textwrap.dedent(text))
    project = composer.load_project([str(path)], project_name="graphtest",
                                    environ={"PATH": "/bin"})
    return ServiceGraph.from_project(project)


@pytest.fixture
def kitchen(tmp_path: Path) -> ServiceGraph:
    return load(tmp_path, KITCHEN)


def E(service: str, dependency: str, *kinds: str, condition: str = "service_started",
      required: bool = True, restart: bool = False) -> Edge:
    return Edge(service, dependency, condition, required, restart,
                frozenset(kinds or ("depends_on",)))


# --- edges from a project ----------------------------------------------------------------------

def test_every_edge_kind_is_read_from_the_spec(kitchen: ServiceGraph) -> None:
    assert kitchen.services == ("data", "db", "migrate", "side", "vpn", "web")
    assert kitchen.edges == (
        E("migrate", "db"),
        E("side", "vpn", "namespace", restart=True),  # network_mode and ipc: one edge
        E("side", "web", "namespace", restart=True),  # pid
        E("web", "data", "volumes_from"),  # container:elsewhere is not a service
        # Written in depends_on (healthy, restart) *and* linked.
        E("web", "db", "depends_on", "link", condition="service_healthy", restart=True),
        E("web", "migrate", condition="service_completed_successfully"),
    )


def test_edges_of_are_sorted_by_dependency(kitchen: ServiceGraph) -> None:
    assert [e.dependency for e in kitchen.edges_of("web")] == ["data", "db", "migrate"]
    assert kitchen.edges_of("db") == ()
    assert [e.service for e in kitchen.dependent_edges("db")] == ["migrate", "web"]


def test_optional_dependency_on_missing_or_disabled_service_is_skipped(
        kitchen: ServiceGraph) -> None:
    assert "ghost" not in kitchen
    assert "debug" not in kitchen  # off: its profile is not active
    assert kitchen.dependencies("web") == ("data", "db", "migrate")
    assert kitchen.with_dependencies(["web"]) == ("data", "db", "migrate", "web")
    assert kitchen.dangling == (E("web", "debug", required=False),
                                E("web", "ghost", required=False))


def test_optional_dependency_on_enabled_service_is_pulled_in(tmp_path: Path) -> None:
    graph = load(tmp_path, """\
        services:
          web: {image: alpine, depends_on: {cache: {condition: service_started, required: false}}}
          cache: {image: alpine}
        """)
    assert graph.edges_of("web") == (E("web", "cache", required=False),)
    assert graph.with_dependencies(["web"]) == ("cache", "web")
    assert graph.generations() == [("cache",), ("web",)]
    assert graph.dangling == ()


def test_explicit_entry_that_differs_from_the_implicit_one_is_also_depends_on(
        tmp_path: Path) -> None:
    # Short-syntax depends_on has restart false; a link's implicit entry has restart true,
    # so the entry was written by the user. With volumes_from (restart false either way)
    # the two cannot be told apart: it counts as volumes_from only.
    graph = load(tmp_path, """\
        services:
          a: {image: alpine}
          b: {image: alpine}
          c: {image: alpine, depends_on: [a, b], links: [a], volumes_from: [b]}
        """)
    assert graph.edges_of("c") == (E("c", "a", "depends_on", "link"),
                                   E("c", "b", "volumes_from"))


def test_several_implicit_kinds_on_one_edge(tmp_path: Path) -> None:
    graph = load(tmp_path, """\
        services:
          vpn: {image: alpine}
          app: {image: alpine, network_mode: "service:vpn", volumes_from: ["vpn:rw"]}
        """)
    # Namespaces come before volumes_from in normalization, so restart is true.
    assert graph.edges_of("app") == (E("app", "vpn", "namespace", "volumes_from",
                                       restart=True),)


# --- order -------------------------------------------------------------------------------------

def test_generations_stop_generations_and_order(kitchen: ServiceGraph) -> None:
    start = [("data", "db", "vpn"), ("migrate",), ("web",), ("side",)]
    assert kitchen.generations() == start
    assert kitchen.stop_generations() == start[::-1]
    assert kitchen.order() == ("data", "db", "migrate", "vpn", "web", "side")


def test_generations_are_longest_path_layers() -> None:
    # d needs a directly and, through c, b: it goes after c, not beside b.
    graph = ServiceGraph.from_edges("abcd", [E("b", "a"), E("c", "b"), E("d", "a"),
                                             E("d", "c")])
    assert graph.generations() == [("a",), ("b",), ("c",), ("d",)]
    assert graph.order() == ("a", "b", "c", "d")


def test_order_breaks_ties_by_name() -> None:
    graph = ServiceGraph.from_edges(["z", "y", "x", "a"], [E("a", "z")])
    assert graph.order() == ("x", "y", "z", "a")
    assert graph.generations() == [("x", "y", "z"), ("a",)]


def test_empty_graph() -> None:
    graph = ServiceGraph.from_edges([], [])
    assert graph.services == ()
    assert graph.generations() == []
    assert graph.stop_generations() == []
    assert graph.order() == ()
    assert graph.with_dependencies([]) == ()


# --- selections --------------------------------------------------------------------------------

def test_with_dependencies_is_transitive(kitchen: ServiceGraph) -> None:
    assert kitchen.with_dependencies(["side"]) == ("data", "db", "migrate", "side", "vpn",
                                                   "web")
    assert kitchen.with_dependencies(["migrate", "vpn"]) == ("db", "migrate", "vpn")
    assert kitchen.with_dependencies(["db", "db"]) == ("db",)


def test_no_deps_returns_just_the_names(kitchen: ServiceGraph) -> None:
    assert kitchen.with_dependencies(["web", "side", "web"], no_deps=True) == ("side", "web")


def test_generations_of_a_subset_ignore_edges_leaving_it(kitchen: ServiceGraph) -> None:
    selected = kitchen.with_dependencies(["web"], no_deps=True)
    assert kitchen.generations(selected) == [("web",)]
    assert kitchen.generations(["side", "web"]) == [("web",), ("side",)]
    assert kitchen.generations(["side", "db"]) == [("db", "side")]
    assert kitchen.stop_generations(["side", "web", "vpn"]) == [("side",), ("vpn", "web")]
    full = kitchen.with_dependencies(["migrate"])
    assert kitchen.generations(full) == [("db",), ("migrate",)]


@pytest.mark.parametrize("call", [
    lambda g: g.with_dependencies(["web", "nope"]),
    lambda g: g.with_dependencies(["nope"], no_deps=True),
    lambda g: g.generations(["nope"]),
    lambda g: g.stop_generations(["ghost"]),
    lambda g: g.edges_of("nope"),
    lambda g: g.dependencies("nope"),
    lambda g: g.dependents("nope"),
    lambda g: g.cascade("nope"),
    lambda g: g.restarts_with("nope"),
])
def test_unknown_names_raise_value_error(kitchen: ServiceGraph,
                                        call: Callable[[ServiceGraph], object]) -> None:
    with pytest.raises(ValueError, match=r"no such service: (nope|ghost) \(services: data, db"):
        call(kitchen)


# --- what a change drags along -----------------------------------------------------------------

def test_cascade_follows_only_namespaces_and_volumes_from(kitchen: ServiceGraph) -> None:
    assert kitchen.cascade("vpn") == ("side",)
    assert kitchen.cascade("web") == ("side",)  # pid: service:web
    assert kitchen.cascade("data") == ("side", "web")  # volumes_from, then pid: transitive
    # web links db and restarts with it, migrate depends_on it: neither is recreated.
    assert kitchen.cascade("db") == ()
    assert kitchen.cascade("migrate") == ()
    assert kitchen.cascade("side") == ()


def test_cascade_stops_at_a_plain_depends_on() -> None:
    graph = ServiceGraph.from_edges("abcd", [E("b", "a", "volumes_from"),
                                             E("c", "b", restart=True),
                                             E("d", "c", "namespace")])
    assert graph.cascade("a") == ("b",)
    assert graph.cascade("c") == ("d",)
    assert graph.restarts_with("b") == ("c",)


def test_restarts_with_is_direct_dependents_with_restart(kitchen: ServiceGraph) -> None:
    assert kitchen.restarts_with("db") == ("web",)  # migrate's edge has restart false
    assert kitchen.restarts_with("vpn") == ("side",)
    assert kitchen.restarts_with("web") == ("side",)
    assert kitchen.restarts_with("data") == ()  # volumes_from: restart false
    assert kitchen.restarts_with("migrate") == ()


def test_restarts_with_is_not_transitive() -> None:
    graph = ServiceGraph.from_edges("abc", [E("b", "a", restart=True),
                                            E("c", "b", restart=True)])
    assert graph.restarts_with("a") == ("b",)
    assert graph.dependents("a") == ("b",)
    assert graph.dependencies("c") == ("b",)


# --- cycles ------------------------------------------------------------------------------------

def test_cycle_message_names_the_whole_cycle() -> None:
    with pytest.raises(CycleError) as caught:
        ServiceGraph.from_edges(["web", "api", "db", "other"],
                                [E("web", "api"), E("api", "db"), E("db", "web"),
                                 E("other", "web")])
    error = caught.value
    # Starts from the smallest member (api), not from where the edges began.
    assert error.message == "dependency cycle: api -> db -> web -> api"
    assert error.trail == ["api", "db", "web", "api"]
    assert error.path == "services.api.depends_on.db"
    assert error.loc is None
    assert str(error) == (
        "services.api.depends_on.db: dependency cycle: api -> db -> web -> api\n"
        "  hint: remove one of these dependencies (a depends_on entry, or the links, "
        "network_mode/ipc/pid or volumes_from that imply it)")
    assert isinstance(error, ManifestError)


def test_cycle_returns_to_the_smallest_member() -> None:
    # Following the smallest next member blindly would loop b -> c -> b; the cycle reported
    # goes through a, the smallest service on a cycle.
    edges = [E("a", "b"), E("b", "c"), E("c", "b"), E("c", "d"), E("d", "a")]
    with pytest.raises(CycleError) as caught:
        ServiceGraph.from_edges("abcd", edges)
    assert caught.value.message == "dependency cycle: a -> b -> c -> d -> a"


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(CycleError) as caught:
        ServiceGraph.from_edges(["x", "solo"], [E("solo", "solo", "namespace")])
    assert caught.value.message == "dependency cycle: solo -> solo"
    assert caught.value.path == "services.solo.depends_on.solo"


def test_smallest_of_two_cycles_is_reported() -> None:
    edges = [E("m", "n"), E("n", "m"), E("b", "z"), E("z", "b")]
    with pytest.raises(CycleError) as caught:
        ServiceGraph.from_edges("mnbz", edges)
    assert caught.value.message == "dependency cycle: b -> z -> b"


def test_loader_rejects_implicit_cycles_first(tmp_path: Path) -> None:
    # The graph's check is a second line of defence: the loader, which knows lines, reports
    # a cycle through links / network_mode itself.
    with pytest.raises(CycleError, match="dependency cycle: api -> web -> api"):
        load(tmp_path, """\
            services:
              web: {image: alpine, links: [api]}
              api: {image: alpine, network_mode: "service:web"}
            """)


# --- from_edges checks -------------------------------------------------------------------------

def test_from_edges_rejects_inconsistent_input() -> None:
    with pytest.raises(ValueError, match="'ghost' is not a service of the graph"):
        ServiceGraph.from_edges(["a"], [E("ghost", "a")])
    with pytest.raises(ValueError, match="service 'a' requires 'ghost'"):
        ServiceGraph.from_edges(["a"], [E("a", "ghost")])
    with pytest.raises(ValueError, match="edge a -> b is given twice"):
        ServiceGraph.from_edges("ab", [E("a", "b"), E("a", "b", restart=True)])
    with pytest.raises(ValueError, match="unknown condition 'service_ready'"):
        E("a", "b", condition="service_ready")
    with pytest.raises(ValueError, match="kinds must be a non-empty frozenset"):
        Edge("a", "b", kinds=frozenset({"hardlink"}))
    with pytest.raises(ValueError, match="kinds must be a non-empty frozenset"):
        Edge("a", "b", kinds=frozenset())


def test_from_edges_accepts_optional_edge_to_unknown_service() -> None:
    graph = ServiceGraph.from_edges(["a"], [E("a", "ghost", required=False)])
    assert graph.edges_of("a") == ()
    assert graph.dangling == (E("a", "ghost", required=False),)
    assert graph.with_dependencies(["a"]) == ("a",)


def test_to_networkx_points_from_dependency_to_dependent(kitchen: ServiceGraph) -> None:
    graph = kitchen.to_networkx()
    assert graph.has_edge("vpn", "side") and not graph.has_edge("side", "vpn")
    assert graph.edges["db", "web"]["edge"] == kitchen.edges_of("web")[1]
    graph.remove_node("db")  # a copy: the ServiceGraph is unchanged
    assert "db" in kitchen


# --- determinism -------------------------------------------------------------------------------

NAMES = [f"s{i}" for i in range(12)]
CONDITION = st.sampled_from(["service_started", "service_healthy",
                             "service_completed_successfully"])
KIND_SET = st.frozensets(st.sampled_from(["depends_on", "link", "namespace", "volumes_from"]),
                         min_size=1)


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], list[Edge]]:
    """A random acyclic graph: a service only needs services earlier in a random ranking."""
    size = draw(st.integers(1, len(NAMES)))
    ranking = draw(st.permutations(NAMES[:size]))
    pairs = draw(st.sets(st.tuples(st.integers(0, size - 1), st.integers(0, size - 1))
                         .filter(lambda p: p[0] > p[1]), max_size=30))
    edges = [Edge(ranking[i], ranking[j], draw(CONDITION), draw(st.booleans()),
                  draw(st.booleans()), draw(KIND_SET)) for i, j in sorted(pairs)]
    return list(ranking), edges


def answers(graph: ServiceGraph) -> dict[str, object]:
    every = graph.services
    half = every[::2]
    return {
        "services": every, "edges": graph.edges, "order": graph.order(),
        "generations": graph.generations(), "stop": graph.stop_generations(),
        "half": graph.generations(half), "needs": graph.with_dependencies(half),
        "per": [(graph.edges_of(s), graph.dependents(s), graph.cascade(s),
                 graph.restarts_with(s)) for s in every],
    }


@settings(max_examples=150, deadline=None)
@given(dags(), st.randoms(use_true_random=False))
def test_answers_do_not_depend_on_insertion_order(
        dag: tuple[list[str], list[Edge]], rnd: random.Random) -> None:
    names, edges = dag
    first = ServiceGraph.from_edges(names, edges)
    rnd.shuffle(names)
    rnd.shuffle(edges)
    assert answers(ServiceGraph.from_edges(names, edges)) == answers(first)


@settings(max_examples=150, deadline=None)
@given(dags())
def test_generations_respect_every_edge(dag: tuple[list[str], list[Edge]]) -> None:
    names, edges = dag
    graph = ServiceGraph.from_edges(names, edges)
    generations = graph.generations()
    level = {name: i for i, gen in enumerate(generations) for name in gen}
    assert sorted(level) == sorted(names)  # each service exactly once
    assert all(list(gen) == sorted(gen) for gen in generations)
    for edge in edges:
        assert level[edge.dependency] < level[edge.service]
    # Layers are as early as possible: a service after the first generation waits for a
    # dependency in the generation right before it.
    for name, i in level.items():
        if i:
            assert any(level[d] == i - 1 for d in graph.dependencies(name))
    position = {name: i for i, name in enumerate(graph.order())}
    assert all(position[e.dependency] < position[e.service] for e in edges)
    # The stop order is the start order reversed.
    assert graph.stop_generations() == generations[::-1]
    # A cascade is what namespace / volumes_from edges reach, walked here the naive way.
    for name in names:
        reached: set[str] = set()
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for edge in edges:
                if (edge.dependency == current and edge.kinds & {"namespace", "volumes_from"}
                        and edge.service not in reached):
                    reached.add(edge.service)
                    frontier.append(edge.service)
        assert graph.cascade(name) == tuple(sorted(reached))
        assert graph.restarts_with(name) == tuple(sorted(
            e.service for e in edges if e.dependency == name and e.restart))


@settings(max_examples=150, deadline=None)
@given(st.sets(st.tuples(st.sampled_from(NAMES[:8]), st.sampled_from(NAMES[:8])),
               min_size=1, max_size=20),
       st.randoms(use_true_random=False))
def test_cycle_report_is_deterministic(pairs: set[tuple[str, str]],
                                       rnd: random.Random) -> None:
    import networkx as nx

    edges = [E(a, b) for a, b in sorted(pairs)]
    needs = nx.DiGraph(list(pairs))
    needs.add_nodes_from(NAMES[:8])
    on_cycles = {n for c in nx.strongly_connected_components(needs)
                 for n in c if len(c) > 1 or needs.has_edge(n, n)}
    messages = set()
    for _ in range(3):
        rnd.shuffle(edges)
        try:
            ServiceGraph.from_edges(rnd.sample(NAMES[:8], 8), edges)
        except CycleError as error:
            trail = error.trail
            assert trail[0] == trail[-1] == min(on_cycles)
            assert len(set(trail)) == len(trail) - 1  # a simple cycle
            assert all(needs.has_edge(a, b) for a, b in pairwise(trail))
            messages.add(str(error))
        else:
            assert not on_cycles
            messages.add("acyclic")
    assert len(messages) == 1


# --- size --------------------------------------------------------------------------------------

N = 1000
BIG = [f"svc{i:04d}" for i in range(N)]


def test_thousand_service_chain() -> None:
    edges = [E(BIG[i], BIG[i - 1], "volumes_from") for i in range(1, N)]
    graph = ServiceGraph.from_edges(reversed(BIG), edges)
    generations = graph.generations()
    assert generations == [(name,) for name in BIG]
    assert graph.order() == tuple(BIG)
    assert graph.with_dependencies([BIG[-1]]) == tuple(BIG)
    assert graph.cascade(BIG[0]) == tuple(BIG[1:])  # deep, and no recursion limit
    assert graph.stop_generations()[0] == (BIG[-1],)


def test_thousand_service_fan_out_and_cycle() -> None:
    edges = [E(name, BIG[0], restart=True) for name in BIG[1:]]
    graph = ServiceGraph.from_edges(BIG, edges)
    generations = graph.generations()
    assert generations == [(BIG[0],), tuple(BIG[1:])]
    assert graph.restarts_with(BIG[0]) == tuple(BIG[1:])
    assert graph.cascade(BIG[0]) == ()
    assert graph.with_dependencies(BIG[1:], no_deps=True) == tuple(BIG[1:])
    # Closing a 1,000-long ring is found and named in full, without recursion.
    ring = [E(BIG[i], BIG[(i + 1) % N]) for i in range(N)]
    with pytest.raises(CycleError) as caught:
        ServiceGraph.from_edges(BIG, ring)
    assert caught.value.trail == [*BIG, BIG[0]]


def test_thousand_services_from_a_project(tmp_path: Path) -> None:
    lines = ["services:", f"  {BIG[0]}: {{image: alpine}}"]
    lines += [f"  {name}: {{image: alpine, depends_on: [{BIG[0]}]}}" for name in BIG[1:]]
    graph = load(tmp_path, "\n".join(lines) + "\n")
    assert graph.generations() == [(BIG[0],), tuple(BIG[1:])]
    assert graph.dependents(BIG[0]) == tuple(BIG[1:])


def test_importing_the_module_does_not_import_networkx() -> None:
    code = "import sys, composer.graph; print('networkx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
