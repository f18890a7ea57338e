"""Host-wide subnet claims: what other state roots hold is taken, stale claims go."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from composer.engine import subnet_claims


@pytest.fixture(autouse=True)
def claims_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    where = tmp_path / "claims"
    monkeypatch.setattr(subnet_claims, "CLAIMS", where)
    return where


def test_other_roots_claims_are_taken_and_own_are_not(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    subnet_claims.claim("aaaa", tmp_path / "a", "1" * 64, "172.17.0.0/16")
    subnet_claims.claim("bbbb", tmp_path / "b", "2" * 64, "172.18.0.0/16")
    assert subnet_claims.claimed_by_others("aaaa") == [ipaddress.IPv4Network("172.18.0.0/16")]
    assert set(subnet_claims.claimed_by_others("cccc")) == {
        ipaddress.IPv4Network("172.17.0.0/16"), ipaddress.IPv4Network("172.18.0.0/16")}
    subnet_claims.release("bbbb", "2" * 64)
    subnet_claims.release("bbbb", "2" * 64)  # gone already: fine
    assert subnet_claims.claimed_by_others("aaaa") == []


def test_a_claim_of_a_deleted_state_root_is_stale_and_dropped(tmp_path: Path,
                                                              claims_dir: Path) -> None:
    subnet_claims.claim("dead", tmp_path / "gone", "3" * 64, "10.9.0.0/24")
    (claims_dir / "junk").write_text("not json")
    assert subnet_claims.claimed_by_others("aaaa") == []
    assert sorted(p.name for p in claims_dir.iterdir()) == ["junk"]


def test_keep_only_makes_a_roots_claims_exactly_its_networks(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    subnet_claims.claim("aaaa", root, "4" * 64, "10.1.0.0/24")  # a crash left it, no row
    subnet_claims.keep_only("aaaa", root, [("5" * 64, "10.2.0.0/24")])
    assert subnet_claims.mine("aaaa") == ["aaaa-" + "5" * 16]
    subnet_claims.keep_only("aaaa", root, [])
    assert subnet_claims.mine("aaaa") == []
