"""W101 duplicate-rule: the same rule (decision, family, operations, objects) twice.

Anti-pattern:   allow file read "/etc/nginx/**"   ...   allow file read "/etc/nginx/**"
Best practice:  write each rule once; the second copy only hides where the rule really is.

The later copy is reported, with a note at the first. When one copy comes from a ruleset
(`use`), the copy written in the policy is reported; a ruleset used twice is reported once at
its second `use`. A rule `protect policyc` added is no copy: a written `deny bpf` beside it
says what the policy needs without it.
"""

from __future__ import annotations

from ..diagnostics import Diagnostics, Note
from ..ir.model import Program
from ._rules import Keys, from_ruleset


def run(program: Program, diags: Diagnostics) -> None:
    seen_spans: set = set()
    for policy in program.policies:
        first: dict = {}
        keys = Keys.of(policy).rules
        for r in policy.rules:
            if r.protect:
                continue
            k = keys[r.id]
            a = first.get(k)
            if a is None:
                first[k] = r
                continue
            if a.span == r.span:
                # The same source rule spliced twice: the ruleset is used twice.
                span = r.used_from[0] if r.used_from else r.span
                key = ("use", span)
                if key not in seen_spans:
                    seen_spans.add(key)
                    prev = a.used_from[0] if a.used_from else a.span
                    diags.warning("W101", span, "this `use` brings rules the policy already has",
                                  hints=("a ruleset used twice (directly or through another ruleset) adds nothing",),
                                  notes=(Note(prev, "the same rules come in here"),))
                continue
            later, earlier = r, a
            if from_ruleset(r) and not from_ruleset(a):
                later, earlier = a, r
            key = (later.span, earlier.span)
            if key in seen_spans:
                continue
            seen_spans.add(key)
            notes = [Note(earlier.span, "first written here")]
            if from_ruleset(earlier):
                notes.append(Note(earlier.used_from[0], "brought in by this `use`"))
            diags.warning("W101", later.span, f"duplicate rule: `{later.text}` is already in policy `{policy.name}`",
                          hints=("remove one of them",), notes=tuple(notes))
