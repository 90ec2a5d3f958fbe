"""`policyc test PATH... [--kernel VERSION] [-v]`: run the policies' `test` blocks (in the
file or in NAME.policy.test beside it) against the reference evaluator.

Each test block checks its own policy alone (other policies loaded with it do not take
part), so a policy's tests pass or fail the same whatever else is loaded. Prints one line per
failure, `file:line: FAIL expect ...: got allow (by policy default at file:line:col)`, then
`PASS: n/m`. Exit 0 all passed, 1 a test failed, 2 bad input.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import List, Optional, TextIO

import typer

from ..diagnostics import Diagnostics
from ..evaluate import Decision, decide
from ..ir.model import Expectation, Program
from .common import EXIT_BAD_INPUT, EXIT_FAIL, EXIT_OK, guarded, load, print_diagnostics


def run_test(paths: list[str], kernel: str | None = None, verbose: bool = False, *, out: TextIO,
             err: TextIO) -> int:
    diags = Diagnostics()
    program = load(paths, diags)
    if program is None:
        print_diagnostics(diags, "text", err, err, program)
        return EXIT_BAD_INPUT
    if kernel is not None:
        return _kernel(program, kernel, out, err)
    total = passed = 0
    for tc in program.tests:
        policy = program.policy(tc.policy)
        for ex in tc.expectations:
            total += 1
            d = decide((policy,), ex.event)
            if d.action == ex.decision:
                passed += 1
                if verbose:
                    out.write(f"{_where(ex)}: PASS {ex.text}\n")
            else:
                out.write(f"{_where(ex)}: FAIL {ex.text}: got {d.action} ({why(d, ex)})\n")
    tested = {tc.policy for tc in program.tests}
    for p in program.policies:
        if p.name not in tested and verbose:
            err.write(f"{p.span}: note: policy `{p.name}` has no tests\n")
    out.write(f"PASS: {passed}/{total}\n")
    if total == 0:
        err.write("policyc: no tests found (write `test NAME { ... }` blocks)\n")
    return EXIT_OK if passed == total else EXIT_FAIL


def _where(ex: Expectation) -> str:
    return f"{ex.span.file}:{ex.span.line}"


def why(d: Decision, ex: Expectation) -> str:
    if d.policy is None:
        return f"no policy governs `{ex.event.exe}`"
    if d.rule is not None:
        return f"by rule at {d.rule.span}: {d.rule.text}"
    where = d.policy.default_span or d.policy.span
    return f"by policy default at {where}"


def _kernel(program: Program, kernel: str, out: TextIO, err: TextIO) -> int:
    mod = importlib.import_module("policyc.kernel_test")   # imported here: it needs the VM tooling
    return mod.run_kernel_tests(program, kernel, out, err)


def command(
    paths: List[str] = typer.Argument(..., metavar="PATH...", help="policy files or directories of them"),
    kernel: Optional[str] = typer.Option(None, "--kernel", metavar="VERSION",
                                         help="run the tests in a VM with this kernel (e.g. 6.1)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="print passing tests too"),
) -> None:
    """Run the policies' test blocks against the reference evaluator."""
    import sys

    guarded(run_test, paths, kernel, verbose, out=sys.stdout, err=sys.stderr)
