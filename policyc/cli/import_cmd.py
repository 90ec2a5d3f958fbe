"""`policyc import-apparmor PROFILE... [-o OUT] [--base DIR] [-v]`: AppArmor profiles to one
`.policy` file (policyc/importers/apparmor.py; docs/language.md, "From AppArmor").

What the conversion could not say is listed in the output (comments where each rule stood)
and counted on stderr: `converted X of Y rules; Z not expressible`. The output is formatted
(`policyc fmt`) and passed through `policyc check` before it is written: a check error is a
converter bug (exit 3), never written. A profile file that cannot be read or parsed is named
with `file:line:col` and the command exits 2; the other files are still converted and
written."""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from typing import List, Optional, TextIO

import typer

from ..fsutil import write_atomically
from .common import EXIT_BAD_INPUT, EXIT_BUG, EXIT_OK, guarded

TOP_REASONS = 10


def run_import(paths: list[str], output: str | None, base: str, verbose: bool,
               out: TextIO, err: TextIO) -> int:
    from ..diagnostics import Diagnostics, Severity
    from ..fmt import format_text
    from ..importers.apparmor import REASONS, import_apparmor
    from ..pipeline import front_end
    from .common import print_diagnostics

    if not paths:
        err.write("policyc: error: name at least one AppArmor profile (a file, or a directory of them)\n")
        return EXIT_BAD_INPUT
    result = import_apparmor(paths, base)
    for f in result.files:
        if f.error:
            err.write(f"policyc: error: {f.error}\n")
    profiles = [p for f in result.files for p in f.profiles]
    if not profiles:
        if all(f.error is None for f in result.files):
            err.write("policyc: error: no AppArmor profile in the given files\n")
        return EXIT_BAD_INPUT

    with tempfile.TemporaryDirectory(prefix="policyc-import-") as tmp:
        path = os.path.join(tmp, "imported.policy")
        fdiags = Diagnostics()
        text = format_text(path, result.text, fdiags)
        if text is None:
            err.write("policyc: error: internal error: the converted policy does not parse (a policyc bug):\n")
            print_diagnostics(fdiags, "text", err, err)
            return EXIT_BUG
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        front = front_end([path], Diagnostics(), checks=True)
        if front.diags.has_errors:
            err.write("policyc: error: internal error: the converted policy does not pass `policyc check` "
                      "(a policyc bug; please report it with the profiles):\n")
            print_diagnostics(front.diags, "text", err, err, front.program)
            return EXIT_BUG
        warnings = Counter(d.code for d in front.diags.items if d.severity is Severity.WARNING)

    entries = result.entries
    if verbose:
        for p in profiles:
            if p.policy is None:
                err.write(f"policyc: {p.loc}: profile `{p.name}` not converted: {p.reason}\n")
        for e in entries:
            if e.status != "converted":
                label = {"not": "not converted", "partial": "in part", "approximate": "approximately"}[e.status]
                err.write(f"policyc: {e.loc}: {label}: {e.text} -- {e.why()}\n")
    for n in result.notes:
        err.write(f"policyc: note: {n}\n")
    reasons = Counter(k for e in entries if e.status in ("not", "partial") for k in dict(e.reasons))
    if reasons:
        err.write("policyc: not expressible (whole rules or parts), by reason:\n")
        for key, n in reasons.most_common(TOP_REASONS):
            err.write(f"  {n:>7}  {key}: {REASONS.get(key, key)}\n")
        if len(reasons) > TOP_REASONS:
            err.write(f"  ({len(reasons) - TOP_REASONS} more reasons; -v lists every rule)\n")
    c = result.counts()
    done = c["converted"] + c["approximate"]
    policies = sum(1 for p in profiles if p.policy)
    err.write(f"policyc: {policies} of {len(profiles)} profiles became policies; converted {done} of "
              f"{c['rules']} rules ({c['approximate']} approximately); {c['not']} not expressible; "
              f"{c['partial']} in part\n")
    if c["deny_not_converted"]:
        err.write(f"policyc: warning: {c['deny_not_converted']} `deny` rules are not (wholly) converted: "
                  "the policy may allow what they denied (see the comments)\n")
    w = sum(warnings.values())
    err.write("policyc: the output passes `policyc check`" +
              (f" ({w} warnings: {', '.join(f'{k} {n}' for k, n in sorted(warnings.items()))})" if w else "")
              + "\n")

    if output:
        try:
            write_atomically(output, text)
        except OSError as e:
            err.write(f"policyc: error: cannot write `{output}`: {e.strerror or e}\n")
            return EXIT_BAD_INPUT
    else:
        out.write(text)
    return EXIT_OK if result.ok else EXIT_BAD_INPUT


def command(
    paths: Optional[List[str]] = typer.Argument(None, metavar="PROFILE...",
                                                help="AppArmor profile files (a directory: the files in it)"),
    output: Optional[str] = typer.Option(None, "-o", "--output", metavar="OUT.policy",
                                         help="write the policy here (default: stdout)"),
    base: str = typer.Option("/etc/apparmor.d", "--base", metavar="DIR",
                             help="where `include <...>` files are found (abstractions, tunables)"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="list every rule not (wholly) converted on stderr"),
) -> None:
    """Convert AppArmor profiles into one .policy file (what cannot be said is listed)."""
    guarded(run_import, list(paths or []), output, base, verbose, out=sys.stdout, err=sys.stderr)
