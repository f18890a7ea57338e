"""The dependency graph of a loaded project: what starts before what, and what a change drags along.

The planner asks this module four kinds of questions: which services an ``up SERVICE...``
touches (``with_dependencies``), in which order to start or stop them (``generations``,
``stop_generations``, ``order``), which dependents must be recreated with a service
(``cascade``: they share its namespaces or volumes) and which are only restarted with it
(``restarts_with``: ``depends_on.restart: true``, links, namespaces).

Every edge comes from ``Service.depends_on``: the loader has already copied the implicit
dependencies there (``links``, ``network_mode``/``ipc``/``pid: service:X``, ``volumes_from``).
The spec still says which of those the edge came from, and that matters: only a shared
namespace or ``volumes_from`` forces a recreate, as in Docker Compose.

networkx is imported inside the functions that need it, never at module level: it costs
about 0.3 s, and ``composer --version`` or ``composer config`` must not pay for it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from composer.errors import CycleError

if TYPE_CHECKING:
    import networkx as nx

    from composer.manifest.model import Dependency, Project

STARTED = "service_started"
HEALTHY = "service_healthy"
COMPLETED = "service_completed_successfully"
CONDITIONS = frozenset({STARTED, HEALTHY, COMPLETED})

DEPENDS_ON = "depends_on"
LINK = "link"
NAMESPACE = "namespace"
VOLUMES_FROM = "volumes_from"
KINDS = frozenset({DEPENDS_ON, LINK, NAMESPACE, VOLUMES_FROM})
# Compose recreates a dependent when the container it shares a namespace or volumes with is
# replaced: the old reference would point at a container that no longer exists.
CASCADING_KINDS = frozenset({NAMESPACE, VOLUMES_FROM})

_NAMESPACE_KEYS = ("network_mode", "ipc", "pid")


@dataclass(frozen=True)
class Edge:
    """``service`` needs ``dependency``: how it waits for it, and where the need comes from."""

    service: str  # the dependent
    dependency: str  # what it needs
    condition: str = STARTED
    required: bool = True
    restart: bool = False
    kinds: frozenset[str] = frozenset({DEPENDS_ON})

    def __post_init__(self) -> None:
        # Edges also come from programmatic callers (from_edges): reject nonsense early,
        # where the mistake is, rather than as a wrong plan later.
        if self.condition not in CONDITIONS:
            expected = ", ".join(sorted(CONDITIONS))
            raise ValueError(f"edge {self.service} -> {self.dependency}: unknown condition "
                             f"{self.condition!r} (expected one of {expected})")
        if not isinstance(self.kinds, frozenset) or not self.kinds or not self.kinds <= KINDS:
            raise ValueError(f"edge {self.service} -> {self.dependency}: kinds must be a "
                             f"non-empty frozenset of {', '.join(sorted(KINDS))}, "
                             f"not {self.kinds!r}")


class ServiceGraph:
    """An acyclic graph of services; every answer is sorted, so plans are reproducible."""

    services: tuple[str, ...]
    edges: tuple[Edge, ...]  # every edge in the graph, by (service, dependency)
    dangling: tuple[Edge, ...]  # optional (required=False) edges to services not in the graph

    def __init__(self, services: Iterable[str], edges: Iterable[Edge]) -> None:
        """Prefer ``from_project`` or ``from_edges``; raises ``CycleError`` or ``ValueError``."""
        import networkx as nx

        names = set(services)
        needs: dict[str, list[Edge]] = {name: [] for name in names}
        needed_by: dict[str, list[Edge]] = {name: [] for name in names}
        seen: set[tuple[str, str]] = set()
        dangling: list[Edge] = []
        for edge in edges:
            key = (edge.service, edge.dependency)
            if edge.service not in names:
                raise ValueError(f"edge {edge.service} -> {edge.dependency}: "
                                 f"{edge.service!r} is not a service of the graph")
            if key in seen:
                raise ValueError(f"edge {edge.service} -> {edge.dependency} is given twice")
            seen.add(key)
            if edge.dependency not in names:
                if edge.required:
                    raise ValueError(f"service {edge.service!r} requires {edge.dependency!r}, "
                                     "which is not a service of the graph")
                # Compose ignores an optional dependency that is absent (disabled by a
                # profile, or never defined): keep it only so a caller can mention it.
                dangling.append(edge)
                continue
            needs[edge.service].append(edge)
            needed_by[edge.dependency].append(edge)

        self.services = tuple(sorted(names))
        self._needs = {n: tuple(sorted(e, key=lambda e: e.dependency)) for n, e in needs.items()}
        self._needed_by = {n: tuple(sorted(e, key=lambda e: e.service))
                           for n, e in needed_by.items()}
        self.edges = tuple(e for name in self.services for e in self._needs[name])
        self.dangling = tuple(sorted(dangling, key=lambda e: (e.service, e.dependency)))
        # Arrows point from a dependency to its dependents, i.e. in start order: that is the
        # direction networkx's topological functions (and the generations) read.
        graph = nx.DiGraph()
        graph.add_nodes_from(self.services)
        graph.add_edges_from((e.dependency, e.service, {"edge": e}) for e in self.edges)
        self._graph = graph
        self._cascades: dict[str, tuple[str, ...]] = {}
        self._order: tuple[str, ...] | None = None
        try:
            self._generations = _sorted_generations(graph)
        except nx.NetworkXUnfeasible:
            raise _cycle_error(graph, self._needs) from None

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_project(cls, project: Project) -> ServiceGraph:
        """The graph of a loaded project; raises ``CycleError`` naming the whole cycle."""
        edges: list[Edge] = []
        for name, service in project.services.items():
            implicit = _implicit_kinds(service.spec)
            edges += [Edge(service=name, dependency=dep, condition=need.condition,
                           required=need.required, restart=need.restart,
                           kinds=_kinds(need, implicit.get(dep, set())))
                      for dep, need in service.depends_on.items()]
        return cls(project.services, edges)

    @classmethod
    def from_edges(cls, services: Iterable[str], edges: Iterable[Edge]) -> ServiceGraph:
        """A graph from plain names and edges (tests, programmatic use); same checks."""
        return cls(services, edges)

    # --- neighbours ---------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._needs

    def __len__(self) -> int:
        return len(self.services)

    def __repr__(self) -> str:
        return f"ServiceGraph({len(self.services)} services, {len(self.edges)} edges)"

    def edges_of(self, service: str) -> tuple[Edge, ...]:
        """The edges to ``service``'s dependencies, sorted by dependency name."""
        self._check([service])
        return self._needs[service]

    def dependent_edges(self, service: str) -> tuple[Edge, ...]:
        """The edges from the services that need ``service``, sorted by dependent name."""
        self._check([service])
        return self._needed_by[service]

    def dependencies(self, service: str) -> tuple[str, ...]:
        """What ``service`` needs directly, sorted."""
        return tuple(e.dependency for e in self.edges_of(service))

    def dependents(self, service: str) -> tuple[str, ...]:
        """What needs ``service`` directly, sorted."""
        return tuple(e.service for e in self.dependent_edges(service))

    # --- selections and orders ----------------------------------------------------------------

    def with_dependencies(self, names: Iterable[str], *, no_deps: bool = False
                          ) -> tuple[str, ...]:
        """``names`` and everything they need, transitively (required or not), sorted.

        With ``no_deps`` just ``names``, as ``up --no-deps`` does. An optional dependency
        absent from the graph is skipped (it is not an edge of the graph at all).
        """
        wanted = set(names)
        self._check(wanted)
        if no_deps:
            return tuple(sorted(wanted))
        # One breadth-first walk from all the names at once: linear in the edges, where a
        # walk per name would be quadratic for "up" of a whole large project.
        queue = deque(wanted)
        while queue:
            for edge in self._needs[queue.popleft()]:
                if edge.dependency not in wanted:
                    wanted.add(edge.dependency)
                    queue.append(edge.dependency)
        return tuple(sorted(wanted))

    def generations(self, subset: Iterable[str] | None = None) -> list[tuple[str, ...]]:
        """Start order: each generation needs only services of earlier ones; each sorted.

        With ``subset``, only those services, and edges leaving the subset are ignored
        (``up --no-deps``: the dependencies are assumed to be there already).
        """
        if subset is None:
            return list(self._generations)
        members = set(subset)
        self._check(members)
        return _sorted_generations(self._graph.subgraph(members))

    def stop_generations(self, subset: Iterable[str] | None = None) -> list[tuple[str, ...]]:
        """Stop order: dependents before what they need (the generations, last first)."""
        return self.generations(subset)[::-1]

    def order(self) -> tuple[str, ...]:
        """One topological order: dependencies first, ties broken by name."""
        if self._order is None:
            import networkx as nx

            self._order = tuple(nx.lexicographical_topological_sort(self._graph))
        return self._order

    # --- what a change drags along ------------------------------------------------------------

    def cascade(self, service: str) -> tuple[str, ...]:
        """What must be recreated when ``service`` is: its dependents, transitively, through
        shared namespaces (``network_mode``/``ipc``/``pid: service:X``) and ``volumes_from``.

        A plain ``depends_on`` (even with ``restart: true``) or a link does not cascade a
        recreate; see ``restarts_with``. ``service`` itself is not included.
        """
        self._check([service])
        cached = self._cascades.get(service)
        if cached is None:
            found: set[str] = set()
            queue = deque([service])
            while queue:
                for edge in self._needed_by[queue.popleft()]:
                    if edge.kinds & CASCADING_KINDS and edge.service not in found:
                        found.add(edge.service)
                        queue.append(edge.service)
            found.discard(service)  # unreachable in an acyclic graph; kept for clarity
            cached = self._cascades[service] = tuple(sorted(found))
        return cached

    def restarts_with(self, service: str) -> tuple[str, ...]:
        """The direct dependents restarted when ``service`` is restarted or recreated."""
        return tuple(e.service for e in self.dependent_edges(service) if e.restart)

    def to_networkx(self) -> nx.DiGraph[str]:
        """A copy of the graph for networkx: arrows from a dependency to its dependents,
        each edge's ``Edge`` under the attribute ``"edge"``."""
        return self._graph.copy()

    # --- internals ----------------------------------------------------------------------------

    def _check(self, names: Iterable[str]) -> None:
        unknown = sorted(n for n in names if n not in self._needs)
        if unknown:
            known = ", ".join(self.services) or "none"
            raise ValueError(f"no such service: {', '.join(unknown)} (services: {known})")


def _sorted_generations(graph: Any) -> list[tuple[str, ...]]:
    import networkx as nx

    return [tuple(sorted(generation)) for generation in nx.topological_generations(graph)]


def _implicit_kinds(spec: Mapping[str, Any]) -> dict[str, set[str]]:
    """dependency name -> the implicit kinds that name it, read as normalization does."""
    found: dict[str, set[str]] = {}
    for link in spec.get("links") or ():
        if isinstance(link, str):
            found.setdefault(link.split(":", 1)[0], set()).add(LINK)
    for key in _NAMESPACE_KEYS:
        value = spec.get(key)
        if isinstance(value, str) and value.startswith("service:"):
            found.setdefault(value.removeprefix("service:"), set()).add(NAMESPACE)
    for source in spec.get("volumes_from") or ():
        if isinstance(source, str) and not source.startswith("container:"):
            found.setdefault(source.split(":", 1)[0], set()).add(VOLUMES_FROM)
    return found


def _kinds(need: Dependency, implicit: set[str]) -> frozenset[str]:
    """The kinds of one ``depends_on`` entry.

    Normalization writes an implicit entry only when the user did not write one, as
    ``condition: service_started, required: true`` and ``restart`` true for links and
    namespaces (they come first), false for ``volumes_from``. An entry that differs from that
    was written by the user, so it is a ``depends_on`` too; one that matches cannot be told
    apart and counts as implicit only.
    """
    if not implicit:
        return frozenset({DEPENDS_ON})
    default_restart = bool(implicit & {LINK, NAMESPACE})
    written = (need.condition != STARTED or not need.required
               or need.restart != default_restart)
    return frozenset(implicit | {DEPENDS_ON}) if written else frozenset(implicit)


def _cycle_error(graph: Any, needs: Mapping[str, tuple[Edge, ...]]) -> CycleError:
    """A deterministic cycle: from the smallest service on any cycle, following the smallest
    next service (that stays in its strongly connected component) until it comes back."""
    import networkx as nx

    cyclic = [c for c in nx.strongly_connected_components(graph)
              if len(c) > 1 or graph.has_edge(next(iter(c)), next(iter(c)))]
    component = min(cyclic, key=min)
    start = min(component)
    # An iterative depth-first walk in "needs" direction (the message reads "a -> b": a
    # needs b). ``start`` is the smallest member, so whenever it is a next step it is taken
    # first; the walk never revisits a node, so it is linear, and it must come back to
    # ``start`` because every member of the component reaches it.
    trail = [start]
    visited = {start}
    steps = [iter(e.dependency for e in needs[start] if e.dependency in component)]
    while steps:
        step = next(steps[-1], None)
        if step is None:
            steps.pop()
            trail.pop()
        elif step == start:
            trail.append(start)
            break
        elif step not in visited:
            visited.add(step)
            trail.append(step)
            steps.append(iter(e.dependency for e in needs[step] if e.dependency in component))
    return CycleError("dependency", trail, path=f"services.{trail[0]}.depends_on.{trail[1]}",
                      hint="remove one of these dependencies (a depends_on entry, or the "
                           "links, network_mode/ipc/pid or volumes_from that imply it)")
