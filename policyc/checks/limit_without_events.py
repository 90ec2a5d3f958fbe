"""W110 limit-without-events: a `limit` on an `allow` rule.

Anti-pattern:   allow file read "/srv/www/**" limit 100/s
Best practice:  only `deny` and `audit` rules send events (an allowed operation is not logged),
                so a limit on an `allow` rule limits nothing. Put the limit on the rule whose
                events flood the log.
"""

from __future__ import annotations

from ..diagnostics import Diagnostics
from ..ir.model import Program


def run(program: Program, diags: Diagnostics) -> None:
    for policy in program.policies:
        lim = policy.default_limit
        if lim is not None and policy.default == "allow":
            diags.warning("W110", lim.span, f"`limit {lim.text}` on `default allow`: allowed operations send no "
                          "events, so it limits nothing",
                          hints=("remove the limit, or put it on `default deny`",))
        for r in policy.rules:
            if r.limit is None or r.decision != "allow":
                continue
            diags.warning("W110", r.limit.span, f"`limit {r.limit.text}` on an `allow` rule: allowed operations "
                          "send no events, so it limits nothing",
                          hints=("remove the limit, or move it to the `deny` or `audit` rule whose events you "
                                 "want to limit",))
