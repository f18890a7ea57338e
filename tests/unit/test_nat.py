"""nat: the nft ruleset and the iptables FORWARD compatibility commands, as pure text.

The golden ruleset pins what composer hands to ``nft -f``; the real kernel runs it in
tests/integration/test_nat.py. The command runner is replaced here by a script of answers, so
what ``apply`` and ``remove`` decide is checked without root.
"""

from __future__ import annotations

import ipaddress
import random
import subprocess
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.runtime import nat
from composer.runtime.nat import (
    BridgeNet,
    NatError,
    Publication,
    compat_chain,
    compat_commands,
    compat_removal_commands,
    forward_policy_drops,
    removal,
    ruleset,
)

FRONT = BridgeNet("cmp-front", ipaddress.IPv4Network("10.10.1.0/24"), internal=False)
BACK = BridgeNet("cmp-back", ipaddress.IPv4Network("10.10.2.0/24"), internal=True)
WEB = Publication("tcp", "", 8080, "10.10.1.2", 80, "cmp-front")
DNS = Publication("udp", "192.168.1.5", 5353, "10.10.1.3", 53, "cmp-front")

GOLDEN = """\
table ip composer_t {}
delete table ip composer_t
table ip composer_t {
\tcomment "composer: its networks and published ports; regenerated whole, edits are lost"
\tchain guard {
\t\ttype filter hook prerouting priority raw; policy accept;
\t\tiifname { "cmp-back", "cmp-front" } ip daddr 127.0.0.0/8 drop
\t}

\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local jump published
\t}

\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local jump published
\t}

\tchain published {
\t\ttcp dport 8080 dnat to 10.10.1.2:80
\t\tip daddr 192.168.1.5 udp dport 5353 dnat to 10.10.1.3:53
\t}

\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname "cmp-front" ip saddr 127.0.0.0/8 masquerade
\t\toifname "cmp-front" ip saddr 10.10.1.0/24 ct status dnat masquerade
\t\tip saddr 10.10.1.0/24 oifname != "cmp-front" masquerade
\t}

\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname "cmp-back" oifname != "cmp-back" drop
\t\toifname "cmp-back" iifname != "cmp-back" drop
\t\tct state established,related accept
\t\tiifname "cmp-back" oifname "cmp-back" accept
\t\tiifname "cmp-front" oifname "cmp-front" accept
\t\toifname "cmp-front" ct status dnat accept
\t\toifname "cmp-front" drop
\t\tiifname "cmp-front" accept
\t}
}
"""


# -- the ruleset ----------------------------------------------------------------------------------

def test_golden_ruleset() -> None:
    assert ruleset("composer_t", [FRONT, BACK], [WEB, DNS]) == GOLDEN


def test_ruleset_is_deterministic_whatever_the_input_order() -> None:
    third = BridgeNet("cmp-aaa", ipaddress.IPv4Network("10.10.3.0/24"))
    nets = [FRONT, BACK, third]
    pubs = [WEB, DNS, Publication("tcp", "127.0.0.1", 9000, "10.10.3.2", 9000, "cmp-aaa"),
            Publication("tcp", "192.168.1.5", 8080 + 1, "10.10.1.2", 81, "cmp-front")]
    want = ruleset("composer_t", nets, pubs)
    shuffler = random.Random(7)
    for _ in range(20):
        shuffler.shuffle(nets)
        shuffler.shuffle(pubs)
        assert ruleset("composer_t", nets, pubs + pubs[:1]) == want  # duplicates collapse


def test_specific_host_addresses_come_before_every_address() -> None:
    pubs = [Publication("tcp", "", 8000, "10.10.1.2", 80, "cmp-front"),
            Publication("tcp", "127.0.0.1", 8001, "10.10.1.2", 81, "cmp-front"),
            Publication("tcp", "192.168.1.5", 8000 + 100, "10.10.1.2", 82, "cmp-front")]
    text = ruleset("composer_t", [FRONT], pubs)
    body = text.split("chain published {\n")[1].split("\t}")[0].split("\n")
    assert [line.strip() for line in body if line.strip()] == [
        "tcp dport 8000 dnat to 10.10.1.2:80",
        "ip daddr 127.0.0.1 tcp dport 8001 dnat to 10.10.1.2:81",
        "ip daddr 192.168.1.5 tcp dport 8100 dnat to 10.10.1.2:82",
    ]


def test_empty_input_is_the_removal_script() -> None:
    assert ruleset("composer_t", [], []) == removal("composer_t") == (
        "table ip composer_t {}\ndelete table ip composer_t\n")


def test_internal_networks_publish_nothing_and_never_masquerade() -> None:
    hidden = Publication("tcp", "", 7000, "10.10.2.2", 80, "cmp-back")
    text = ruleset("composer_t", [BACK], [hidden])
    assert "dnat to" not in text
    assert "masquerade" not in text
    assert 'iifname "cmp-back" oifname != "cmp-back" drop' in text


def test_sctp_is_published_like_the_others() -> None:
    text = ruleset("composer_t", [FRONT],
                   [Publication("sctp", "", 3868, "10.10.1.2", 3868, "cmp-front")])
    assert "sctp dport 3868 dnat to 10.10.1.2:3868" in text


@pytest.mark.parametrize(("networks", "publications", "message"), [
    ([FRONT, FRONT], [], "given twice"),
    ([FRONT], [Publication("tcp", "", 1, "10.10.2.2", 80, "cmp-back")], "not one of the networks"),
    ([FRONT], [Publication("tcp", "", 1, "10.10.9.2", 80, "cmp-front")], "not in cmp-front's"),
    ([FRONT], [WEB, Publication("tcp", "", 8080, "10.10.1.9", 80, "cmp-front")],
     "published twice"),
    ([FRONT], [WEB, Publication("tcp", "127.0.0.1", 8080, "10.10.1.9", 80, "cmp-front")],
     "published twice"),
])
def test_inconsistent_inputs_are_refused(networks: list[BridgeNet],
                                         publications: list[Publication], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ruleset("composer_t", networks, publications)


def test_same_port_on_two_specific_addresses_is_fine() -> None:
    other = Publication("tcp", "192.168.1.5", 8080, "10.10.1.9", 80, "cmp-front")
    mine = Publication("tcp", "127.0.0.1", 8080, "10.10.1.2", 80, "cmp-front")
    assert ruleset("composer_t", [FRONT], [other, mine]).count("dport 8080") == 2


@pytest.mark.parametrize("build", [
    lambda: Publication("icmp", "", 80, "10.0.0.2", 80, "br0"),
    lambda: Publication("tcp", "", 0, "10.0.0.2", 80, "br0"),
    lambda: Publication("tcp", "", 80, "10.0.0.2", 65536, "br0"),
    lambda: Publication("tcp", "::1", 80, "10.0.0.2", 80, "br0"),
    lambda: Publication("tcp", "", 80, "10.0.0.2", 80, 'br0" accept'),
    lambda: BridgeNet("a-very-long-bridge-name", ipaddress.IPv4Network("10.0.0.0/24")),
])
def test_bad_fields_are_refused(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_bad_table_names_are_refused() -> None:
    with pytest.raises(ValueError, match="identifier"):
        ruleset("composer t; flush ruleset", [FRONT], [])


# -- the FORWARD compatibility path ---------------------------------------------------------------

EMPTY_DROP = "-P INPUT ACCEPT\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n"


def _listing(*rules: str, policy: str = "DROP", chains: tuple[str, ...] = ()) -> str:
    head = ["-P INPUT ACCEPT", f"-P FORWARD {policy}", "-P OUTPUT ACCEPT"]
    return "\n".join(head + [f"-N {c}" for c in chains] + list(rules)) + "\n"


IN_PLACE = _listing(
    "-A FORWARD -j DOCKER-USER",
    '-A FORWARD -m comment --comment "composer:composer_t" -j COMPOSER-composer_t',
    "-A COMPOSER-composer_t -i cmp-back -o cmp-back -j ACCEPT",
    "-A COMPOSER-composer_t -i cmp-front -j ACCEPT",
    "-A COMPOSER-composer_t -o cmp-front -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A COMPOSER-composer_t -o cmp-front -m conntrack --ctstate DNAT -j ACCEPT",
    chains=("COMPOSER-composer_t", "DOCKER-USER"))


def test_compat_commands_from_nothing() -> None:
    assert compat_commands("composer_t", [FRONT, BACK], EMPTY_DROP) == [
        ["iptables", "-w", "-N", "COMPOSER-composer_t"],
        ["iptables", "-w", "-A", "COMPOSER-composer_t", "-i", "cmp-back", "-o", "cmp-back",
         "-j", "ACCEPT"],
        ["iptables", "-w", "-A", "COMPOSER-composer_t", "-i", "cmp-front", "-j", "ACCEPT"],
        ["iptables", "-w", "-A", "COMPOSER-composer_t", "-o", "cmp-front", "-m", "conntrack",
         "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"],
        ["iptables", "-w", "-A", "COMPOSER-composer_t", "-o", "cmp-front", "-m", "conntrack",
         "--ctstate", "DNAT", "-j", "ACCEPT"],
        ["iptables", "-w", "-I", "FORWARD", "1", "-m", "comment", "--comment",
         "composer:composer_t", "-j", "COMPOSER-composer_t"],
    ]


def test_compat_commands_change_nothing_when_in_place() -> None:
    # The jump is not first (Docker inserted its own later): left where it is, not fought over.
    assert compat_commands("composer_t", [BACK, FRONT], IN_PLACE) == []


def test_compat_commands_rewrite_the_chain_when_the_bridges_changed() -> None:
    commands = compat_commands("composer_t", [BACK], IN_PLACE)
    assert commands == [
        ["iptables", "-w", "-F", "COMPOSER-composer_t"],
        ["iptables", "-w", "-A", "COMPOSER-composer_t", "-i", "cmp-back", "-o", "cmp-back",
         "-j", "ACCEPT"],
    ]


def test_compat_commands_mend_stale_and_doubled_jumps() -> None:
    listing = _listing(
        "-A FORWARD -m comment --comment composer:composer_t -j COMPOSER-old",
        "-A FORWARD -m comment --comment composer:composer_t -j COMPOSER-composer_t",
        "-A FORWARD -m comment --comment composer:composer_t -j COMPOSER-composer_t",
        "-A FORWARD -m comment --comment composer:composer_tt -j COMPOSER-composer_tt",
        "-A COMPOSER-composer_t -i cmp-back -o cmp-back -j ACCEPT",
        chains=("COMPOSER-composer_t",))
    assert compat_commands("composer_t", [BACK], listing) == [
        ["iptables", "-w", "-D", "FORWARD", "-m", "comment", "--comment", "composer:composer_t",
         "-j", "COMPOSER-old"],
        ["iptables", "-w", "-D", "FORWARD", "-m", "comment", "--comment", "composer:composer_t",
         "-j", "COMPOSER-composer_t"],
    ]


def test_compat_removal_finds_rules_by_mark_and_chain_name() -> None:
    listing = IN_PLACE + "-A FORWARD -i eth9 -j COMPOSER-composer_t\n"
    assert compat_removal_commands("composer_t", listing) == [
        ["iptables", "-w", "-D", "FORWARD", "-m", "comment", "--comment", "composer:composer_t",
         "-j", "COMPOSER-composer_t"],
        ["iptables", "-w", "-D", "FORWARD", "-i", "eth9", "-j", "COMPOSER-composer_t"],
        ["iptables", "-w", "-F", "COMPOSER-composer_t"],
        ["iptables", "-w", "-X", "COMPOSER-composer_t"],
    ]
    assert compat_removal_commands("composer_t", EMPTY_DROP) == []
    assert compat_removal_commands("other", IN_PLACE) == []


def test_compat_chain_names_fit_iptables() -> None:
    assert compat_chain("composer_t") == "COMPOSER-composer_t"
    long_one, long_two = "composer_" + "a" * 40, "composer_" + "a" * 39 + "b"
    assert len(compat_chain(long_one)) == 28
    assert compat_chain(long_one).startswith("COMPOSER-composer_aaa")
    assert compat_chain(long_one) != compat_chain(long_two)


def test_forward_policy() -> None:
    assert forward_policy_drops(EMPTY_DROP)
    assert not forward_policy_drops(_listing(policy="ACCEPT"))
    assert not forward_policy_drops("")


# -- apply and remove, with the commands answered by a script -------------------------------------

class FakeRunner:
    """Stands in for nat._run: records each command and answers from ``answers`` (the first
    key that starts the command line wins), else success with no output."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[list[str], str | None]] = []

    def __call__(self, argv: list[str], netns: Path | None, *, input: str | None = None,
                 ) -> subprocess.CompletedProcess[str]:
        full = nat._in_netns(argv, netns)
        self.calls.append((full, input))
        for key, (code, out, err) in self.answers.items():
            if tuple(argv[:len(key)]) == key:
                return subprocess.CompletedProcess(full, code, out, err)
        return subprocess.CompletedProcess(full, 0, "", "")

    def argvs(self) -> list[list[str]]:
        return [argv for argv, _ in self.calls]


@pytest.fixture
def with_iptables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nat.shutil, "which", lambda name: f"/usr/sbin/{name}")


def test_apply_runs_nft_then_adds_the_compat_path(monkeypatch: pytest.MonkeyPatch,
                                                   with_iptables: None) -> None:
    runner = FakeRunner({("iptables", "-w", "-S"): (0, EMPTY_DROP, "")})
    monkeypatch.setattr(nat, "_run", runner)
    nat.apply("composer_t", [FRONT, BACK], [WEB, DNS], netns=Path("/run/netns/t"))
    first, script = runner.calls[0]
    assert first == ["nsenter", "--net=/run/netns/t", "nft", "-f", "-"]
    assert script == GOLDEN
    assert runner.argvs()[1] == ["nsenter", "--net=/run/netns/t", "iptables", "-w", "-S"]
    assert [a[2:] for a in runner.argvs()[2:]] == compat_commands("composer_t", [FRONT, BACK],
                                                                  EMPTY_DROP)


def test_apply_leaves_iptables_alone_when_forward_accepts(monkeypatch: pytest.MonkeyPatch,
                                                          with_iptables: None) -> None:
    runner = FakeRunner({("iptables", "-w", "-S"): (0, _listing(policy="ACCEPT"), ""),
                         ("nft", "-j", "list", "chain"): (1, "", "No such file or directory")})
    monkeypatch.setattr(nat, "_run", runner)
    nat.apply("composer_t", [FRONT], [WEB])
    assert not [a for a in runner.argvs() if a[0] == "iptables" and a[2] != "-S"]


def test_apply_warns_without_iptables_when_forward_drops(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(nat.shutil, "which", lambda name: None)
    chain = ('{"nftables": [{"chain": {"family": "ip", "table": "filter", "name": "FORWARD", '
             '"policy": "drop"}}]}')
    runner = FakeRunner({("nft", "-j", "list", "chain"): (0, chain, "")})
    monkeypatch.setattr(nat, "_run", runner)
    nat.apply("composer_t", [FRONT], [WEB])
    assert "iptables is not installed" in caplog.text
    assert all(a[0] == "nft" for a in runner.argvs())


def test_apply_with_nothing_removes(monkeypatch: pytest.MonkeyPatch, with_iptables: None) -> None:
    runner = FakeRunner({("iptables", "-w", "-S"): (0, IN_PLACE, "")})
    monkeypatch.setattr(nat, "_run", runner)
    nat.apply("composer_t", [], [])
    assert runner.argvs()[0] == ["iptables", "-w", "-S"]
    assert runner.argvs()[1:-1] == compat_removal_commands("composer_t", IN_PLACE)
    assert runner.calls[-1] == (["nft", "-f", "-"], removal("composer_t"))


def test_nft_errors_quote_stderr_and_the_failing_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    line = GOLDEN.splitlines().index("\t\ttcp dport 8080 dnat to 10.10.1.2:80") + 1
    stderr = (f"/dev/stdin:{line}:3-38: Error: Could not process rule: No such file or directory\n"
              "\t\ttcp dport 8080 dnat to 10.10.1.2:80\n\t\t^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n")
    runner = FakeRunner({("nft",): (1, "", stderr)})
    monkeypatch.setattr(nat, "_run", runner)
    monkeypatch.setattr(nat.shutil, "which", lambda name: None)
    with pytest.raises(NatError) as caught:
        nat.apply("composer_t", [FRONT, BACK], [WEB, DNS])
    assert isinstance(caught.value, ComposerError)
    assert caught.value.rule == "tcp dport 8080 dnat to 10.10.1.2:80"
    text = str(caught.value)
    assert "nft refused composer's ruleset for table ip composer_t" in text
    assert "failing rule: tcp dport 8080 dnat to 10.10.1.2:80" in text
    assert "Could not process rule" in text
    assert "hint: " in text and "modprobe" in text


def test_iptables_errors_name_the_command(monkeypatch: pytest.MonkeyPatch,
                                          with_iptables: None) -> None:
    runner = FakeRunner({("iptables", "-w", "-S"): (0, EMPTY_DROP, ""),
                         ("iptables", "-w", "-N"): (1, "", "iptables: Permission denied.")})
    monkeypatch.setattr(nat, "_run", runner)
    with pytest.raises(NatError, match=r"failing rule: iptables -w -N COMPOSER-composer_t"):
        nat.apply("composer_t", [FRONT], [WEB])


def test_tables_lists_by_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    listing = ('{"nftables": [{"metainfo": {"version": "1.0.6"}}, '
               '{"table": {"family": "ip", "name": "composer_b", "handle": 2}}, '
               '{"table": {"family": "ip", "name": "filter", "handle": 1}}, '
               '{"table": {"family": "ip", "name": "composer_a", "handle": 3}}]}')
    monkeypatch.setattr(nat, "_run", FakeRunner({("nft",): (0, listing, "")}))
    assert nat.tables("composer_") == ["composer_a", "composer_b"]
    assert nat.tables("nothing") == []


def test_missing_programs_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("nft")

    monkeypatch.setattr(nat.subprocess, "run", missing)
    monkeypatch.setattr(nat.shutil, "which", lambda name: None)
    with pytest.raises(NatError, match="apt install nftables"):
        nat.remove("composer_t")
