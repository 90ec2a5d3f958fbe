"""The reference evaluator: the specification the kernel programs are held against.

Plain and total: any Program, any Event, no speed tricks. docs/semantics.md says the same
in words. It imports the IR only (the model and policyc/ir/glob.py's automaton; never
the parser, never policyc.checks).

    decide(program_or_policies, event) -> Decision(action, policy, rule, by)
"""

from __future__ import annotations

from .. import abi
import ipaddress
from dataclasses import dataclass

from ..ir.glob import matcher, path_bytes
from ..ir.model import Event, Glob, Policy, Program, Rule, to_v6_address
from .families import OP_MATCHERS

_RANK = abi.DECISION.index   # a decision's ABI value is its precedence (deny > audit > allow)


@dataclass(frozen=True)
class Decision:
    action: str               # allow | deny | audit
    policy: Policy | None     # the policy that decided; None: no policy governs the process
    rule: Rule | None         # the rule that decided; None: the policy's default (or ungoverned)
    # rule | default | ungoverned | protect | anonymous-exec | no-receive-rule (a received
    # signal or ptrace no `from` rule speaks for: allowed, whatever the default)
    by: str

    def to_dict(self) -> dict:
        """The decision as JSON (`explain --json`, `test --format json`). Each place is a
        `file:line:col` string (`rule`, `default_location`: kept so, scripts read them) and,
        beside it, an object `{"file", "line", "col"}`: `rule_location`, and `location`, the
        place that decided (the rule, else the policy's `default` line; null when no line
        did: ungoverned, an implicit default)."""
        default = None
        if self.by == "default" and self.policy is not None and self.policy.default_span is not None:
            default = self.policy.default_span
        deciding = self.rule.span if self.rule else default
        return {
            "decision": self.action,
            "policy": self.policy.name if self.policy else None,
            "rule": str(self.rule.span) if self.rule else None,
            "rule_id": self.rule.id if self.rule else None,
            "rule_text": self.rule.text if self.rule else None,
            "by": self.by,
            "default_location": str(default) if default is not None else None,
            "mode": self.policy.mode if self.policy else None,
            "rule_location": location(self.rule.span if self.rule else None),
            "location": location(deciding),
            # an allowed exec by an `as` rule: what the program runs under from its commit on
            "transition": self.transition(),
        }

    def transition(self) -> dict | None:
        t = self.rule.transition if self.rule is not None and self.action != "deny" else None
        return {"kind": t.kind, "policy": t.policy} if t is not None else None


def location(span) -> dict | None:
    """A span as JSON's place object, `{"file", "line", "col"}` (1-based), or None."""
    return None if span is None else {"file": span.file, "line": span.line, "col": span.col}


def glob_matches(glob: Glob, text: str) -> bool:
    """The glob matches the path (policyc/ir/glob.py says what a glob means, in bytes: the
    kernel's DFA and the checks use the same automaton)."""
    return matcher(glob.parts).matches(path_bytes(text))


def _cgroup_within(cgroup: str | None, root: str) -> bool:
    if cgroup is None:
        return False
    cg = cgroup.rstrip("/") or "/"
    return root == "/" or cg == root or cg.startswith(root + "/")


def excepted(policy: Policy, event: Event) -> bool:
    """`except exe`: the process's own executable matches (ancestors do not count);
    `except cgroup`: the process runs in (or below) that cgroup."""
    for s in policy.exceptions:
        if s.kind == "exe" and glob_matches(s.exe, event.exe):
            return True
        if s.kind == "cgroup" and _cgroup_within(event.cgroup, s.cgroup):
            return True
    return False


def governs(policy: Policy, event: Event) -> bool:
    """A process is governed when its executable, or an ancestor's, matches an `exe` subject,
    when it runs in (or below) a `cgroup` subject, or always under `subject all`; unless it
    is excepted (`except ...`)."""
    if policy.exceptions and excepted(policy, event):
        return False
    for s in policy.subjects:
        if s.kind == "all":
            return True
        if s.kind == "exe" and any(glob_matches(s.exe, e) for e in (event.exe, *event.ancestors)):
            return True
        if s.kind == "cgroup" and _cgroup_within(event.cgroup, s.cgroup):
            return True
    return False


def rule_matches(rule: Rule, event: Event) -> bool:
    # which events the rule's family and ops speak for: the family's entry in the registry
    if not OP_MATCHERS[rule.family](rule, event):
        return False
    if rule.owner and not owns(event):
        return False   # an `owner` rule does not exist for a file the process does not own
    if rule.paths:
        if event.path is None or not any(glob_matches(g, event.path) for g in rule.paths):
            return False
    if rule.net is not None and not _net_matches(rule, event):
        return False
    # a receive-side rule (`from ...`) speaks for received events only, every other rule for
    # what the process does
    if rule.receive != event.received:
        return False
    if rule.target is not None:
        t = rule.target
        other_exe, other_cgroup = ((event.source_exe, event.source_cgroup) if event.received
                                   else (event.target_exe, event.target_cgroup))
        if t.kind == "exe":
            if other_exe is None or not glob_matches(t.exe, other_exe):
                return False
        elif t.kind == "cgroup" and not _cgroup_within(other_cgroup, t.cgroup):
            return False
    return True


def owns(event: Event) -> bool:
    """The process owns the file: the inode's uid is its fsuid (`event.owner`). A file being
    created has no owner yet and counts as the creator's, as in AppArmor: `create` (and the
    new name of a rename or link, a create too) is always owned. An abstract socket's name
    (`@...`) is no file: it has no owner."""
    if event.op == "file.create":
        return True
    return event.owner and not (event.path or "").startswith("@")


def receives_by_rules(policy: Policy, family: str) -> bool:
    """Whether the policy has receive-side rules of `family` (signal, ptrace)."""
    return any(r.family == family and r.receive for r in policy.rules)


def _as_traced(event: Event) -> Event:
    """A received ptrace as the policy's own ptrace of itself: how a policy without receive-side
    ptrace rules decides an attach to its process (its ptrace rules, the traced process as the
    target: `deny ptrace` keeps outsiders off too; docs/language.md)."""
    return Event(exe=event.exe, op=event.op, target_exe=event.exe, target_cgroup=event.cgroup,
                 cgroup=event.cgroup, ancestors=event.ancestors)


_UNSPECIFIED = (ipaddress.IPv6Address("::"), to_v6_address("0.0.0.0"))
_LOOPBACK_V6, _LOOPBACK_V4 = ipaddress.IPv6Address("::1"), to_v6_address("127.0.0.1")


def destination(addr: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """The address a connect or send reaches: the kernel rewrites the unspecified address to
    loopback after the LSM hook (`::` to `::1`; `0.0.0.0` and `::ffff:0.0.0.0` to 127.0.0.1,
    or to the socket's bound IPv4 source, which an event does not carry). docs/semantics.md.

    >>> str(destination(to_v6_address("0.0.0.0"))), str(destination(ipaddress.IPv6Address("::")))
    ('::ffff:7f00:1', '::1')
    """
    if addr == _UNSPECIFIED[0]:
        return _LOOPBACK_V6
    if addr == _UNSPECIFIED[1]:
        return _LOOPBACK_V4
    return addr


def _net_matches(rule: Rule, event: Event) -> bool:
    spec = rule.net
    if spec.proto != "any" and spec.proto != (event.proto or "tcp"):
        return False
    if spec.nets:
        if event.addr is None:
            return False
        try:
            addr = to_v6_address(event.addr)
        except ValueError:
            return False
        if event.sub_op == "connect":
            addr = destination(addr)
        if not any(addr in n for n in spec.nets):
            return False
    if spec.ports:
        if event.port is None or not any(lo <= event.port <= hi for lo, hi in spec.ports):
            return False
    return True


def protecting_rule(policy: Policy, path: str) -> Rule | None:
    """The first deny rule (file or exec) that covers `path` or anything below `path/`.
    Renaming or hard-linking such a path would carry it out from under its rule."""
    data = path_bytes(path)
    below = data + b"/"
    for rule in policy.rules:
        if rule.decision != "deny" or rule.family not in ("file", "exec"):
            continue
        globs = rule.paths or None
        if globs is None:
            return rule
        for g in globs:
            # covers the path itself, or some path below `path/` (every live state of the
            # glob's automaton can still reach a match)
            m = matcher(g.parts)
            if m.matches(data) or m.viable(below):
                return rule
    return None


def decides_exec_mapping(policy: Policy) -> bool:
    """Whether the policy says anything about which files' code may run in a process (an exec
    or exec-map rule that is not `allow`, or `default deny`). Only then is mapping a file with
    no path executable denied: a policy silent on executing code has no rule an anonymous
    mapping could get around, and JITs map memfds executable (docs/semantics.md step 3)."""
    return policy.default == "deny" or any(
        r.decision != "allow" and (r.family == "exec" or (r.family == "file" and "exec-map" in r.ops))
        for r in policy.rules)


def decide_policy(policy: Policy, event: Event) -> Decision:
    """One governing policy's decision: deny beats audit beats allow; first rule in source
    order within a decision; the default when nothing matches; audit mode turns deny into
    audit (logged, not denied). A received signal or ptrace: the `from` rules, `from all`
    only where no rule naming the sender matches, and no default (allowed)."""
    default = policy.default
    if event.received:
        if event.family == "ptrace" and not receives_by_rules(policy, "ptrace"):
            event = _as_traced(event)
        else:
            # the receive side: its rules, or nothing (the default is for what the policy's
            # process does, not for what is done to it)
            default = None
    best: Rule | None = None
    for rule in policy.rules:
        if rule_matches(rule, event) and (best is None or _RANK[rule.decision] > _RANK[best.decision]):
            best = rule
    if event.received and best is not None and best.target.kind == "all":
        # `from all` is the receive side's default, written as a rule: it decides only what no
        # rule naming the sender (`from exe`, `from cgroup`) matches
        named = [r for r in policy.rules if r.target is not None and r.target.kind != "all"
                 and rule_matches(r, event)]
        if named:
            best = max(named, key=lambda r: _RANK[r.decision])   # the first of the most severe
    if best is not None:
        action, by = best.decision, "rule"
    elif default is None:
        action, by = "allow", "no-receive-rule"
    else:
        action, by = default, "default"
    if (event.path is not None and not event.path.startswith("/")
            and (event.op == "exec" or (event.op == "file.exec-map" and decides_exec_mapping(policy)))):
        # a pseudo file (memfd, anonymous inode): no path rule can speak for it
        action, best, by = "deny", None, "anonymous-exec"
    elif (event.op in ("file.rename", "file.link") and action != "deny" and event.path is not None):
        guard = protecting_rule(policy, event.path)
        if guard is not None:
            action, best, by = "deny", guard, "protect"
    if policy.mode == "audit" and action == "deny":
        action = "audit"
    return Decision(action, policy, best, by)


def decide(policies: Program | tuple[Policy, ...] | list[Policy], event: Event) -> Decision:
    """The decision for `event` under every policy that governs its process: the most severe
    wins (deny, then audit, then allow); among equally severe decisions one made by a rule
    speaks before one made by a default (it says more), then the first policy (load order).

    A received signal or ptrace (`event.received`) is the receive side alone: the policies that
    govern the process signalled or traced (`event.exe`), by their `from` rules. A signal
    between two governed processes is decided on both sides, the sender's event first; the
    kernel denies when either side denies (docs/language.md, "Receive-side rules")."""
    if isinstance(policies, Program):
        policies = policies.policies
    result: Decision | None = None
    for p in policies:
        if not governs(p, event):
            continue
        d = decide_policy(p, event)
        if result is None or _RANK[d.action] > _RANK[result.action] or \
                (d.action == result.action and d.rule is not None and result.rule is None):
            result = d
    return result or Decision("allow", None, None, "ungoverned")


__all__ = ["Decision", "decide", "decide_policy", "governs", "excepted", "rule_matches", "glob_matches", "owns",
           "receives_by_rules"]
