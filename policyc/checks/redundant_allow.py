"""W107 redundant-allow: an `allow` rule in a policy whose default is `allow`; or a receive-side
`allow ... from` rule with no `deny`/`audit ... from all` of its family, which the receive side
would allow anyway (no default applies there).

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
        for r in policy.rules:
            if r.decision != "allow" or r.used_from or r.transition is not None:
                continue   # an `as` rule changes what the program runs under
            if r.receive:
                _receive_allow(policy, r, diags)
                continue
            if policy.default != "allow":
                continue
            notes = (Note(policy.default_span, "the default is set here"),) if policy.default_span else ()
            diags.warning("W107", r.span, f"`allow` rule in policy `{policy.name}`, whose default is `allow`: "
                          "it changes no decision",
                          hints=("remove it, or write `default deny` if only the allowed should be allowed",),
                          notes=notes)


def _receive_allow(policy, r, diags: Diagnostics) -> None:
    """A receive-side `allow` (`from ...`) changes a decision only where a `deny` or `audit
    ... from all` of the same family and some of its signals would otherwise decide: no
    default applies to the receive side, whatever the policy's (docs/language.md)."""
    closing = [a for a in policy.rules if a.family == r.family and a.receive and a.target.kind == "all"
               and a.decision != "allow" and (not r.ops or set(a.ops) & set(r.ops))]
    if closing or r.target.kind == "all":
        return
    diags.warning("W107", r.span, f"receive-side `allow` rule in policy `{policy.name}` with no `deny` or "
                  f"`audit {r.family} ... from all`: it changes no decision (the receive side allows what "
                  "no rule denies; the policy's default is for what its processes do)",
                  hints=(f"add `deny {r.family} from all` if only the allowed senders should be allowed",))
