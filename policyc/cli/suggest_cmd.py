"""`policyc suggest FILE... [--policy NAME]`: `allow` rules, as a `.policy` ruleset, that would
have allowed what a policy's default denied (or would have denied, in audit mode) in the logs.
Malformed input: an error naming the file and line, exit 2."""

from __future__ import annotations

import sys
from typing import List, Optional, TextIO

import typer

from .common import EXIT_BAD_INPUT, EXIT_OK, guarded


def run_suggest(paths: list[str], policy: str | None, out: TextIO, err: TextIO) -> int:
    from ..audit.logfile import LogError, read_records
    from ..audit.suggest import SuggestError, suggest

    if not paths:
        err.write("policyc: error: name at least one audit log (`policyc audit --output FILE` writes one)\n")
        return EXIT_BAD_INPUT
    try:
        text = suggest(read_records(paths), policy)
    except (LogError, SuggestError) as e:
        err.write(f"policyc: error: {e}\n")
        return EXIT_BAD_INPUT
    out.write(text)
    return EXIT_OK


def command(
    paths: Optional[List[str]] = typer.Argument(None, metavar="FILE...", help="audit logs (JSON lines)"),
    policy: Optional[str] = typer.Option(None, "--policy", metavar="NAME", help="only this policy's events"),
) -> None:
    """Propose allow rules from audit-mode and deny events of audit logs."""
    guarded(run_suggest, list(paths or []), policy, out=sys.stdout, err=sys.stderr)
