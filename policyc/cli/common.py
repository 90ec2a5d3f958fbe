"""What every command shares: loading with diagnostics, printing them, exit codes, and the
guard that turns any unexpected exception into one line and exit code 3."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import traceback
from typing import TYPE_CHECKING, Callable, TextIO

import typer

from ..diagnostics import Diagnostics

if TYPE_CHECKING:   # imported when used: `policyc --help` and `lsp` need none of them
    from ..ir.model import Program
    from ..pipeline import FrontEnd

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_BAD_INPUT = 2
EXIT_BUG = 3
EXIT_USAGE = 64     # EX_USAGE (sysexits.h): an unknown option, a missing argument


def load(paths: list[str], diags: Diagnostics, *, checks: bool = False, kernel: str | None = None) -> FrontEnd:
    """Every command's front end: policyc/pipeline.py's, made total (any input gives a
    FrontEnd, its problems in `diags`). `checks` for the commands that judge or build a
    program; `explain` and `test` evaluate it as lowered."""
    from ..pipeline import front_end

    return front_end(list(paths), diags, checks=checks, kernel=kernel)


def load_and_check(paths: list[str], diags: Diagnostics, err: TextIO,
                   kernel: str | None = None) -> tuple[FrontEnd, bool]:
    """The front end with every check and, with `kernel`, that kernel's facts (P050), for
    the commands that judge or build a program. (front, ok): ok is False when the kernel's
    facts could not be read (said on `err`)."""
    front = load(paths, diags, checks=True, kernel=kernel)
    if front.facts_error is not None:
        err.write(f"policyc: error: {front.facts_error}\n")
        return front, False
    return front, True


def print_diagnostics(diags: Diagnostics, fmt: str, out: TextIO, err: TextIO,
                      program: Program | None = None) -> None:
    from ..report import Sources, render, summary

    items = diags.sorted()
    render(items, fmt, out, Sources(program.sources if program is not None else {}))
    if fmt == "text" and items:
        err.write(f"policyc: {summary(items)}\n")


def guarded(fn: Callable[..., int], *args, on_bug: Callable[[Exception], None] | None = None,
            **kwargs) -> None:
    """Run a command; exit with its code. An exception is a policyc bug: one line, code 3.
    `on_bug(exception)` then runs too: `check --format sarif` writes a SARIF document that
    says the run failed, so what reads stdout still gets one."""
    err = kwargs.get("err", sys.stderr)
    try:
        code = fn(*args, **kwargs)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 0
    except typer.Exit:
        raise
    except Exception as e:  # noqa: BLE001 - the one place that catches everything
        if os.environ.get("POLICYC_DEBUG"):
            traceback.print_exc(file=err)
        err.write(f"policyc: error: internal error: {type(e).__name__}: {e} "
                  "(a policyc bug; POLICYC_DEBUG=1 shows where)\n")
        if on_bug is not None:
            try:
                on_bug(e)
            except Exception:  # noqa: BLE001 - reporting the bug must not hide it
                if os.environ.get("POLICYC_DEBUG"):
                    traceback.print_exc(file=err)
        code = EXIT_BUG
    raise typer.Exit(code)


_OVERLAY_LOCK = threading.RLock()


@contextlib.contextmanager
def overlaid(texts: dict[str, str]):
    """Files read from `texts` (path -> text) instead of from disk while the block runs: an
    editor's unsaved buffer (`policyc lsp`) or standard input (`check - --stdin-filename
    NAME`). Includes are resolved as for the file on disk, relative to its path; a path in
    `texts` need not exist. The front end reads files through the parse_file that
    policyc/lower/sources.py imported, so that is the one replaced (tests/unit/test_lsp.py
    holds it to that)."""
    from ..lower import sources as _sources
    from ..parse import parse_file, parse_text

    by_key = {os.path.normpath(p): t for p, t in texts.items()}

    def read(path: str, diags: Diagnostics):
        text = by_key.get(os.path.normpath(path))
        if text is None:
            return parse_file(path, diags)
        return parse_text(path, text, diags)

    with _OVERLAY_LOCK:
        before = _sources.parse_file
        _sources.parse_file = read
        try:
            yield
        finally:
            _sources.parse_file = before
