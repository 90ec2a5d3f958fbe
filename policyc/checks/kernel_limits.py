"""P041 over-kernel-limit: a policy with more of some kind of rule than the kernel object's
fixed tables hold (policyc/ir/limits.py says which, policyc/abi.py how many). Reported at the
first rule past the limit, so `policyc check` says what `policyc build` would refuse.

Anti-pattern:   65 `deny signal ... to exe "/usr/bin/aN"` rules in one policy.
Best practice:  one rule with one glob: `deny signal kill to exe "/usr/bin/{a1,a2,...}"`.
"""

from __future__ import annotations

from ..diagnostics import Diagnostics
from ..ir.limits import over_limits
from ..ir.model import Program


def run(program: Program, diags: Diagnostics) -> None:
    for policy in program.policies:
        for over in over_limits(policy):
            diags.error("P041", over.rule.span, over.message, hints=(over.hint,))
