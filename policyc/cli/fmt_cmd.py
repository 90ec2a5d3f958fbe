"""`policyc fmt PATH... [--check] [-w] [-d] [-l]`: print policies in the canonical layout.

Without flags: the formatted text to stdout. `-w` writes files in place (only those that
change), `-l` lists the files that would change, `-d` prints unified diffs, `--check` writes
nothing and exits 1 when a file would change (with -l or -d it also shows which or how).
`-` reads stdin. Directories give their `*.policy` and `*.policy.test` files. Exit 2 on a
file that does not parse (nothing is written for it).
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import List, TextIO

import typer

from ..diagnostics import Diagnostics
from ..fmt import format_text
from ..lower import expand_paths
from ..parse import decode_source, read_source
from .common import EXIT_BAD_INPUT, EXIT_FAIL, EXIT_OK, guarded, print_diagnostics


def expand(paths: list[str], diags: Diagnostics) -> list[str]:
    return expand_paths(paths, diags, suffixes=(".policy", ".policy.test"))


def run_fmt(paths: list[str], check: bool = False, write: bool = False, diff: bool = False,
            list_: bool = False, *, out: TextIO, err: TextIO, stdin=None) -> int:
    if write and (check or "-" in paths):
        err.write("policyc: error: `-w` cannot be combined with `--check` or `-` (stdin)\n")
        return EXIT_BAD_INPUT
    diags = Diagnostics()
    changed = 0
    for path in expand(paths, diags):
        if path == "-":
            data = (stdin or sys.stdin.buffer).read()
            if isinstance(data, str):
                data = data.encode("utf-8", errors="surrogateescape")
            text = decode_source("<stdin>", data, diags)
            name = "<stdin>"
        else:
            text = read_source(path, diags)
            name = path
        if text is None:
            continue
        new = format_text(name, text, diags)
        if new is None:
            continue
        if new != text:
            changed += 1
        if list_ and new != text:
            out.write(f"{name}\n")
        if diff and new != text:
            out.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                f"a/{name}", f"b/{name}"))
        if write and new != text:
            try:
                Path(path).write_text(new, encoding="utf-8")
            except OSError as e:
                diags.error("P006", None, f"cannot write `{path}`: {e.strerror or e}")
        if not (check or write or diff or list_):
            out.write(new)
    if diags.items:
        print_diagnostics(diags, "text", err, err)
    if diags.has_errors:
        return EXIT_BAD_INPUT
    if check and changed:
        if not (list_ or diff):
            err.write(f"policyc: {changed} file{'s' if changed != 1 else ''} would be reformatted "
                      "(`policyc fmt -w` does it)\n")
        return EXIT_FAIL
    return EXIT_OK


def command(
    paths: List[str] = typer.Argument(..., metavar="PATH...", help="files, directories, or - for stdin"),
    check: bool = typer.Option(False, "--check", help="exit 1 when a file would change; write nothing"),
    write: bool = typer.Option(False, "-w", "--write", help="write the result to the files"),
    diff: bool = typer.Option(False, "-d", "--diff", help="print a diff of the changes"),
    list_: bool = typer.Option(False, "-l", "--list", help="list the files that would change"),
) -> None:
    """Format policies in the canonical layout (docs/language.md, Formatting)."""
    guarded(run_fmt, paths, check, write, diff, list_, out=sys.stdout, err=sys.stderr)
