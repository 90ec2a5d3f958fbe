"""What the kernel object can hold of one policy: the fixed-size tables its C declares
(policyc/abi.py holds the sizes). One place for both sides: `policyc check` reports the rule
that goes past a limit (P041, policyc/checks/kernel_limits.py) and `policyc build` refuses the
same policy with the same words (policyc/codegen), so a policy that checks clean builds.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import abi
from .model import Policy, Rule


def target_rules(policy: Policy) -> list[Rule]:
    """Signal and ptrace rules with a `to exe` or `from exe` target: bit i of a verdict's
    `targets` mask. Both directions share the bits: the kernel walks the other process's
    executable (the target's for a `to`, the sender's for a `from`) through the same automaton,
    and each rule tests its own bit."""
    return [r for r in policy.rules if r.family in ("signal", "ptrace") and r.target is not None
            and r.target.kind == "exe"]


def receive_rules(policy: Policy, family: str | None = None) -> list[Rule]:
    """Receive-side signal and ptrace rules (`from ...`), of `family` when given."""
    return [r for r in task_rules(policy) if r.receive and (family is None or r.family == family)]


def task_rules(policy: Policy) -> list[Rule]:
    """Signal and ptrace rules: one task_rules entry each."""
    return [r for r in policy.rules if r.family in ("signal", "ptrace")]


def limited_rules(policy: Policy) -> list[Rule]:
    """Rules with a `limit` that send events (deny and audit rules)."""
    return [r for r in policy.rules if r.limit is not None and r.decision != "allow"]


@dataclass(frozen=True)
class OverLimit:
    rule: Rule          # the first rule past the limit
    message: str
    hint: str


def over_limits(policy: Policy) -> list[OverLimit]:
    out = []
    for rules, limit, what, hint in (
            (target_rules(policy), abi.MAX_TARGET_PATTERNS, "signal/ptrace rules with `to exe` targets (or `from exe`)",
             'merge targets into one glob: `to exe "/usr/sbin/{a,b}"`'),
            (task_rules(policy), abi.MAX_TASK_RULES, "signal/ptrace rules",
             "merge rules with the same decision and target: `deny signal kill, term ...`"),
            (limited_rules(policy), abi.RULE_SUPPRESSED_MAX, "rules with a `limit`",
             "the kernel counts suppressed events per rule in a table of that size: "
             "put one `limit` on the `default` instead")):
        if len(rules) > limit:
            out.append(OverLimit(rules[limit], f"policy `{policy.name}` has more than {limit:,} {what} "
                                 f"(the kernel object holds {limit:,}); this is number {limit + 1:,}", hint))
    return out
