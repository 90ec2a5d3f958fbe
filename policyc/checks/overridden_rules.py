"""W103 overridden-rule: a rule, or one path of it, that can never decide, because more
severe rules match everything it matches (deny beats audit beats allow).

Anti-pattern:   deny file write "/etc/**"   ...   allow file write "/etc/motd"
                (the allow looks like an exception; it is not: the deny wins)
Best practice:  narrow the deny (`deny file write "/etc/{passwd,shadow,sudoers}"`), or drop
                the allow.
"""

from __future__ import annotations

from ..diagnostics import Diagnostics, Note
from ..ir.model import Program
from ._coverage import covered


def run(program: Program, diags: Diagnostics) -> None:
    seen: set = set()
    for policy in program.policies:
        for c in covered(policy):
            if not c.overridden:
                continue
            span = c.item.span if c.item is not None else c.rule.span
            if span in seen:
                continue
            seen.add(span)
            subject = f"path `{c.item.text}` of this rule" if c.item is not None else f"rule `{c.rule.text}`"
            winners = sorted({a.decision for a in c.by})
            notes = tuple(Note(a.span, f"`{a.decision}` wins here: `{a.text}`" + _added(a)) for a in c.by[:3])
            diags.warning(
                "W103", span,
                f"{subject} never takes effect: `{'`/`'.join(winners)}` rules match everything it matches",
                hints=(f"{' and '.join(winners)} beat{'s' if len(winners) == 1 else ''} {c.rule.decision}: "
                       "narrow the other rule or remove this one",),
                notes=notes,
            )


def _added(r) -> str:
    return f", which `protect {r.protect}` adds" if r.protect else ""
