"""W108 subject-matches-everything: an `exe` subject whose pattern matches every program.

Anti-pattern:   subject exe "/**"
Best practice:  write `subject all`: it says the same, and the host-wide checks (P030)
                treat both alike anyway.
"""

from __future__ import annotations

from ..diagnostics import Diagnostics
from ..ir.model import Program
from ._globs import matches_everything


def run(program: Program, diags: Diagnostics) -> None:
    for policy in program.policies:
        for s in policy.subjects:
            if s.kind == "exe" and matches_everything(s.exe):
                diags.warning("W108", s.span, f"`{s.exe.text}` matches every program",
                              hints=("write `subject all`",))
