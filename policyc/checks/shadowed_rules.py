"""W102 shadowed-rule: a rule, or one path of it, already covered by a broader rule of the
same decision (or by several rules together, one per operation).

Anti-pattern:   allow file read "/srv/**"   ...   allow file read "/srv/www/index.html"
Best practice:  drop the narrow rule (or path); it changes no decision, and the next reader
                wonders which one applies.

Glob inclusion is decided exactly (policyc/checks/_globs.py); when unsure, nothing is said.
"""

from __future__ import annotations

from ..diagnostics import Diagnostics, Note
from ..ir.model import Program
from ._coverage import covered


def run(program: Program, diags: Diagnostics) -> None:
    seen: set = set()
    for policy in program.policies:
        for c in covered(policy):
            if c.overridden or c.rule.transition is not None:
                continue   # an `as` rule is never dead weight: W114 says when another decides
            span = c.item.span if c.item is not None else c.rule.span
            if span in seen:
                continue
            seen.add(span)
            subject = f"path `{c.item.text}`" if c.item is not None else f"rule `{c.rule.text}`"
            notes = tuple(Note(a.span, f"covered by `{a.text}`") for a in c.by[:3])
            diags.warning("W102", span, f"{subject} is shadowed: broader rules already decide all it matches",
                          hints=("remove it; it changes no decision",), notes=notes)
