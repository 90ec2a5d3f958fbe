"""`policyc check PATH... [--format text|json|sarif]`: parse, lower and run every check.

Silent on success in text format; exit 0 when clean or warnings only, 2 on errors. In json
and sarif formats the document goes to stdout (an empty list / no results when clean) and
nothing else does.
"""

from __future__ import annotations

from typing import List, Optional, TextIO

import typer

from ..diagnostics import Diagnostics
from ..report import FORMATS
from .common import EXIT_BAD_INPUT, EXIT_OK, guarded, load_and_check, print_diagnostics


def run_check(paths: list[str], fmt: str, out: TextIO, err: TextIO, kernel: str | None = None) -> int:
    if fmt not in FORMATS:
        err.write(f"policyc: unknown format `{fmt}` (one of {', '.join(FORMATS)})\n")
        return EXIT_BAD_INPUT
    diags = Diagnostics()
    program, ok = load_and_check(paths, diags, err, kernel)
    if not ok:
        return EXIT_BAD_INPUT
    print_diagnostics(diags, fmt, out, err, program)
    return EXIT_BAD_INPUT if diags.has_errors else EXIT_OK


def command(
    paths: List[str] = typer.Argument(..., metavar="PATH...", help="policy files or directories of them"),
    fmt: str = typer.Option("text", "--format", "-f", help="text, json or sarif"),
    kernel: Optional[str] = typer.Option(None, "--kernel", metavar="6.1|6.12|PATH",
                                         help="also check every rule against this kernel's hooks and helpers (its BTF)"),
) -> None:
    """Check policies: syntax, names, includes, and the checks in docs/diagnostics.md."""
    import sys

    guarded(run_check, paths, fmt, out=sys.stdout, err=sys.stderr, kernel=kernel)
