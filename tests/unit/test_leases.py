"""Leases on a real SQLite store: never the same address twice, even from two processes."""

from __future__ import annotations

import multiprocessing
from ipaddress import IPv4Address as A
from pathlib import Path

import pytest

from composer.runtime.ipam import IpamError, plan
from composer.state.leases import lease, leases_of, release, release_all
from composer.state.store import Store

NET = plan({"subnet": "10.6.0.0/24"}, taken=[], host_routes=[])


def test_a_container_keeps_its_address_and_gets_it_back_after_release(tmp_path: Path) -> None:
    with Store.open(tmp_path) as db:
        first = lease(db, "n", "c1", NET)
        assert first == A("10.6.0.2") and lease(db, "n", "c1", NET) == first
        assert lease(db, "n", "c2", NET) == A("10.6.0.3")
        assert release(db, "n", "c1") and not release(db, "n", "c1")
        assert lease(db, "n", "c3", NET) == A("10.6.0.2")
        assert lease(db, "n", "c2", NET, static="10.6.0.99") == A("10.6.0.99")
        with pytest.raises(IpamError, match="already in use"):
            lease(db, "n", "c4", NET, static="10.6.0.99")
        assert leases_of(db, "n") == {"c3": "10.6.0.2", "c2": "10.6.0.99"}
        assert release_all(db, "c2") == 1


def _take(root: str, worker: int, out: multiprocessing.Queue[list[str]]) -> None:
    with Store.open(root) as db:
        out.put([str(lease(db, "n", f"w{worker}-{i}", NET)) for i in range(20)])


def test_two_processes_never_get_the_same_address(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    queue: multiprocessing.Queue[list[str]] = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_take, args=(str(tmp_path), w, queue))
               for w in range(3)]
    for w in workers:
        w.start()
    got = [a for _ in workers for a in queue.get(timeout=60)]
    for w in workers:
        w.join(timeout=60)
    assert len(got) == 60 and len(set(got)) == 60
