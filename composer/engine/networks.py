"""The networks of one engine: bridges, each container's namespace and veths, the NAT table and
the DNS records, kept in step with the store.

A network is a row (what was asked and chosen) and a bridge. A container on bridge networks
gets, at each start, a network namespace of its own (a file under the run root), one veth per
network with its peer made directly in that namespace, the address it leased once (kept across
restarts, given back at removal), and its published ports; at each exit that is undone. The NAT
table and the resolver's records are not patched: they are rebuilt whole from the store after
every change (level-triggered), so a crash between steps is repaired by the next change, and
:meth:`NetworkManager.sweep` repairs what a crash left at engine start.

Every kernel object carries the state root's tag: bridges and veths in their names and aliases
(``composer:<tag>:network:<id>``, ``composer:<tag>:endpoint:<container>:<network>``), the NAT
table in its name. Teardown finds them by that tag, whatever the configuration says today.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer import faults
from composer.engine import subnet_claims
from composer.engine.publishing import host_has_ipv6, publish
from composer.errors import ComposerError
from composer.runtime import ipam
from composer.runtime.spec import NAME_RULE, Attachment, ContainerSpec
from composer.state import containers as rows
from composer.state import leases
from composer.state import networks as nets
from composer.state.containers import ContainerRow
from composer.state.layout import Layout
from composer.state.networks import NetworkRow
from composer.state.store import Store

log = logging.getLogger(__name__)

DEFAULT_NETWORK = "bridge"
#: Docker's predefined networks: "bridge" is made on first use, the other two are modes.
PREDEFINED = ("bridge", "host", "none")
MTU_OPTION = "com.docker.network.driver.mtu"
#: Host-wide: two state roots choosing a subnet at once would both see the same one free.
HOST_LOCK = Path("/run/lock/composer-networks.lock")
RUNNING = ("running", "paused", "restarting")
#: Seconds the NAT and DNS rebuild of a container starting or exiting waits for others to
#: join it.
WIRE_GATHER = 0.015


class NetworkError(ComposerError):
    """A network cannot be made, found, joined or removed as asked."""


class NoSuchNetwork(NetworkError):
    pass


class NetworkInUse(NetworkError):
    pass


def root_tag(root: Path) -> str:
    """The state root's tag: what marks every kernel object this root's engine makes."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Endpoint:
    """One attachment of a started container: the network, the address, the interface."""

    network: NetworkRow
    address: ipaddress.IPv4Address
    interface: str
    aliases: tuple[str, ...]
    mac: str

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.network.subnet).prefixlen


@dataclass(frozen=True)
class Joined:
    """What :meth:`NetworkManager.attach` made: the namespace for the bundle, the endpoints
    for /etc/hosts and resolv.conf."""

    netns: Path
    endpoints: tuple[Endpoint, ...]

    @property
    def gateway(self) -> str | None:
        """The resolver's address (and the default route): the first network's gateway."""
        return self.endpoints[0].network.gateway if self.endpoints else None


def mac_for(address: Any, asked: str | None) -> str:
    """The MAC an endpoint gets: the one asked for, else Docker's ``02:42`` + the IPv4
    address. Derived from the address, a container recreated on the same address keeps its
    MAC, so its peers' ARP caches stay right (a random one left them ~45 s stale)."""
    if asked:
        return asked
    packed = ipaddress.IPv4Address(str(address)).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in packed)


class NetworkManager:
    """All network operations of one engine (one state root)."""

    def __init__(self, layout: Layout, db: Store, *, upstream: list[str] | None = None) -> None:
        from composer.dns.process import Resolver
        from composer.portproxy.process import PortProxy

        self.layout = layout
        self.db = db
        self.tag = root_tag(layout.root)
        self.alias_prefix = f"composer:{self.tag}:"
        self.table = f"composer_{self.tag[:12]}"
        self.resolver = Resolver(layout.run / "dns", upstream=upstream)
        self.proxy = PortProxy(layout.run / "portproxy")
        self._lock = threading.RLock()
        # Rebuilds of the NAT table and the records, shared: a caller whose change is in the
        # store waits for one rebuild that began after it (see _synced).
        self._sync_state = threading.Condition()
        self._sync_asked = 0  # tickets handed out
        self._sync_done = 0  # every ticket up to this one has had its rebuild
        self._syncing = False
        # One rebuild at a time, without holding _lock: leases and port claims of containers
        # starting meanwhile need not wait for the resolver's reload (lock order: _lock,
        # then this one).
        self._rebuild_lock = threading.Lock()
        # container id -> (its spec's JSON text, the spec decoded): a rebuild decodes only
        # the specs that changed since the last one.
        self._decoded: dict[str, tuple[str, ContainerSpec]] = {}
        # What the NAT table was last made from, by this engine: a container without
        # published ports starting or stopping changes nothing there, and rebuilding the table
        # costs two nft transactions of ~20 ms. None (unknown) at start, so the first
        # change (the start's sweep) always writes it.
        self._nat_applied: tuple[Any, ...] | None = None

    # -- names ----------------------------------------------------------------------------------

    def bridge_name(self, network_id: str) -> str:
        return f"cmb{self.tag[:4]}{network_id[:8]}"

    def veth_name(self, container_id: str, network_id: str) -> str:
        pair = hashlib.sha256(f"{container_id}/{network_id}".encode()).hexdigest()
        return f"cmv{self.tag[:4]}{pair[:8]}"

    def netns_path(self, container_id: str) -> Path:
        return self.layout.run / "netns" / container_id

    def _endpoint_alias(self, container_id: str, network_id: str) -> str:
        return f"{self.alias_prefix}endpoint:{container_id}:{network_id}"

    # -- networks -------------------------------------------------------------------------------

    def find(self, ref: str) -> NetworkRow:
        row = nets.find(self.db, ref)
        if row is None:
            raise NoSuchNetwork(f"network {ref} not found")
        return row

    def all(self) -> list[NetworkRow]:
        return nets.all_rows(self.db)

    def create(self, name: str, *, driver: str = "bridge", internal: bool = False,
               labels: Mapping[str, str] | None = None,
               options: Mapping[str, str] | None = None,
               ipam_config: Sequence[Mapping[str, Any]] = (),
               _predefined: bool = False) -> NetworkRow:
        if not NAME_RULE.fullmatch(name):
            raise NetworkError(f'invalid network name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] '
                               "are allowed")
        if name in PREDEFINED and not _predefined:
            raise NetworkError(f"network name {name} is predefined: choose another name")
        if driver not in ("bridge", ""):
            raise NetworkError(f"network {name}: driver {driver!r} is not supported; only "
                               "bridge networks exist on one host (remove `driver:`)")
        v4 = [c for c in ipam_config if ":" not in str(c.get("subnet") or "")]
        if len(v4) > 1:
            raise NetworkError(f"network {name}: more than one IPv4 ipam config; give one "
                               "subnet per network")
        if len(v4) < len(ipam_config):
            log.warning("network %s: IPv6 subnets are not supported yet; only IPv4 is set up",
                        name)
        mtu = _mtu(name, options or {})
        with self._lock, _host_lock():
            from composer.runtime import netlink

            taken = [ipaddress.IPv4Network(n.subnet) for n in nets.all_rows(self.db)]
            taken += subnet_claims.claimed_by_others(self.tag)
            plan = ipam.plan(v4[0] if v4 else None, taken=taken,
                             host_routes=netlink.host_routes(), pools=_pools())
            network_id = secrets.token_hex(32)
            row = NetworkRow(id=network_id, name=name, driver="bridge",
                             bridge=self.bridge_name(network_id), subnet=str(plan.subnet),
                             gateway=str(plan.gateway), ip_range=str(plan.ip_range),
                             reserved=tuple(sorted(str(a) for a in plan.reserved)),
                             internal=internal, labels=dict(labels or {}),
                             options=dict(options or {}), created=time.time())
            subnet_claims.claim(self.tag, self.layout.root, network_id, row.subnet)
            try:
                nets.insert(self.db, row)
            except BaseException:
                subnet_claims.release(self.tag, network_id)  # a name taken, say
                raise
            faults.point("network-after-row")
            try:
                self._ensure_bridge(row, mtu)
            except BaseException:
                nets.delete(self.db, row.id)
                with contextlib.suppress(ComposerError):
                    netlink.remove_link(row.bridge)
                subnet_claims.release(self.tag, network_id)
                raise
        self._sync_soon()
        return row

    def _sync_soon(self) -> None:
        """A rebuild begun in the background, for a network just made: its NAT rules and
        the resolver (started with the first network: ~60 ms) are needed only once a
        container joins it, and a joining container waits for a rebuild that began after
        the network was made (:meth:`_synced`) while the runtime creates it. A failure is
        logged here and met again by that container's own rebuild."""

        def run() -> None:
            try:
                self._synced()
            except ComposerError as exc:
                log.warning("NAT and DNS after a new network: %s (the next change tries "
                            "again)", exc)

        threading.Thread(target=run, name="composer-network-sync", daemon=True).start()

    def _ensure_bridge(self, row: NetworkRow, mtu: int | None = None) -> None:
        from composer.runtime import netlink

        prefix = ipaddress.IPv4Network(row.subnet).prefixlen
        netlink.ensure_bridge(row.bridge, alias=f"{self.alias_prefix}network:{row.id}",
                              gateway=ipaddress.IPv4Interface(f"{row.gateway}/{prefix}"),
                              mtu=mtu if mtu is not None else _mtu(row.name, row.options),
                              mac=mac_for(row.gateway, None) if row.gateway else None)
        faults.point("network-after-bridge")
        # 127.0.0.1 reaches published ports through DNAT out of the bridge; the kernel drops
        # loopback-sourced packets on other interfaces unless this is set.
        netlink.set_ipv4_conf(row.bridge, "route_localnet", "1")
        if not row.internal:
            netlink.enable_forwarding()

    def default(self) -> NetworkRow:
        """The network "bridge", made on first use."""
        with self._lock:
            found = nets.find(self.db, DEFAULT_NETWORK)
            return found if found is not None else self.create(DEFAULT_NETWORK,
                                                               _predefined=True)

    def users(self, network: NetworkRow, *, running_only: bool = False) -> list[ContainerRow]:
        """The containers whose spec joins the network."""
        found = []
        for row in rows.all_rows(self.db):
            if running_only and row.status not in RUNNING:
                continue
            spec = ContainerSpec.from_json(row.spec)
            if any(self._refers(a.network, network) for a in attachments(spec)):
                found.append(row)
        return found

    @staticmethod
    def _refers(ref: str, network: NetworkRow) -> bool:
        return ref in (network.name, network.id) or (len(ref) >= 12
                                                     and network.id.startswith(ref))

    def remove(self, ref: str) -> NetworkRow:
        if ref in ("host", "none"):
            raise NetworkError(f"{ref} is a pre-defined network and cannot be removed")
        with self._lock:
            row = self.find(ref)
            active = self.users(row, running_only=True)
            if active:
                raise NetworkInUse(
                    f"error while removing network: network {row.name} id {row.id} has active "
                    f"endpoints ({', '.join(r.name for r in active)}): stop or disconnect "
                    "them first")
            self._remove(row)
            return row

    def _remove(self, row: NetworkRow) -> None:
        from composer.runtime import netlink

        # The bridge before the row: a crash between leaves a row whose bridge the next
        # sweep remakes, never a bridge nobody knows.
        netlink.remove_link(row.bridge)
        nets.delete(self.db, row.id)
        self._sync()
        subnet_claims.release(self.tag, row.id)  # last: the subnet is free only now

    def prune(self) -> list[str]:
        """Remove every network no container (of any state) joins."""
        removed = []
        with self._lock:
            for row in self.all():
                if not self.users(row):
                    self._remove(row)
                    removed.append(row.name)
        return removed

    def collect_default(self) -> None:
        """The default network goes with its last container (made again on first use), so
        that an engine's host objects all go when its containers do."""
        with self._lock:
            found = nets.find(self.db, DEFAULT_NETWORK)
            if found is not None and not self.users(found):
                self._remove(found)

    # -- containers -----------------------------------------------------------------------------

    def resolve(self, spec: ContainerSpec) -> list[tuple[Attachment, NetworkRow]]:
        """The networks a spec joins, checked (a create fails on a missing one, as Docker)."""
        joined = []
        for attachment in attachments(spec):
            if attachment.network == DEFAULT_NETWORK:
                joined.append((attachment, self.default()))
            else:
                joined.append((attachment, self.find(attachment.network)))
        names = [n.id for _, n in joined]
        if len(set(names)) != len(names):
            raise NetworkError("a container cannot join the same network twice")
        return joined

    def attach(self, row: ContainerRow, spec: ContainerSpec) -> Joined:
        """Lease, namespace, veths, published ports, NAT and DNS for a starting container:
        :meth:`join` then :meth:`wire`. Undone (but for the leases, kept until removal) when a
        step fails."""
        joined = self.join(row, spec)
        try:
            self.wire(row, spec, joined)
        except BaseException:
            with contextlib.suppress(ComposerError, OSError):
                self.detach(row.id)
            raise
        return joined

    def join(self, row: ContainerRow, spec: ContainerSpec) -> Joined:
        """The first half of :meth:`attach`: the addresses leased and the namespace made,
        which is all that the container's bundle and /etc files need, so that the runtime
        can create the container while :meth:`wire` does the rest. Undone on failure."""
        from composer.runtime import netlink

        with self._lock:  # addresses are handed out one container at a time
            joined = self.resolve(spec)
            endpoints = []
            for index, (attachment, network) in enumerate(joined):
                address = leases.lease(self.db, network.id, row.id, _plan(network),
                                       static=attachment.ipv4_address)
                endpoints.append(Endpoint(network, address, f"eth{index}", attachment.aliases,
                                          mac_for(address, attachment.mac_address)))
        faults.point("network-after-lease")
        netns = self.netns_path(row.id)
        try:
            netlink.create_netns(netns)
        except BaseException:
            with contextlib.suppress(ComposerError, OSError):
                self.detach(row.id)
            raise
        faults.point("network-after-netns")
        return Joined(netns, tuple(endpoints))

    def wire(self, row: ContainerRow, spec: ContainerSpec, joined: Joined) -> None:
        """The second half of :meth:`attach`, for what :meth:`join` returned: the veths into
        the namespace, the published ports, then the NAT table and the records. The
        namespace and the veths are this container's alone: made without the lock, so that
        containers starting together do not queue here. Not undone on failure: the caller
        detaches once nothing else uses the namespace (a runtime creating the container in
        it, say)."""
        from composer.runtime import netlink

        routed = next((i for i, e in enumerate(joined.endpoints)
                       if not e.network.internal), None)
        for index, endpoint in enumerate(joined.endpoints):
            netlink.ensure_veth(
                host_name=self.veth_name(row.id, endpoint.network.id),
                bridge=endpoint.network.bridge, netns=joined.netns,
                inner_name=endpoint.interface,
                address=ipaddress.IPv4Interface(f"{endpoint.address}/"
                                                f"{endpoint.prefixlen}"),
                gateway=(ipaddress.IPv4Address(endpoint.network.gateway)
                         if index == routed else None),
                alias=self._endpoint_alias(row.id, endpoint.network.id),
                mac=endpoint.mac)
        faults.point("network-after-veth")
        with self._lock:  # host ports are checked free and taken one at a time
            published = publish(self.db, row, spec, routed is not None)
            rows.update(self.db, row.id, ports=published)
        # Called while the runtime creates the container (containers.py), which takes longer:
        # a rebuild that waits a little for the starts beside this one costs no time, and
        # shares one rebuild and one resolver reload among them.
        self._synced(gather=WIRE_GATHER)
        faults.point("network-after-nat")

    def detach(self, container_id: str) -> None:
        """Undo :meth:`attach` for a container whose run ended: its veths, its namespace, its
        published ports, its conntrack entries."""
        from composer.runtime import netlink, ports

        # By their names (attach and connect give each the name veth_name makes) on the
        # networks it has an address on (leases stay until removal), not by listing every
        # link of the host: that grows with the number of containers.
        for network_id in leases.networks_of(self.db, container_id):
            netlink.remove_link(self.veth_name(container_id, network_id))
        netlink.remove_netns(self.netns_path(container_id))
        with self._lock:
            row = rows.get(self.db, container_id)
            if row is not None and row.ports is not None:
                rows.update(self.db, container_id, ports=None)
        # Exits come together (a `down`, a stop of several): one rebuild for those that
        # come within the gathering pause, instead of one each.
        self._synced(gather=WIRE_GATHER)
        if row is not None and row.ports:
            # A published port's flows (UDP above all: a client that keeps sending keeps
            # its entry alive) must not stay DNATed to this container's address, or a
            # replacement would never see them. Docker flushes for the same reason.
            for address in self.addresses(container_id).values():
                with contextlib.suppress(ComposerError, OSError):
                    ports.flush_conntrack(address)

    def connect_running(self, row: ContainerRow, attachment: Attachment) -> None:
        """Join a running container to one more network, at once, as Docker does: a lease, a
        veth into its namespace (the next free ``ethN``, no default route: the first network
        keeps it), then the NAT table and the records. The row's spec must already name the
        network (:meth:`_sync` reads it); on failure the lease and veth are undone."""
        from composer.runtime import netlink

        with self._lock:
            network = self.find(attachment.network)
            address = leases.lease(self.db, network.id, row.id, _plan(network),
                                   static=attachment.ipv4_address)
            netns = self.netns_path(row.id)
            taken = set(netlink.addresses_in(netns))
            inner = next(f"eth{i}" for i in range(len(taken) + 1) if f"eth{i}" not in taken)
            host_name = self.veth_name(row.id, network.id)
            try:
                netlink.ensure_veth(
                    host_name=host_name, bridge=network.bridge, netns=netns, inner_name=inner,
                    address=ipaddress.IPv4Interface(
                        f"{address}/{ipaddress.IPv4Network(network.subnet).prefixlen}"),
                    gateway=None, alias=self._endpoint_alias(row.id, network.id),
                    mac=mac_for(address, attachment.mac_address))
                self._sync()
            except BaseException:
                with contextlib.suppress(ComposerError, OSError):
                    netlink.remove_link(host_name)
                leases.release(self.db, network.id, row.id)
                raise

    def disconnect_running(self, row: ContainerRow, network: NetworkRow) -> None:
        """Take a running container off one network at once: its veth there and its lease
        go, then the NAT table and the records follow. The row's spec must already leave the
        network out."""
        from composer.runtime import netlink

        with self._lock:
            netlink.remove_link(self.veth_name(row.id, network.id))
            leases.release(self.db, network.id, row.id)
            self._sync()

    def release(self, container_id: str) -> None:
        """A container is being removed: its leases go, and the default network with its
        last user."""
        with self._lock:
            leases.release_all(self.db, container_id)
            self.collect_default()

    def addresses(self, container_id: str) -> dict[str, str]:
        """network name -> the container's address there (its leases)."""
        found = {}
        for network in self.all():
            address = leases.leases_of(self.db, network.id).get(container_id)
            if address is not None:
                found[network.name] = address
        return found

    # -- state of the host ----------------------------------------------------------------------

    def sweep(self) -> None:
        """At engine start: bridges of every network back in place, endpoints and namespaces
        of containers that no longer run gone, the NAT table and the records rebuilt."""
        from composer.runtime import netlink

        with self._lock:
            with _host_lock():
                subnet_claims.keep_only(self.tag, self.layout.root,
                                        [(n.id, n.subnet) for n in self.all()])
            if not self.all() and not (self.layout.run / "netns").is_dir():
                return  # nothing to repair: keep the engine's start free of netlink
            for network in self.all():
                self._ensure_bridge(network)
            attached = {r.id for r in rows.all_rows(self.db)
                        if r.status in RUNNING and r.ports is not None}
            for name, alias in netlink.links_by_alias(f"{self.alias_prefix}endpoint:"):
                if alias.split(":")[3] not in attached:
                    netlink.remove_link(name)
            known = {n.bridge for n in self.all()}
            for name, _ in netlink.links_by_alias(f"{self.alias_prefix}network:"):
                if name not in known:
                    netlink.remove_link(name)
            netns_dir = self.layout.run / "netns"
            if netns_dir.is_dir():
                for path in netns_dir.iterdir():
                    if path.name not in attached:
                        netlink.remove_netns(path)
            for row in rows.all_rows(self.db):
                if row.ports is not None and row.id not in attached:
                    rows.update(self.db, row.id, ports=None)
            self._sync()

    def refresh(self) -> None:
        """Rewrite the NAT table, DNS records and proxy entries (after a rename, say)."""
        with self._lock:
            self._sync()

    def _synced(self, *, gather: float = 0.0) -> None:
        """The NAT table and the records made from the store as it is now: by a rebuild of
        this caller's, or by one that another caller began after this one's change. Starts
        and stops that come together share rebuilds instead of making one each (a rebuild
        reads every running container: one each would grow with the square of them).

        ``gather``: seconds a rebuild of this caller's waits first for the changes of others
        to join it, for a caller whose wait is hidden behind other work anyway."""
        with self._sync_state:
            self._sync_asked += 1
            ticket = self._sync_asked
            while self._sync_done < ticket:
                if self._syncing:
                    self._sync_state.wait()
                    continue
                self._syncing = True
                if gather:
                    self._sync_state.wait(gather)  # a pause that lets the others hand in
                covers = self._sync_asked  # every change handed in so far is in the store
                self._sync_state.release()
                try:
                    self._sync()
                finally:
                    self._sync_state.acquire()
                    self._syncing = False
                    self._sync_state.notify_all()
                self._sync_done = max(self._sync_done, covers)
            # A failed rebuild raises to its own caller; the waiting ones try again above.

    def _sync(self) -> None:
        """Rebuild the NAT table, the resolver's records and the IPv6 port proxy's entries
        from the store."""
        with self._rebuild_lock:
            self._rebuild()

    def _specs(self, running: Sequence[rows.Attached]) -> dict[str, ContainerSpec]:
        decoded = {}
        for row in running:
            known = self._decoded.get(row.id)
            if known is None or known[0] != row.spec_text:
                known = (row.spec_text, ContainerSpec.from_json(json.loads(row.spec_text)))
            decoded[row.id] = known
        self._decoded = decoded  # the containers that left are forgotten
        return {cid: spec for cid, (_, spec) in decoded.items()}

    def _rebuild(self) -> None:
        from composer.dns.records import ClientRecords, NetworkRecords
        from composer.portproxy.process import ProxyEntry
        from composer.runtime import nat

        networks = self.all()
        by_id = {n.id: n for n in networks}
        # `ports` is set (maybe to []) from attach to detach: the mark of being attached.
        running = rows.attached(self.db)
        specs = self._specs(running)
        bridges = [nat.BridgeNet(n.bridge, ipaddress.IPv4Network(n.subnet), n.internal)
                   for n in networks]
        publications = []
        proxied: list[ProxyEntry] = []
        dual = host_has_ipv6()
        names: dict[str, dict[str, list[str]]] = {n.id: {} for n in networks}
        clients: dict[str, ClientRecords] = {}
        addresses = {n.id: leases.leases_of(self.db, n.id) for n in networks}
        for row in running:
            spec = specs[row.id]
            joined = [(a, self._match(a, networks)) for a in attachments(spec)]
            mine = [(a, n, addresses[n.id][row.id]) for a, n in joined
                    if n is not None and row.id in addresses[n.id]]
            for attachment, network, address in mine:
                labels = spec.labels
                record_names = {row.name, row.id[:12], *attachment.aliases}
                service = labels.get("com.docker.compose.service")
                if service:
                    record_names.add(service)
                for record in record_names:
                    names[network.id].setdefault(record.lower(), []).append(address)
            routed = next(((n, a) for _, n, a in mine if not n.internal), None)
            for published in row.ports or ():
                if routed is None:
                    continue
                host_ip = published["host_ip"]
                if ":" not in host_ip:
                    publications.append(nat.Publication(
                        published["protocol"], host_ip, published["host_port"],
                        routed[1], published["container_port"], routed[0].bridge))
                if ":" in host_ip or (not host_ip and dual):
                    # IPv6 to an IPv4-only container: no kernel NAT can do it (nor take ::1
                    # out of lo), so a proxy process of ours does, as docker-proxy does.
                    proxied.append(ProxyEntry(
                        published["protocol"], host_ip or "::", published["host_port"],
                        routed[1], published["container_port"]))
            links = self._link_names(spec, [n.id for _, n, _ in mine], addresses, by_id)
            for _, _, address in mine:
                clients[address] = ClientRecords(networks=[n.id for _, n, _ in mine],
                                                 dns=list(spec.dns), names=links)
        wanted = (tuple(bridges), tuple(publications))
        if wanted != self._nat_applied:
            self._nat_applied = None  # unknown while it is being written
            nat.apply(self.table, bridges, publications)
            self._nat_applied = wanted
        records = {n.id: NetworkRecords(gateway=n.gateway, names=names[n.id])
                   for n in networks}
        self.resolver.update(records, clients)
        # Kept while networks exist: containers with published ports come and go.
        for key, error in self.proxy.update(proxied, keep=bool(networks)).items():
            # Checked free before publishing: only a race with another program gets here.
            log.warning("IPv6 side of published port %s not listening: %s", key, error)

    def _match(self, attachment: Attachment, networks: Sequence[NetworkRow]) -> NetworkRow | None:
        return next((n for n in networks if self._refers(attachment.network, n)), None)

    def _link_names(self, spec: ContainerSpec, network_ids: Sequence[str],
                    addresses: Mapping[str, Mapping[str, str]],
                    by_id: Mapping[str, NetworkRow]) -> dict[str, list[str]]:
        """``links`` as names only this container resolves: NAME[:ALIAS] -> the linked
        container's address on a network both share."""
        found: dict[str, list[str]] = {}
        for link in spec.links:
            name, _, alias = link.partition(":")
            other = rows.find(self.db, name)
            if other is None:
                continue
            address = next((addresses[n][other.id] for n in network_ids
                            if other.id in addresses.get(n, {})), None)
            if address is not None:
                for record in {name, alias or name}:
                    found[record.lower()] = [address]
        return found

    def link_hosts(self, spec: ContainerSpec, joined: Joined) -> list[tuple[str, str]]:
        """(address, names) lines of /etc/hosts for ``links`` (Docker writes them too)."""
        ids = [e.network.id for e in joined.endpoints]
        addresses = {n: leases.leases_of(self.db, n) for n in ids}
        lines = []
        for link in spec.links:
            name, _, alias = link.partition(":")
            other = rows.find(self.db, name)
            if other is None:
                raise NetworkError(f"links: no container {name} to link to")
            address = next((addresses[n][other.id] for n in ids if other.id in addresses[n]),
                           None)
            if address is None:
                raise NetworkError(f"links: {name} is on none of this container's networks")
            lines.append((address, " ".join(dict.fromkeys((alias or name, name)))))
        return lines

    def teardown(self) -> None:
        """Every host object of this state root, by its tag, whatever the store says: the
        endpoints, namespaces, bridges, the NAT table and the resolver."""
        from composer.runtime import nat, netlink

        with self._lock:
            for name, _ in netlink.links_by_alias(self.alias_prefix):
                netlink.remove_link(name)
            netns_dir = self.layout.run / "netns"
            if netns_dir.is_dir():
                for path in netns_dir.iterdir():
                    netlink.remove_netns(path)
            nat.remove(self.table)
            self._nat_applied = None
            self.resolver.stop()
            self.proxy.stop()
            subnet_claims.keep_only(self.tag, self.layout.root, [])


def attachments(spec: ContainerSpec) -> tuple[Attachment, ...]:
    """The networks a spec joins: none unless its mode is bridge; the default network when
    it names none."""
    if spec.network != "bridge":
        return ()
    return spec.networks or (Attachment(DEFAULT_NETWORK),)


def _plan(network: NetworkRow) -> ipam.Plan:
    return ipam.Plan(subnet=ipaddress.IPv4Network(network.subnet),
                     gateway=ipaddress.IPv4Address(network.gateway),
                     ip_range=ipaddress.IPv4Network(network.ip_range),
                     reserved=frozenset(ipaddress.IPv4Address(a) for a in network.reserved))


def _mtu(name: str, options: Mapping[str, str]) -> int | None:
    value = options.get(MTU_OPTION)
    if value is None:
        return None
    try:
        mtu = int(value)
    except ValueError:
        mtu = 0
    if not 68 <= mtu <= 65535:
        raise NetworkError(f"network {name}: {MTU_OPTION}={value!r} is not an MTU "
                           "(68..65535)")
    return mtu


#: Docker's ``default-address-pools``, as ``base=10.10.0.0/16,size=24;base=...``.
POOLS_VARIABLE = "COMPOSER_ADDRESS_POOLS"


def _pools() -> tuple[ipam.Pool, ...]:
    text = os.environ.get(POOLS_VARIABLE, "").strip()
    if not text:
        return ipam.DEFAULT_POOLS
    try:
        return ipam.parse_pools(text)
    except ipam.IpamError as e:
        raise NetworkError(f"{POOLS_VARIABLE}: {e}") from e


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    HOST_LOCK.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(HOST_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
