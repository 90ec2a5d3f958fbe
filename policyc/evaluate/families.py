"""The evaluator's registry of rule families: which events a rule of each family speaks for,
by operation (paths, addresses and targets are matched the same way for every family, in
policyc/evaluate/__init__.py).

One entry per family of policyc/ir/vocab.py FAMILIES; tests/unit/test_family_registries.py
fails when a layer forgets one. A new op in an existing family needs no change here when the
event names it as `FAMILY.OP` and the rule lists it in its ops.
"""

from __future__ import annotations

from typing import Callable

from ..ir.model import Event, Rule

OpMatcher = Callable[[Rule, Event], bool]


def _sub_op_listed(rule: Rule, event: Event) -> bool:
    return event.family == rule.family and event.sub_op in rule.ops


def _file(rule: Rule, event: Event) -> bool:
    # `write` covers `append`: an append is a write that cannot clobber
    return event.family == "file" and (event.sub_op in rule.ops
                                       or (event.sub_op == "append" and "write" in rule.ops))


def _exec(rule: Rule, event: Event) -> bool:
    # an exec rule also decides mapping that file executable (`ld.so /usr/bin/x`)
    return event.family == "exec" or event.op == "file.exec-map"


def _capability(rule: Rule, event: Event) -> bool:
    return event.family == "capability" and event.cap in rule.ops


def _signal(rule: Rule, event: Event) -> bool:
    return event.family == "signal" and event.signal in rule.ops


def _whole_family(rule: Rule, event: Event) -> bool:
    """Families without operations: any event of the family."""
    return event.family == rule.family


OP_MATCHERS: dict[str, OpMatcher] = {
    "file": _file,
    "exec": _exec,
    "net": _sub_op_listed,
    "mount": _whole_family,
    "capability": _capability,
    "signal": _signal,
    "ptrace": _whole_family,
    "module": _sub_op_listed,
    "bpf": _whole_family,
}
