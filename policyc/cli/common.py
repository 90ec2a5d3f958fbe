"""What every command shares: loading with diagnostics, printing them, exit codes, and the
guard that turns any unexpected exception into one line and exit code 3."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable, TextIO

import typer

from ..diagnostics import Diagnostics
from ..ir.model import Program
from ..lower import load_program
from ..report import Sources, render, summary

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_BAD_INPUT = 2
EXIT_BUG = 3


def load(paths: list[str], diags: Diagnostics) -> Program | None:
    """The front end, made total: whatever the input, a Program or diagnostics."""
    try:
        return load_program(list(paths), diags)
    except RecursionError:
        diags.error("P001", None, "input nests too deeply")
        return None


def load_and_check(paths: list[str], diags: Diagnostics, err: TextIO,
                   kernel: str | None = None) -> tuple[Program | None, bool]:
    """The front end and every check, and with `kernel` the target kernel's facts (P050).
    Returns (program, ok): ok is False when the kernel's facts could not be read (said)."""
    from ..checks import run_checks

    program = load(paths, diags)
    if program is None:
        return None, True
    run_checks(program, diags)
    if kernel is not None and not diags.has_errors:
        from ..kernel_facts import FactsError, check_program

        try:
            check_program(program, kernel, diags)
        except FactsError as e:
            err.write(f"policyc: error: {e}\n")
            return program, False
    return program, True


def print_diagnostics(diags: Diagnostics, fmt: str, out: TextIO, err: TextIO,
                      program: Program | None = None) -> None:
    items = diags.sorted()
    render(items, fmt, out, Sources(program.sources if program is not None else {}))
    if fmt == "text" and items:
        err.write(f"policyc: {summary(items)}\n")


def guarded(fn: Callable[..., int], *args, **kwargs) -> None:
    """Run a command; exit with its code. An exception is a policyc bug: one line, code 3."""
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
        err.write(f"policyc: internal error: {type(e).__name__}: {e} "
                  "(a policyc bug; POLICYC_DEBUG=1 shows where)\n")
        code = EXIT_BUG
    raise typer.Exit(code)
