"""The ``/v1/networks`` routes: Docker's network verbs over the engine's NetworkManager."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from composer.engine.containers import ContainerManager, NoSuchContainer
from composer.engine.networks import DEFAULT_NETWORK, NetworkInUse, NoSuchNetwork
from composer.engine.server import ApiError, Request, Router
from composer.runtime.spec import Attachment, ContainerSpec
from composer.state import containers as rows
from composer.state.containers import ContainerRow
from composer.state.networks import NetworkExists, NetworkRow


def view(m: ContainerManager, row: NetworkRow) -> dict[str, Any]:
    """Docker's ``network inspect`` shape."""
    containers = {}
    addresses = {}
    from composer.state import leases

    addresses = leases.leases_of(m.db, row.id)
    for user in m.networks.users(row):
        if user.ports is None or user.id not in addresses:
            continue  # Docker lists only the containers attached now
        containers[user.id] = {"Name": user.name,
                               "EndpointID": m.networks.veth_name(user.id, row.id),
                               "IPv4Address": f"{addresses[user.id]}/"
                                              f"{row.subnet.split('/')[1]}",
                               "IPv6Address": ""}
    config: dict[str, Any] = {"Subnet": row.subnet, "Gateway": row.gateway}
    if row.ip_range != row.subnet:
        config["IPRange"] = row.ip_range
    return {"Name": row.name, "Id": row.id,
            "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.created)),
            "Scope": "local", "Driver": row.driver, "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {}, "Config": [config]},
            "Internal": row.internal, "Attachable": True, "Ingress": False,
            "Containers": containers,
            "Options": {"com.docker.network.bridge.name": row.bridge, **row.options},
            "Labels": dict(row.labels)}


class NetworkRoutes:
    def __init__(self, manager: ContainerManager) -> None:
        self.m = manager

    def add_to(self, router: Router) -> None:
        r = router.add
        r("GET", "/v1/networks", self.listing)
        r("POST", "/v1/networks", self.create)
        r("POST", "/v1/networks/prune", self.prune)
        r("GET", "/v1/networks/{name}", self.inspect)
        r("DELETE", "/v1/networks/{name}", self.remove)
        r("POST", "/v1/networks/{name}/connect", self.connect)
        r("POST", "/v1/networks/{name}/disconnect", self.disconnect)

    @staticmethod
    def _answer(action: Callable[[], Any]) -> Any:
        try:
            return action()
        except (NoSuchNetwork, NoSuchContainer) as e:
            raise ApiError(404, str(e)) from e
        except (NetworkExists, NetworkInUse) as e:
            raise ApiError(409, str(e)) from e

    def listing(self, request: Request) -> Any:
        return [view(self.m, n) for n in self.m.networks.all()]

    def create(self, request: Request) -> Any:
        body = request.body or {}
        ipam = body.get("ipam") or []
        if not isinstance(ipam, list) or not all(isinstance(c, dict) for c in ipam):
            raise ApiError(400, "ipam must be a list of mappings (subnet, ip_range, gateway, "
                                "aux_addresses)")
        row = self._answer(lambda: self.m.networks.create(
            str(body.get("name") or ""), driver=str(body.get("driver") or "bridge"),
            internal=bool(body.get("internal")), labels=body.get("labels") or {},
            options=body.get("options") or {}, ipam_config=ipam))
        return view(self.m, row)

    def inspect(self, request: Request) -> Any:
        name = request.path_args["name"]
        if name == DEFAULT_NETWORK:
            return view(self.m, self.m.networks.default())
        return self._answer(lambda: view(self.m, self.m.networks.find(name)))

    def remove(self, request: Request) -> Any:
        name = request.path_args["name"]
        return self._answer(lambda: {"Name": self.m.networks.remove(name).name})

    def prune(self, request: Request) -> Any:
        return {"NetworksDeleted": self.m.networks.prune()}

    def connect(self, request: Request) -> Any:
        """Join a network: recorded in the container's spec (so it stays joined across
        restarts, as Docker); a running container joins it at once."""
        body = request.body or {}
        network = self._answer(lambda: self.m.networks.find(request.path_args["name"]))

        def change(spec: ContainerSpec) -> ContainerSpec:
            if spec.network != "bridge":
                raise ApiError(409, f"container cannot be connected to network {network.name}:"
                                    f" its network mode is {spec.network}")
            joined = spec.networks or (Attachment(DEFAULT_NETWORK),)
            if any(a.network in (network.name, network.id) for a in joined):
                raise ApiError(409, f"endpoint with name {body.get('container')} already "
                                    f"exists in network {network.name}")
            aliases = tuple(str(a) for a in body.get("aliases") or ())
            ip = body.get("ipv4_address") or None
            return replace(spec, networks=(*joined, Attachment(network.name, aliases, ip)))

        def hot(row: ContainerRow, spec: ContainerSpec) -> None:
            self.m.networks.connect_running(row, spec.networks[-1])

        return self._change(str(body.get("container") or ""), change, hot)

    def disconnect(self, request: Request) -> Any:
        body = request.body or {}
        network = self._answer(lambda: self.m.networks.find(request.path_args["name"]))

        def change(spec: ContainerSpec) -> ContainerSpec:
            joined = spec.networks or ((Attachment(DEFAULT_NETWORK),)
                                       if spec.network == "bridge" else ())
            kept = tuple(a for a in joined if a.network not in (network.name, network.id))
            if len(kept) == len(joined):
                raise ApiError(409, f"container {body.get('container')} is not connected to "
                                    f"network {network.name}")
            return replace(spec, networks=kept, network="bridge" if kept else "none")

        def hot(row: ContainerRow, spec: ContainerSpec) -> None:
            self.m.networks.disconnect_running(row, network)

        return self._change(str(body.get("container") or ""), change, hot)

    def _change(self, ref: str, change: Callable[[ContainerSpec], ContainerSpec],
                hot: Callable[[ContainerRow, ContainerSpec], None]) -> Any:
        """Record the change in the container's spec; a container attached now (running)
        gets it at once through ``hot``, and keeps its old spec when that fails."""
        row = self._answer(lambda: self.m.find(ref))
        with self.m.lock(row.id):
            row = self.m.find(row.id)
            before = row.spec
            spec = change(self.m.spec(row))
            self.m.networks.resolve(spec)
            rows.update(self.m.db, row.id, spec=spec.to_json())
            if row.ports is not None:  # attached: its namespace and veths exist now
                try:
                    hot(row, spec)
                except BaseException:
                    rows.update(self.m.db, row.id, spec=before)
                    raise
        return {}
