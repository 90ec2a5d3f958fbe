"""The resolved model: what the kernel side and the reference evaluator consume.

Includes are resolved, `${vars}` interpolated, globs parsed into a structure, ops expanded,
every rule numbered (stable id, 1-based, per policy) and spanned.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Union

from ..span import Span


# --- globs -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class Star:
    """`*`: any run of characters other than `/`, possibly empty."""


@dataclass(frozen=True)
class DoubleStar:
    """`**`: any run of characters, `/` included, possibly empty."""


@dataclass(frozen=True)
class AnyChar:
    """`?`: exactly one character other than `/`."""


@dataclass(frozen=True)
class Alt:
    """`{a,b}`: one of the alternatives, each itself a sequence of parts."""

    options: tuple[tuple["GlobPart", ...], ...]


GlobPart = Union[Lit, Star, DoubleStar, AnyChar, Alt]


@dataclass(frozen=True)
class Glob:
    text: str                       # after interpolation, as the user sees it
    parts: tuple[GlobPart, ...]
    span: Span

    @property
    def is_literal(self) -> bool:
        return all(isinstance(p, Lit) for p in self.parts)


# --- network ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class NetSpec:
    proto: str                                  # any | tcp | udp | icmp | raw | packet
    nets: tuple[ipaddress.IPv6Network, ...]     # IPv4 as ::ffff:0:0/96 mapped; () = any
    ports: tuple[tuple[int, int], ...]          # inclusive ranges; () = any
    span: Span


def to_v6_network(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> ipaddress.IPv6Network:
    """IPv4 networks live inside ::ffff:0:0/96, so one trie holds both families."""
    if isinstance(net, ipaddress.IPv4Network):
        base = int(ipaddress.IPv6Address("::ffff:0:0")) | int(net.network_address)
        return ipaddress.IPv6Network((base, 96 + net.prefixlen))
    return net


def to_v6_address(addr: str) -> ipaddress.IPv6Address:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(int(ipaddress.IPv6Address("::ffff:0:0")) | int(ip))
    return ip


# --- rules and policies ----------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    kind: str                 # exe | cgroup | all (`from all` only)
    exe: Glob | None
    cgroup: str | None
    span: Span
    # `to`: the other process is the one signalled or traced (the policy's process acts);
    # `from`: a receive-side rule, the other process is the sender or tracer and the
    # policy's process the one signalled or traced
    direction: str = "to"


@dataclass(frozen=True)
class Transition:
    """`as policy NAME` / `as unconfined` on an `allow exec` rule: what the exec makes of the
    task from its commit on (policyc/abi.py TRANSITION_*)."""
    kind: str                 # policy | unconfined
    policy: str | None        # kind policy: the policy's name
    span: Span


@dataclass(frozen=True)
class RateLimit:
    """`limit N/UNIT`: at most `count` events per `window_s` seconds from one rule."""
    count: int
    window_s: int
    text: str                 # as written, `100/s`
    span: Span


@dataclass(frozen=True)
class Rule:
    id: int
    decision: str             # allow | deny | audit
    family: str
    ops: tuple[str, ...]      # expanded: never empty for families that have ops
    paths: tuple[Glob, ...]   # () = any path (or the family has no paths)
    net: NetSpec | None
    target: Target | None
    span: Span
    text: str                 # the rule's source text, for messages and the manifest
    all_ops: bool = False     # written without ops: the whole family
    used_from: tuple[Span, ...] = ()   # `use` statements that spliced this rule in
    limit: RateLimit | None = None     # events only: never changes the decision
    # `protect NAME` added this rule (NAME: `policyc`); its span is the statement's, its
    # text the rule's canonical text (policyc/lower/protect.py)
    protect: str | None = None
    transition: Transition | None = None   # `allow exec ... as policy NAME | as unconfined`
    # `owner`: the rule speaks only for files whose owner (the inode's uid) is the process's
    # fsuid; a file being created counts as the creator's (docs/language.md, "owner")
    owner: bool = False

    @property
    def receive(self) -> bool:
        """A receive-side rule (`from ...`): decided when the policy's process is signalled or
        traced, whoever sends; never when it acts."""
        return self.target is not None and self.target.direction == "from"


@dataclass(frozen=True)
class Subject:
    kind: str                 # exe | cgroup | all
    exe: Glob | None
    cgroup: str | None
    span: Span


@dataclass(frozen=True)
class Policy:
    name: str
    subjects: tuple[Subject, ...]
    mode: str
    default: str
    rules: tuple[Rule, ...]
    span: Span
    mode_span: Span | None = None
    default_span: Span | None = None
    acknowledged: frozenset[str] = frozenset()
    # `subject ... except exe|cgroup ...`: processes this policy does not govern, whatever
    # their subjects say. Kind `exe` matches the process's own executable only (not its
    # ancestors'): the children of an excepted process are governed again.
    exceptions: tuple[Subject, ...] = ()
    acknowledge_span: Span | None = None
    # `default deny limit N/UNIT`: events of the default decision (not of failed-closed ones)
    default_limit: RateLimit | None = None
    # `protect policyc`: the statement (its rules are in `rules`, after the written ones)
    protect_span: Span | None = None

    @property
    def file(self) -> str:
        return self.span.file


# --- events and tests ------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    """One thing a process tries to do. `op` is `FAMILY` or `FAMILY.OP` (`file.read`,
    `exec`, `net.connect`, `capability`, `signal`, `ptrace`, `mount`, `module.load`, `bpf`)."""

    exe: str
    op: str
    path: str | None = None
    addr: str | None = None
    port: int | None = None
    proto: str | None = None
    cap: str | None = None
    signal: str | None = None
    target_exe: str | None = None
    target_cgroup: str | None = None
    cgroup: str | None = None
    ancestors: tuple[str, ...] = ()   # executables of the ancestors, nearest first
    # file events: the process's fsuid owns the file (a test's `expect ... owner "PATH"`);
    # a create is always the creator's own, whatever this says
    owner: bool = False
    # A received signal or ptrace: `exe` (with `ancestors`, `cgroup`) is the process signalled
    # or traced, the one a policy governs; `source_exe`/`source_cgroup` the sender or tracer
    # (None: unknown, such as a sender without an executable). `target_*` stay None.
    received: bool = False
    source_exe: str | None = None
    source_cgroup: str | None = None

    @property
    def family(self) -> str:
        return self.op.split(".", 1)[0]

    @property
    def sub_op(self) -> str | None:
        parts = self.op.split(".", 1)
        return parts[1] if len(parts) == 2 else None


@dataclass(frozen=True)
class Expectation:
    decision: str
    event: Event
    span: Span
    text: str


@dataclass(frozen=True)
class TestCase:
    policy: str
    expectations: tuple[Expectation, ...]
    span: Span


@dataclass(frozen=True)
class Program:
    policies: tuple[Policy, ...]
    tests: tuple[TestCase, ...] = ()
    files: tuple[str, ...] = ()
    sources: dict = field(default_factory=dict, compare=False, hash=False)

    def policy(self, name: str) -> Policy | None:
        return next((p for p in self.policies if p.name == name), None)
