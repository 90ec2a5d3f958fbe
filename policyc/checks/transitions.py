"""Exec transitions (`allow exec "/usr/bin/x" as policy NAME | as unconfined`).

W113 transition-to-unknown-policy: `as policy NAME` where the program checked has no policy
NAME. It may be loaded from another build; if it is not loaded when the program runs, the
exec is denied (it fails closed, `transition-unloaded` in the audit record).

W114 transition-overtaken: for some program an `as` rule names, an earlier rule of the same
decision wins (source order breaks ties), and it says another transition or none: the exec
happens, but not the way this rule says.

Anti-pattern:   allow exec "/usr/bin/*"
                allow exec "/usr/bin/backup" as policy backup
Best practice:  the specific rule first, or the broad one narrowed.
"""

from __future__ import annotations

from ..diagnostics import Diagnostics, Note
from ..evaluate import glob_matches
from ..ir.model import Program
from ._globs import includes, sample_path


def run(program: Program, diags: Diagnostics) -> None:
    names = {p.name for p in program.policies}
    for policy in program.policies:
        exec_rules = [r for r in policy.rules if r.family == "exec" and r.decision != "deny"]
        for r in exec_rules:
            t = r.transition
            if t is None:
                continue
            if t.kind == "policy" and t.policy not in names:
                diags.warning("W113", t.span,
                              f"no policy `{t.policy}` in what is checked: the exec is denied unless a policy "
                              f"of that name is loaded when it runs",
                              hints=(f"check and load the file that defines `policy {t.policy}` with this one",))
            for g in r.paths:
                sample = sample_path(g.parts).decode("utf-8", "replace")
                winner = next((e for e in exec_rules
                               if e.id < r.id and e.decision == r.decision and e.transition != t
                               and any(includes(eg, g) or glob_matches(eg, sample) for eg in e.paths or ())),
                              None)
                if winner is None:
                    continue
                says = ("no transition" if winner.transition is None else
                        f"`as policy {winner.transition.policy}`" if winner.transition.kind == "policy"
                        else "`as unconfined`")
                diags.warning("W114", g.span,
                              f"an earlier rule decides the exec of `{g.text}`, with {says}: this rule's "
                              "transition does not happen for it",
                              hints=("put this rule above the broader one (the first of equal rules wins)",),
                              notes=(Note(winner.span, f"decided by `{winner.text}`"),))
                break
