"""/etc/hosts and /etc/resolv.conf of containers, as Docker writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.engine.etcfiles import Addressing, EtcError, etc_files, resolv_conf
from composer.runtime.spec import ContainerSpec

HOST_RESOLV = (
    "# host\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch corp.example\noptions ndots:2\n"
)
ID = "0123456789ab" + "0" * 52


def test_bridge_resolv_conf_names_our_resolver_and_keeps_the_hosts_search() -> None:
    spec = ContainerSpec(image="x", network="bridge")
    assert resolv_conf(HOST_RESOLV, spec, "172.18.0.1") == (
        "nameserver 172.18.0.1\nsearch corp.example\noptions ndots:2\n")


def test_dns_search_and_options_replace_the_hosts() -> None:
    spec = ContainerSpec(image="x", network="bridge", dns=("9.9.9.9",), dns_search=("a.b",),
                         dns_opt=("timeout:1", "attempts:2"))
    # Our resolver stays the nameserver: the dns servers are its upstream for this container.
    assert resolv_conf(HOST_RESOLV, spec, "172.18.0.1") == (
        "nameserver 172.18.0.1\nsearch a.b\noptions timeout:1 attempts:2\n")


def test_without_a_resolver_dns_servers_or_the_hosts_are_used() -> None:
    assert resolv_conf(HOST_RESOLV, ContainerSpec(image="x", dns=("1.1.1.1",)), None) \
        .startswith("nameserver 1.1.1.1\nsearch")
    assert resolv_conf(HOST_RESOLV, ContainerSpec(image="x"), None).startswith(
        "nameserver 10.0.0.2\nnameserver 10.0.0.3\n")


def test_hosts_has_the_address_links_and_extra_hosts(tmp_path: Path) -> None:
    spec = ContainerSpec(image="x", network="bridge", hostname="web", domainname="example.org",
                         extra_hosts=("host.docker.internal:host-gateway", "db=10.1.2.3",
                                      "v6:[::1]"))
    mounts = etc_files(tmp_path, ID, spec, Addressing(
        addresses=["172.18.0.5"], resolver="172.18.0.1", host_gateway="172.18.0.1",
        links=[("172.18.0.9", "cache redis")]))
    hosts = (tmp_path / "hosts").read_text()
    assert hosts.startswith("127.0.0.1\tlocalhost\n")
    assert hosts.endswith("172.18.0.5\tweb.example.org\tweb\n172.18.0.9\tcache redis\n"
                          "172.18.0.1\thost.docker.internal\n10.1.2.3\tdb\n::1\tv6\n")
    assert (tmp_path / "hostname").read_text() == "web\n"
    assert [m.target for m in mounts] == ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]


def test_a_malformed_extra_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EtcError, match="write NAME:IP"):
        etc_files(tmp_path, ID, ContainerSpec(image="x", extra_hosts=("nocolon",)))


def test_container_mode_shares_the_other_containers_files(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for name, text in (("hostname", "a\n"), ("hosts", "1.2.3.4\ta\n"),
                       ("resolv.conf", "nameserver 1.1.1.1\n")):
        (other / name).write_text(text)
    mine = tmp_path / "mine"
    mine.mkdir()
    etc_files(mine, ID, ContainerSpec(image="x", network="container:a"), shared_from=other)
    assert (mine / "hosts").read_text() == "1.2.3.4\ta\n"
