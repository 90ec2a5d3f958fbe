"""The syntax tree: what the file says, as written (strings uninterpolated, includes
unresolved). `policyc fmt` prints it back; `policyc/lower` resolves it into the model."""

from __future__ import annotations

from dataclasses import dataclass

from ..span import Span


@dataclass(frozen=True)
class Str:
    """A string literal: `value` is unescaped, `span` covers the quotes."""

    value: str
    raw: str
    span: Span


@dataclass(frozen=True)
class Name:
    value: str
    span: Span


@dataclass(frozen=True)
class Include:
    path: Str
    span: Span
    optional: bool = False   # `include?`: a PATH that does not exist is skipped


@dataclass(frozen=True)
class Let:
    name: Name
    value: Str
    span: Span


@dataclass(frozen=True)
class SubjectSpec:
    kind: str  # exe | cgroup | all
    value: Str | None
    span: Span


@dataclass(frozen=True)
class Subject:
    specs: tuple[SubjectSpec, ...]
    span: Span
    exceptions: tuple[SubjectSpec, ...] = ()   # `except exe "..."`, `except cgroup "..."`


@dataclass(frozen=True)
class Limit:
    text: str   # as written: `100/s`
    span: Span


@dataclass(frozen=True)
class Setting:
    """`mode X`, `default X [limit N/UNIT]`, `acknowledge X`, `protect X`."""

    key: str
    value: Name
    span: Span
    limit: Limit | None = None   # `default` only


@dataclass(frozen=True)
class Use:
    name: Name
    span: Span


@dataclass(frozen=True)
class NetSpec:
    proto: Name | None
    addrs: tuple[Name, ...]
    ports: tuple[Name, ...]
    span: Span


@dataclass(frozen=True)
class Target:
    # exe | cgroup (`to ...`); from_exe | from_cgroup | from (`from NAME`: the NAME, which
    # must be `all`, is `value`, as the grammar gives it: its raw text is the word)
    kind: str
    value: Str
    span: Span

    @property
    def direction(self) -> str:
        """`to` (the policy's process sends or traces) or `from` (it receives)."""
        return "from" if self.kind.startswith("from") else "to"

    @property
    def who(self) -> str:
        """exe | cgroup | all (the word after `from`, checked to be `all` when lowered)."""
        return self.kind.removeprefix("from_") if self.kind != "from" else "all"


@dataclass(frozen=True)
class RuleBody:
    family: Name
    ops: tuple[Name, ...]
    paths: tuple[Str, ...]
    net: NetSpec | None
    target: Target | None
    # `owner` before the paths: where it is written; None when it is not
    owner: Span | None = None


@dataclass(frozen=True)
class Transition:
    kind: str            # policy | unconfined
    policy: Name | None  # kind policy: the policy the program runs under
    span: Span


@dataclass(frozen=True)
class Rule:
    decision: Name
    body: RuleBody
    span: Span
    limit: Limit | None = None
    transition: Transition | None = None


@dataclass(frozen=True)
class Policy:
    name: Name
    items: tuple  # Subject | Setting | Let | Rule | Use
    span: Span


@dataclass(frozen=True)
class Ruleset:
    name: Name
    items: tuple  # Rule | Use | Let | Setting (`protect`: an error, a policy's only)
    span: Span


@dataclass(frozen=True)
class TestContext:
    key: str  # exe | parent | cgroup
    value: Str
    span: Span


@dataclass(frozen=True)
class Expect:
    decision: Name
    body: RuleBody
    span: Span


@dataclass(frozen=True)
class TestBlock:
    policy: Name
    items: tuple  # TestContext | Expect
    span: Span


@dataclass(frozen=True)
class Comment:
    text: str
    span: Span


@dataclass(frozen=True)
class File:
    path: str
    items: tuple  # Include | Let | Policy | Ruleset | TestBlock
    comments: tuple[Comment, ...]
    source: str
