"""W107 redundant-allow: an `allow` rule in a policy whose default is `allow`.

Anti-pattern:   default allow   ...   allow file read "/etc/hosts"
Best practice:  under `default allow` only `deny` and `audit` rules change anything; an allow
                rule there is either dead weight or a sign that `default deny` was meant.

Rules spliced from a ruleset are not reported (shared rulesets are written for `default deny`
policies).
"""

from __future__ import annotations

from ..diagnostics import Diagnostics, Note
from ..ir.model import Program


def run(program: Program, diags: Diagnostics) -> None:
    for policy in program.policies:
        if policy.default != "allow":
            continue
        for r in policy.rules:
            if r.decision != "allow" or r.used_from or r.transition is not None:
                continue   # an `as` rule changes what the program runs under
            notes = (Note(policy.default_span, "the default is set here"),) if policy.default_span else ()
            diags.warning("W107", r.span, f"`allow` rule in policy `{policy.name}`, whose default is `allow`: "
                          "it changes no decision",
                          hints=("remove it, or write `default deny` if only the allowed should be allowed",),
                          notes=notes)
