"""The fixture-driven part of every check's tests: tests/fixtures/checks/<CODE>.policy holds
anti-patterns and best practices, and `# expect CODE LINE:COL` lines say what is reported."""

from __future__ import annotations

from policyc.checks import run_checks
from policyc.diagnostics import Diagnostics
from policyc.lower import load_program

from _policyc_helpers import FIXTURES, expected_in, found


def fixture_findings(code: str, codes: set[str]):
    path = FIXTURES / "checks" / f"{code}.policy"
    diags = Diagnostics()
    program = load_program([str(path)], diags)
    assert program is not None, [d.message for d in diags.items]
    run_checks(program, diags)
    want = [e for e in expected_in(path) if e[0] in codes]
    return found(diags, codes), want, diags
