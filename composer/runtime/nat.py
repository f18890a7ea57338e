"""composer's firewall and NAT: one nftables table per state root, regenerated whole.

Every rule composer needs lives in one ``ip`` table of its own, named by the caller after the
state root. The table is never edited rule by rule: :func:`ruleset` renders all of it from the
networks and publications wanted now, and :func:`apply` hands that to ``nft -f -`` as one
transaction that deletes the old table and adds the new one, so the kernel never sees half a
firewall and a crash leaves either the old table or the new one. Nothing else in the host's
ruleset is read or touched, with one exception below.

What the table gives (Docker's behaviour, as its nftables backend has it):

- ``prerouting``/``output`` (nat): traffic to a local address and a published port is DNATed to
  the container; the output hook makes the host itself (127.0.0.1 and its own addresses) reach
  published ports.
- ``postrouting`` (nat): masquerade what leaves a non-internal network for elsewhere; loopback
  sources DNATed into a bridge (127.0.0.1 publishing works through ``route_localnet`` on the
  bridge, and a reply to 127.0.0.1 would stay in the container); hairpin, a container reaching a
  published port of its own network through a host address.
- ``forward`` (filter, policy accept: composer is not the host's firewall, it only drops what
  Docker drops): internal networks have nothing in or out; a bridge takes new traffic only from
  itself or through a published port (so two composer networks are isolated from each other,
  and nothing routes straight to a container's address); non-internal networks may go out.
- ``guard`` (filter, raw priority): ``route_localnet`` on a bridge would also let containers
  reach the host's 127.0.0.0/8 services; packets from a bridge to 127.0.0.0/8 are dropped.

The exception: a drop in any base chain is final, so on hosts where Docker or podman set the
iptables ``FORWARD`` policy to DROP, composer's forwarded traffic would die there whatever this
table says. :func:`apply` then adds an accept path through iptables: a chain ``COMPOSER-...``
and a jump to it first in ``FORWARD``, marked ``composer:<table>``; :func:`remove` takes them
away by that name and mark, not by today's bridges.

The command lines are built by pure functions (:func:`ruleset`, :func:`removal`,
:func:`compat_commands`, :func:`compat_removal_commands`) that the unit tests pin down.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import json
import logging
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.errors import ComposerError

log = logging.getLogger(__name__)

PROTOCOLS = ("tcp", "udp", "sctp")
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
COMPAT_CHAIN_PREFIX = "COMPOSER-"
COMMENT_PREFIX = "composer:"
XT_CHAIN_MAX = 28  # iptables chain names: XT_EXTENSION_MAXNAMELEN minus the NUL
_COMMAND_TIMEOUT = 60.0  # nft and iptables answer at once; this only stops a wedged one

_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
# Narrower than Linux allows: names are quoted into nft scripts and passed to iptables, and
# composer makes its bridge names itself.
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
_NFT_ERROR_AT = re.compile(r"^(?:/dev/stdin|-):(\d+):", re.MULTILINE)


class NatError(ComposerError):
    """nft or iptables refused what composer handed them."""

    def __init__(self, message: str, *, stderr: str = "", rule: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.stderr = stderr
        self.rule = rule
        self.hint = hint

    def __str__(self) -> str:
        text = self.message
        if self.rule:
            text += f"\n  failing rule: {self.rule}"
        if self.stderr.strip():
            said = "\n    ".join(self.stderr.strip().splitlines())
            text += f"\n  it said:\n    {said}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


@dataclass(frozen=True)
class BridgeNet:
    """One composer network: its bridge, its subnet, and whether it is ``internal`` (no way
    out, nothing in)."""

    bridge: str
    subnet: ipaddress.IPv4Network
    internal: bool = False

    def __post_init__(self) -> None:
        _check_ifname(self.bridge)
        if not isinstance(self.subnet, ipaddress.IPv4Network):
            raise ValueError(f"network {self.bridge}: subnet {self.subnet!r} is not an IPv4 "
                             "network")


@dataclass(frozen=True)
class Publication:
    """One published port: ``host_ip:host_port/protocol`` to ``container_ip:container_port``
    on ``bridge``. ``host_ip`` "" (or 0.0.0.0) is every IPv4 address of the host."""

    protocol: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    bridge: str

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        for what, port in (("host", self.host_port), ("container", self.container_port)):
            if not 1 <= port <= 65535:
                raise ValueError(f"{what} port {port} is not in 1..65535")
        if self.host_ip:
            ipaddress.IPv4Address(self.host_ip)  # ValueError names the bad address
        ipaddress.IPv4Address(self.container_ip)
        _check_ifname(self.bridge)

    @property
    def every_address(self) -> bool:
        return self.host_ip in ("", "0.0.0.0")


def _check_ifname(name: str) -> None:
    if not _IFNAME.fullmatch(name):
        raise ValueError(f"bridge name {name!r} is not a short interface name "
                         "(up to 15 of A-Z a-z 0-9 _ . -)")


def _check_table(table: str) -> None:
    if not _TABLE.fullmatch(table):
        raise ValueError(f"table name {table!r} is not an identifier (a letter, then up to 63 "
                         "of A-Z a-z 0-9 _ -)")


# -- the nft script (pure) ------------------------------------------------------------------------

def removal(table: str) -> str:
    """The nft script that deletes ``ip <table>``, succeeding when it is absent (the empty
    ``table`` statement creates it first, within the same transaction)."""
    _check_table(table)
    return f"table ip {table} {{}}\ndelete table ip {table}\n"


def _publication_key(p: Publication) -> tuple[str, int, int, int, int, int, str]:
    # Specific host addresses before "every address": nft takes the first match.
    host = 0 if p.every_address else int(ipaddress.IPv4Address(p.host_ip))
    return (p.protocol, p.host_port, 1 if p.every_address else 0, host,
            int(ipaddress.IPv4Address(p.container_ip)), p.container_port, p.bridge)


def _check_inputs(networks: Sequence[BridgeNet],
                  publications: Sequence[Publication]) -> dict[str, BridgeNet]:
    by_bridge: dict[str, BridgeNet] = {}
    for net in networks:
        if net.bridge in by_bridge:
            raise ValueError(f"bridge {net.bridge} is given twice")
        by_bridge[net.bridge] = net
    taken: dict[tuple[str, int], Publication] = {}
    for p in sorted(set(publications), key=_publication_key):
        home = by_bridge.get(p.bridge)
        if home is None:
            raise ValueError(f"published port {p.host_port}/{p.protocol} is on bridge "
                             f"{p.bridge}, which is not one of the networks")
        if ipaddress.IPv4Address(p.container_ip) not in home.subnet:
            raise ValueError(f"published port {p.host_port}/{p.protocol}: {p.container_ip} is "
                             f"not in {home.bridge}'s subnet {home.subnet}")
        # One host address and port can lead to one container only, and "every address"
        # overlaps every specific one, as two sockets binding them would.
        other = taken.get((p.protocol, p.host_port))
        if other is not None and (other.every_address or p.every_address
                                  or other.host_ip == p.host_ip):
            raise ValueError(f"host port {_host(p)}/{p.protocol} is published twice: to "
                             f"{other.container_ip}:{other.container_port} and "
                             f"{p.container_ip}:{p.container_port}")
        taken[(p.protocol, p.host_port)] = p
    return by_bridge


def _host(p: Publication) -> str:
    return f"{'0.0.0.0' if p.every_address else p.host_ip}:{p.host_port}"


def ruleset(table: str, networks: Sequence[BridgeNet],
            publications: Sequence[Publication]) -> str:
    """The nft script that replaces table ``ip <table>`` in one transaction.

    The same inputs give the same text whatever their order: networks are sorted by bridge,
    publications by protocol, port and address (duplicates collapse). With nothing to do it is
    :func:`removal`. Publications on internal networks get no DNAT: an internal network has
    nothing in, as with Docker (the caller warns about them). Raises ``ValueError`` for
    inconsistent inputs: a bridge given twice, a publication on an unknown bridge or outside its
    subnet, one host port published twice.
    """
    _check_table(table)
    by_bridge = _check_inputs(networks, publications)
    if not networks:
        return removal(table)
    nets = [by_bridge[name] for name in sorted(by_bridge)]
    pubs = [p for p in sorted(set(publications), key=_publication_key)
            if not by_bridge[p.bridge].internal]

    def q(name: str) -> str:
        return f'"{name}"'

    published = []
    for p in pubs:
        where = "" if p.every_address else f"ip daddr {p.host_ip} "
        published.append(f"{where}{p.protocol} dport {p.host_port} "
                         f"dnat to {p.container_ip}:{p.container_port}")

    postrouting = []
    for n in nets:
        if n.internal:
            continue
        postrouting += [
            f"oifname {q(n.bridge)} ip saddr {LOOPBACK} masquerade",
            f"oifname {q(n.bridge)} ip saddr {n.subnet} ct status dnat masquerade",
            f"ip saddr {n.subnet} oifname != {q(n.bridge)} masquerade",
        ]

    forward = []
    for n in nets:  # first, so that no accept below (not even an old flow's) lets them through
        if n.internal:
            forward += [f"iifname {q(n.bridge)} oifname != {q(n.bridge)} drop",
                        f"oifname {q(n.bridge)} iifname != {q(n.bridge)} drop"]
    forward.append("ct state established,related accept")
    forward += [f"iifname {q(n.bridge)} oifname {q(n.bridge)} accept" for n in nets]
    # Every way in before any way out: "out of A" must not accept what goes into B.
    for n in nets:
        if not n.internal:
            forward += [f"oifname {q(n.bridge)} ct status dnat accept",
                        f"oifname {q(n.bridge)} drop"]
    forward += [f"iifname {q(n.bridge)} accept" for n in nets if not n.internal]

    bridges = ", ".join(q(n.bridge) for n in nets)
    chains = [
        ("guard", "type filter hook prerouting priority raw; policy accept;",
         [f"iifname {{ {bridges} }} ip daddr {LOOPBACK} drop"]),
        ("prerouting", "type nat hook prerouting priority dstnat; policy accept;",
         ["fib daddr type local jump published"]),
        ("output", "type nat hook output priority -100; policy accept;",
         ["fib daddr type local jump published"]),
        ("published", None, published),
        ("postrouting", "type nat hook postrouting priority srcnat; policy accept;",
         postrouting),
        ("forward", "type filter hook forward priority filter; policy accept;", forward),
    ]
    lines = [f"table ip {table} {{}}", f"delete table ip {table}", f"table ip {table} {{",
             '\tcomment "composer: its networks and published ports; regenerated whole, '
             'edits are lost"']
    for index, (name, base, rules) in enumerate(chains):
        if index:
            lines.append("")
        lines.append(f"\tchain {name} {{")
        if base:
            lines.append(f"\t\t{base}")
        lines += [f"\t\t{rule}" for rule in rules]
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- the iptables FORWARD compatibility path (pure) -----------------------------------------------

def compat_chain(table: str) -> str:
    """The iptables chain of ``table``'s accept path: ``COMPOSER-<table>``, or a shortened
    name with a hash of the table when that is over iptables' 28 characters."""
    _check_table(table)
    name = f"{COMPAT_CHAIN_PREFIX}{table}"
    if len(name) <= XT_CHAIN_MAX:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:6]
    room = XT_CHAIN_MAX - len(COMPAT_CHAIN_PREFIX) - len(digest) - 1
    return f"{COMPAT_CHAIN_PREFIX}{table[:room]}-{digest}"


def compat_comment(table: str) -> str:
    """The comment marking the jump in ``FORWARD`` as ``table``'s."""
    _check_table(table)
    return f"{COMMENT_PREFIX}{table}"


def _compat_rules(chain: str, networks: Sequence[BridgeNet]) -> list[list[str]]:
    """The ``-A`` lines of the chain, spelled as ``iptables -S`` prints them back, so that the
    chain in place can be compared with them."""
    rules = []
    for net in sorted(networks, key=lambda n: n.bridge):
        b = net.bridge
        if net.internal:
            # Only within the network (when br_netfilter shows bridged traffic to iptables).
            rules.append(["-A", chain, "-i", b, "-o", b, "-j", "ACCEPT"])
            continue
        rules += [
            ["-A", chain, "-i", b, "-j", "ACCEPT"],
            ["-A", chain, "-o", b, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
             "-j", "ACCEPT"],
            ["-A", chain, "-o", b, "-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT"],
        ]
    return rules


@dataclass(frozen=True)
class _FilterTable:
    """What ``iptables -S`` says about the filter table, split into what compat needs."""

    forward_policy: str | None
    chains: frozenset[str]
    rules: tuple[tuple[str, ...], ...]  # every -A line, split

    @classmethod
    def parse(cls, listing: str) -> _FilterTable:
        policy: str | None = None
        chains: set[str] = set()
        rules: list[tuple[str, ...]] = []
        for line in listing.splitlines():
            try:
                words = shlex.split(line)
            except ValueError:
                continue  # a comment with a stray quote is not one of ours
            if len(words) >= 3 and words[:2] == ["-P", "FORWARD"]:
                policy = words[2]
            elif len(words) >= 2 and words[0] == "-N":
                chains.add(words[1])
            elif len(words) >= 2 and words[0] == "-A":
                rules.append(tuple(words))
        return cls(policy, frozenset(chains), tuple(rules))

    def chain_rules(self, chain: str) -> list[list[str]]:
        return [list(r) for r in self.rules if r[1] == chain]

    def marked(self, comment: str) -> list[list[str]]:
        """The FORWARD rules carrying ``--comment <comment>`` exactly."""
        found = []
        for r in self.rules:
            if r[1] != "FORWARD":
                continue
            if any(r[i] == "--comment" and r[i + 1] == comment for i in range(len(r) - 1)):
                found.append(list(r))
        return found


def forward_policy_drops(listing: str) -> bool:
    """Whether ``iptables -S`` output shows the ``FORWARD`` policy DROP."""
    return _FilterTable.parse(listing).forward_policy == "DROP"


def compat_commands(table: str, networks: Sequence[BridgeNet], listing: str,
                    *, iptables: str = "iptables") -> list[list[str]]:
    """The iptables commands that make ``table``'s accept path what ``networks`` need, given
    the filter table as ``iptables -S`` lists it now. Nothing when it already is (so applying
    twice changes nothing the second time); the jump is inserted first in ``FORWARD`` only when
    missing, so composer does not fight another program that wants to be first."""
    chain, comment = compat_chain(table), compat_comment(table)
    now = _FilterTable.parse(listing)
    run = [iptables, "-w"]
    wanted = _compat_rules(chain, networks)
    commands = []
    if chain not in now.chains:
        commands.append([*run, "-N", chain])
        commands += [[*run, *rule] for rule in wanted]
    elif now.chain_rules(chain) != wanted:
        commands.append([*run, "-F", chain])
        commands += [[*run, *rule] for rule in wanted]
    jump = ["-A", "FORWARD", "-m", "comment", "--comment", comment, "-j", chain]
    marked = now.marked(comment)
    right = [r for r in marked if r == jump]
    for rule in [r for r in marked if r != jump] + right[1:]:  # stale or doubled jumps
        commands.append([*run, "-D", *rule[1:]])
    if not right:
        commands.append([*run, "-I", "FORWARD", "1", *jump[2:]])
    return commands


def compat_removal_commands(table: str, listing: str,
                            *, iptables: str = "iptables") -> list[list[str]]:
    """The iptables commands that delete ``table``'s accept path: every ``FORWARD`` rule marked
    ``composer:<table>`` and any other jump to its chain, then the chain. Nothing when none is
    there."""
    chain, comment = compat_chain(table), compat_comment(table)
    now = _FilterTable.parse(listing)
    run = [iptables, "-w"]
    jumps = [list(r) for r in now.rules
             if r[1] != chain and ("-j", chain) in itertools.pairwise(r)]
    doomed = now.marked(comment) + [r for r in jumps if r not in now.marked(comment)]
    commands = [[*run, "-D", *rule[1:]] for rule in doomed]
    if chain in now.chains:
        commands += [[*run, "-F", chain], [*run, "-X", chain]]
    return commands


# -- running them ---------------------------------------------------------------------------------

def _in_netns(argv: list[str], netns: Path | None) -> list[str]:
    return argv if netns is None else ["nsenter", f"--net={netns}", *argv]


def _run(argv: list[str], netns: Path | None, *, input: str | None = None,
         ) -> subprocess.CompletedProcess[str]:
    full = _in_netns(argv, netns)
    try:
        done = subprocess.run(full, input=input, capture_output=True, text=True, check=False,
                              timeout=_COMMAND_TIMEOUT)
    except FileNotFoundError as e:
        package = {"nft": "nftables", "nsenter": "util-linux"}.get(Path(full[0]).name, full[0])
        raise NatError(f"{full[0]} is not installed", hint=f"apt install {package}") from e
    except subprocess.TimeoutExpired as e:
        raise NatError(f"{shlex.join(full)} did not finish in {_COMMAND_TIMEOUT:.0f} s",
                       hint="another program may hold the xtables lock; see `ps`") from e
    if netns is not None and done.returncode != 0 and done.stderr.startswith("nsenter:"):
        # Not the firewall's answer: the program never ran.
        raise NatError(f"cannot enter the network namespace {netns}", stderr=done.stderr,
                       hint="the namespace file must exist (ip netns list) and composer must "
                            "run as root")
    return done


def _failing_lines(script: str, stderr: str) -> str | None:
    lines = script.splitlines()
    picked = []
    for match in _NFT_ERROR_AT.finditer(stderr):
        number = int(match.group(1))
        if 1 <= number <= len(lines) and lines[number - 1].strip() not in picked:
            picked.append(lines[number - 1].strip())
    return " | ".join(picked) or None


def _nft_hint(stderr: str) -> str:
    if "Operation not permitted" in stderr:
        return "changing the firewall needs root (CAP_NET_ADMIN)"
    if "No such file or directory" in stderr or "not supported" in stderr:
        return ("the kernel may lack an nftables part composer uses: "
                "modprobe nf_tables nft_nat nft_chain_nat nft_fib_ipv4 nft_masq nft_ct")
    return ("the script is composer's; if the kernel has nftables with nat, fib, masquerade and "
            "conntrack, this is a composer bug: report it with the rule above")


def _nft(script: str, table: str, netns: Path | None) -> None:
    done = _run(["nft", "-f", "-"], netns, input=script)
    if done.returncode != 0:
        raise NatError(f"nft refused composer's ruleset for table ip {table}",
                       stderr=done.stderr, rule=_failing_lines(script, done.stderr),
                       hint=_nft_hint(done.stderr))


def _iptables_listing(iptables: str, netns: Path | None) -> str | None:
    """``iptables -S`` of the filter table, or None (with a warning) when it cannot be read:
    composer's own table is in place by then, and a filter table iptables cannot read (one
    made by nft in a shape iptables does not know) is not composer's to mend."""
    done = _run([iptables, "-w", "-S"], netns)
    if done.returncode != 0:
        log.warning("cannot read the iptables filter table (%s); composer's traffic may be "
                    "dropped if its FORWARD policy is DROP", done.stderr.strip())
        return None
    return done.stdout


def _nft_forward_drops(netns: Path | None) -> bool:
    """Whether nft shows ``ip filter FORWARD`` with policy drop (what iptables-nft makes)."""
    done = _run(["nft", "-j", "list", "chain", "ip", "filter", "FORWARD"], netns)
    if done.returncode != 0:
        return False  # no such chain
    for item in _nft_items(done.stdout):
        chain = item.get("chain")
        if isinstance(chain, dict) and chain.get("policy") == "drop":
            return True
    return False


def _nft_items(output: str) -> list[dict[str, Any]]:
    try:
        items = json.loads(output).get("nftables", [])
    except (ValueError, AttributeError):
        return []
    return [item for item in items if isinstance(item, dict)]


def _run_all(commands: list[list[str]], netns: Path | None, what: str) -> None:
    for argv in commands:
        done = _run(argv, netns)
        if done.returncode != 0:
            raise NatError(f"iptables refused {what}", stderr=done.stderr,
                           rule=shlex.join(argv),
                           hint="composer adds these because the iptables FORWARD policy is "
                                "DROP; check `iptables -S` for what is in the way")


def _ensure_compat(table: str, networks: Sequence[BridgeNet], netns: Path | None) -> None:
    if shutil.which("iptables") is None:
        if _nft_forward_drops(netns):
            log.warning("the filter table's FORWARD policy is drop and iptables is not "
                        "installed, so composer cannot add its accept path there: forwarded "
                        "traffic of composer's networks will be dropped (apt install iptables)")
        return
    listing = _iptables_listing("iptables", netns)
    if listing is None:
        return
    now = _FilterTable.parse(listing)
    # Once made, the path is kept up to date even if the policy went back to ACCEPT: Docker
    # sets DROP again when it restarts, and composer would not hear about it.
    needed = (now.forward_policy == "DROP" or compat_chain(table) in now.chains
              or _nft_forward_drops(netns))
    if needed:
        _run_all(compat_commands(table, networks, listing), netns,
                 f"composer's FORWARD accept path for table {table}")


def _remove_compat(table: str, netns: Path | None) -> None:
    if shutil.which("iptables") is None:
        return  # nothing of ours can be there without the tool that made it
    listing = _iptables_listing("iptables", netns)
    if listing is not None:
        _run_all(compat_removal_commands(table, listing), netns,
                 f"the removal of composer's FORWARD accept path for table {table}")


def apply(table: str, networks: Sequence[BridgeNet], publications: Sequence[Publication],
          *, netns: Path | None = None) -> None:
    """Make table ``ip <table>`` what the networks and publications need, in one ``nft -f``
    transaction, inside the network namespace file ``netns`` when given (else the current
    one); then the iptables accept path when the FORWARD policy is DROP. Nothing to do
    removes both."""
    if not networks and not publications:
        remove(table, netns=netns)
        return
    _nft(ruleset(table, networks, publications), table, netns)
    _ensure_compat(table, networks, netns)


def remove(table: str, *, netns: Path | None = None) -> None:
    """Delete table ``ip <table>`` and its iptables accept path; what is missing already is
    success."""
    _remove_compat(table, netns)
    _nft(removal(table), table, netns)


def tables(prefix: str, *, netns: Path | None = None) -> list[str]:
    """The names of the ``ip`` tables that start with ``prefix``, sorted (teardown finds
    composer's tables by name, not by today's configuration)."""
    done = _run(["nft", "-j", "list", "tables", "ip"], netns)
    if done.returncode != 0:
        raise NatError("nft cannot list the ip tables", stderr=done.stderr,
                       hint=_nft_hint(done.stderr))
    names = set()
    for item in _nft_items(done.stdout):
        entry = item.get("table")
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            if entry.get("family") == "ip" and entry["name"].startswith(prefix):
                names.add(entry["name"])
    return sorted(names)
