"""`policyc test PATH... [--format text|json|junit|tap|github] [--kernel VERSION] [-v]`: run the
policies' `test` blocks (in the file or in NAME.policy.test beside it) against the reference
evaluator.

Each test block checks its own policy alone (other policies loaded with it do not take
part), so a policy's tests pass or fail the same whatever else is loaded. The text format
prints one line per failure, `file:line: FAIL expect ...: got allow (by policy default at
file:line:col)`, then `PASS: n/m` on stdout, and ends with `N passed, N failed` on stderr.
The other formats (policyc/report/testresults.py) write only to stdout. Input without test
blocks is said on stderr. Exit 0 all passed, 1 a test failed, 2 bad input. With `--kernel`
every policy is built and loaded, so the checks run first (policyc/pipeline.py builds
nothing they did not pass): an error among them is bad input too.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from typing import List, Optional, TextIO

import typer

from ..diagnostics import Diagnostics
from ..evaluate import Decision, decide
from ..ir.model import Expectation, Program
from ..report.testresults import TEST_FORMATS, TestResult, count_line, render_results
from .common import EXIT_BAD_INPUT, EXIT_FAIL, EXIT_OK, guarded, load, print_diagnostics


def run_test(paths: list[str], kernel: str | None = None, verbose: bool = False, *, out: TextIO,
             err: TextIO, fmt: str = "text") -> int:
    if fmt not in TEST_FORMATS:
        err.write(f"policyc: error: unknown format `{fmt}` (one of {', '.join(TEST_FORMATS)})\n")
        return EXIT_BAD_INPUT
    if kernel is not None and fmt != "text":
        err.write(f"policyc: error: `--format {fmt}` is for the reference evaluator; `--kernel` prints text only\n")
        return EXIT_BAD_INPUT
    diags = Diagnostics()
    # With --kernel each policy is built and loaded, so the checks run first (the pipeline
    # builds nothing they did not pass); the reference evaluator needs the lowering only.
    front = load(paths, diags, checks=kernel is not None)
    program = front.program
    if program is None or diags.has_errors:
        print_diagnostics(diags, "text", err, err, program)
        return EXIT_BAD_INPUT
    if kernel is not None:
        return _kernel(program, kernel, out, err)
    results = evaluate_tests(program)
    render_results(results, fmt, out, verbose)
    _flush(out)
    tested = {tc.policy for tc in program.tests}
    for p in program.policies:
        if p.name not in tested and verbose:
            err.write(f"{p.span}: note: policy `{p.name}` has no tests\n")
    if not program.tests:
        err.write(f"policyc: no tests found in {', '.join(paths)} (write `test NAME {{ ... }}` blocks, "
                  "in the policy file or in NAME.policy.test beside it)\n")
    elif not results:
        err.write("policyc: no tests found: the test blocks hold no `expect` lines\n")
    if fmt == "text":
        err.write(count_line(results) + "\n")
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAIL


def evaluate_tests(program: Program) -> list[TestResult]:
    """Every expectation of every test block, decided by its own policy alone."""
    results = []
    for tc in program.tests:
        policy = program.policy(tc.policy)
        for ex in tc.expectations:
            t0 = time.perf_counter()
            d = decide((policy,), ex.event)
            secs = time.perf_counter() - t0
            results.append(TestResult(tc, ex, d, why(d, ex), secs))
    return results


def _flush(out: TextIO) -> None:
    try:
        out.flush()
    except (OSError, ValueError):
        pass


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
    fmt: str = typer.Option("text", "--format", "-f", help="text, json, junit, tap or github"),
    kernel: Optional[str] = typer.Option(None, "--kernel", metavar="VERSION",
                                         help="run the tests in a VM with this kernel (e.g. 6.1)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="print passing tests too (text format)"),
) -> None:
    """Run the policies' test blocks against the reference evaluator."""
    import sys

    guarded(run_test, paths, kernel, verbose, out=sys.stdout, err=sys.stderr, fmt=fmt)
