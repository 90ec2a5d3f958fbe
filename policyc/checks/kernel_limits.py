"""P041 over-kernel-limit: a policy that `policyc build` would refuse for a size, reported by
`policyc check` at the rule, so check says what build would refuse (issue #13):

  * more of some kind of rule than the kernel object's fixed tables hold (policyc/ir/limits.py
    says which, policyc/abi.py how many): at the first rule past the limit;
  * path patterns whose automaton needs more than the cap on states (policyc/ir/dfa.py
    MAX_STATES): at the rule (or subject) whose own automaton is the largest. The check
    builds the policy's automaton, and `build` reuses it (`policy_dfa` builds it once per
    policy object), so building costs it once, not twice.

Anti-pattern:   65 `deny signal ... to exe "/usr/bin/aN"` rules in one policy;
                `deny file read "/**/x*/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*"`.
Best practice:  one rule with one glob: `deny signal kill to exe "/usr/bin/{a1,a2,...}"`;
                anchored patterns: `deny file read "/home/*/.ssh/**"`.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from ..diagnostics import Diagnostics
from ..ir.dfa import TOO_LARGE_HINT, DfaTooLarge, policy_dfa, too_large_message
from ..ir.limits import over_limits
from ..ir.model import Program

# Whether the automaton is built (and its cap reported). The language server turns it off
# (policyc/lsp/analysis.py): it runs the checks on every change, and a large or exploding
# policy's automaton takes seconds; `policyc check` and `build` always build it.
AUTOMATON: ContextVar[bool] = ContextVar("policyc_check_automaton", default=True)


@contextmanager
def without_automaton():
    """The checks without the automaton's cap (P041 for it): what the language server runs."""
    token = AUTOMATON.set(False)
    try:
        yield
    finally:
        AUTOMATON.reset(token)


def run(program: Program, diags: Diagnostics) -> None:
    for policy in program.policies:
        for over in over_limits(policy):
            diags.error("P041", over.rule.span, over.message, hints=(over.hint,))
        if not AUTOMATON.get():
            continue
        try:
            policy_dfa(policy)
        except DfaTooLarge as e:
            diags.error("P041", e.span or policy.span, too_large_message(policy, e, at_rule=e.span is not None),
                        hints=(TOO_LARGE_HINT,))
