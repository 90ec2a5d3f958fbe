"""W106 contradictory-rules: two decisions for the same operation on the same objects.

Anti-pattern:   allow file read "/etc/shadow"   ...   deny file read "/etc/shadow"
Best practice:  keep the one you mean. Deny beats audit beats allow whatever the order, so
                the milder rule never takes effect; the reader of the policy may think it does.

Reported on the milder (losing) rule, with a note at the winner; when exactly one of the two
comes from a ruleset, on the one written in the policy; never on the `protect policyc`
statement (the user's `allow` is what to change).
"""

from __future__ import annotations

from collections import defaultdict

from ..diagnostics import Diagnostics, Note
from ..ir.model import Program
from ._rules import RANK, Keys, from_ruleset, what


def run(program: Program, diags: Diagnostics) -> None:
    seen: set = set()
    for policy in program.policies:
        groups = defaultdict(list)
        keys = Keys.of(policy).objects
        for r in policy.rules:
            groups[keys[r.id]].append(r)
        for rules in groups.values():
            if len(rules) < 2 or len({r.decision for r in rules}) < 2:
                continue
            for i, a in enumerate(rules):
                for b in rules[i + 1:]:
                    if a.decision == b.decision:
                        continue
                    common = tuple(op for op in a.ops if op in b.ops) if a.ops else ()
                    if a.ops and not common:
                        continue
                    winner, loser = (a, b) if RANK[a.decision] > RANK[b.decision] else (b, a)
                    at, other = loser, winner
                    if from_ruleset(loser) and not from_ruleset(winner) and not winner.protect:
                        at, other = winner, loser
                    key = (at.span, other.span)
                    if key in seen:
                        continue
                    seen.add(key)
                    ops_text = what(a, common) if a.ops else a.family
                    diags.warning(
                        "W106", at.span,
                        f"contradictory rules: `{loser.decision}` and `{winner.decision}` of `{ops_text}` "
                        f"on the same objects; `{winner.decision}` wins",
                        hints=(f"{winner.decision} beats {loser.decision} whatever the order: "
                               f"remove the rule you do not mean",),
                        notes=(Note(other.span, f"the other rule: `{other.text}`" +
                                    (f", which `protect {other.protect}` adds" if other.protect else "")),),
                    )
