"""The outputs of `policyc test`: `text`, `json`, `junit`, `tap`, `github`.

    render_results(results, fmt, out, verbose=False)

One `TestResult` per expectation, in the order the test blocks and their expectations were
written. Every format carries the counts: tap and github end with `N passed, N failed`
(tap as a comment), text with `PASS: n/m` (policyc/cli/test_cmd.py then writes
`N passed, N failed` to stderr), json and junit in fields and attributes. See each renderer
for its shape.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, TextIO

from ..evaluate import Decision
from ..ir.model import Expectation, TestCase
from .github import workflow_command
from .text import clean

TEST_FORMATS = ("text", "json", "junit", "tap", "github")
JSON_VERSION = 1


@dataclass(frozen=True)
class TestResult:
    test: TestCase            # the block
    expectation: Expectation
    actual: Decision          # what the reference evaluator decided
    explanation: str          # how (`by rule at file:line:col: ...`, `by policy default at ...`)
    seconds: float = 0.0

    __test__ = False          # not a pytest test class

    @property
    def passed(self) -> bool:
        return self.actual.action == self.expectation.decision

    @property
    def where(self) -> str:
        s = self.expectation.span
        return f"{s.file}:{s.line}"

    def failure(self) -> str:
        """`got allow (by policy default at a.policy:3:5)`."""
        return f"got {self.actual.action} ({self.explanation})"


def counts(results: list[TestResult]) -> tuple[int, int]:
    passed = sum(r.passed for r in results)
    return passed, len(results) - passed


def count_line(results: list[TestResult]) -> str:
    """`N passed, N failed`: the last line of every text-like output."""
    passed, failed = counts(results)
    return f"{passed} passed, {failed} failed"


def render_results(results: list[TestResult], fmt: str, out: TextIO, verbose: bool = False) -> None:
    {"text": lambda: render_text(results, out, verbose),
     "json": lambda: render_json(results, out),
     "junit": lambda: render_junit(results, out),
     "tap": lambda: render_tap(results, out),
     "github": lambda: render_github(results, out)}[fmt]()


# --- text ------------------------------------------------------------------------------------
def render_text(results: list[TestResult], out: TextIO, verbose: bool = False) -> None:
    """`file:line: FAIL expect ...: got allow (by ...)` per failure (and `PASS` lines with
    `verbose`), then `PASS: n/m`. The caller writes `N passed, N failed` after it (on stderr:
    stdout keeps its long-standing shape)."""
    for r in results:
        if r.passed:
            if verbose:
                out.write(f"{r.where}: PASS {r.expectation.text}\n")
        else:
            out.write(f"{r.where}: FAIL {r.expectation.text}: {r.failure()}\n")
    passed, _ = counts(results)
    out.write(f"PASS: {passed}/{len(results)}\n")


# --- json ------------------------------------------------------------------------------------
def to_json(results: list[TestResult]) -> dict[str, Any]:
    """`{"version": 1, "passed", "failed", "total", "results": [...]}`; each result:
    `{file, line, col, location, policy, test: {file, line, col}, expectation, expected,
    result: "pass"|"fail", actual}` where `location` is the expectation's place as an object
    `{file, line, col}` (the same as the three keys beside it), `test` the block's, and
    `actual` null on a pass and on a failure the decision (`{decision, policy, rule, rule_id,
    rule_text, by, default_location, mode, rule_location, location, explanation}`, `rule` and
    `default_location` as `file:line:col` or null, `rule_location` and `location` (the place
    that decided) as objects or null: evaluate.Decision.to_dict)."""
    passed, failed = counts(results)
    items = []
    for r in results:
        s, t = r.expectation.span, r.test.span
        actual = None
        if not r.passed:
            actual = {**r.actual.to_dict(), "explanation": r.explanation}
        items.append({
            "file": s.file,
            "line": s.line,
            "col": s.col,
            "location": {"file": s.file, "line": s.line, "col": s.col},
            "policy": r.test.policy,
            "test": {"file": t.file, "line": t.line, "col": t.col},
            "expectation": r.expectation.text,
            "expected": r.expectation.decision,
            "result": "pass" if r.passed else "fail",
            "actual": actual,
        })
    return {"version": JSON_VERSION, "passed": passed, "failed": failed, "total": len(results), "results": items}


def render_json(results: list[TestResult], out: TextIO) -> None:
    json.dump(to_json(results), out, indent=2)
    out.write("\n")


# --- junit -----------------------------------------------------------------------------------
# Characters XML 1.0 cannot carry at all (even escaped).
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(text: str) -> str:
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def to_junit(results: list[TestResult]) -> ET.Element:
    """`<testsuites>` with one `<testsuite>` per test block (name `POLICY (file:line)`) and one
    `<testcase>` per expectation (name = the expectation's text, classname = the policy, file
    and line attributes); a failed one holds `<failure message="got ..." type="...">`."""
    passed, failed = counts(results)
    root = ET.Element("testsuites", {"name": "policyc test", "tests": str(len(results)),
                                     "failures": str(failed), "errors": "0",
                                     "time": _secs(sum(r.seconds for r in results))})
    blocks: dict[int, list[TestResult]] = {}
    order: list[TestCase] = []
    for r in results:
        key = id(r.test)
        if key not in blocks:
            blocks[key] = []
            order.append(r.test)
        blocks[key].append(r)
    for tc in order:
        rs = blocks[id(tc)]
        suite = ET.SubElement(root, "testsuite", {
            "name": _x(f"{tc.policy} ({tc.span.file}:{tc.span.line})"),
            "tests": str(len(rs)), "failures": str(counts(rs)[1]), "errors": "0", "skipped": "0",
            "time": _secs(sum(r.seconds for r in rs)), "file": _x(tc.span.file)})
        for r in rs:
            s = r.expectation.span
            case = ET.SubElement(suite, "testcase", {
                "name": _x(r.expectation.text), "classname": _x(tc.policy),
                "file": _x(s.file), "line": str(s.line), "time": _secs(r.seconds)})
            if not r.passed:
                f = ET.SubElement(case, "failure", {"message": _x(r.failure()), "type": "unexpected-decision"})
                f.text = _x(f"{r.where}: FAIL {r.expectation.text}: {r.failure()}\n"
                            f"expected: {r.expectation.decision}\nactual: {r.actual.action}\n")
    return root


def render_junit(results: list[TestResult], out: TextIO) -> None:
    root = to_junit(results)
    ET.indent(root)
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(ET.tostring(root, encoding="unicode"))
    out.write("\n")


def _secs(s: float) -> str:
    return f"{s:.6f}"


# --- tap -------------------------------------------------------------------------------------
def render_tap(results: list[TestResult], out: TextIO) -> None:
    """TAP version 13: the plan `1..N`, `ok N - POLICY: expect ... (file:line)` or `not ok N - ...`
    with a YAML block (message, file, line, expected, actual), then `# N passed, N failed`."""
    out.write("TAP version 13\n")
    out.write(f"1..{len(results)}\n")
    for i, r in enumerate(results, 1):
        desc = _tap_desc(f"{r.test.policy}: {r.expectation.text} ({r.where})")
        if r.passed:
            out.write(f"ok {i} - {desc}\n")
            continue
        s = r.expectation.span
        out.write(f"not ok {i} - {desc}\n")
        out.write("  ---\n")
        for k, v in (("message", r.failure()), ("file", s.file), ("line", s.line), ("col", s.col),
                     ("policy", r.test.policy), ("expected", r.expectation.decision),
                     ("actual", r.actual.action)):
            out.write(f"  {k}: {json.dumps(v)}\n")      # JSON scalars are YAML flow scalars
        out.write("  ...\n")
    out.write(f"# {count_line(results)}\n")


def _tap_desc(text: str) -> str:
    """One line; `#` escaped (it would start a directive), a backslash doubled."""
    return clean(text).replace("\\", "\\\\").replace("#", "\\#")


# --- github ----------------------------------------------------------------------------------
def render_github(results: list[TestResult], out: TextIO) -> None:
    """`::error file=F,line=L,col=C::FAIL expect ...: got ...` per failure, then
    `N passed, N failed`."""
    for r in results:
        if not r.passed:
            s = r.expectation.span
            out.write(workflow_command("error", f"FAIL {r.expectation.text}: {r.failure()}", s.file, s.line, s.col)
                      + "\n")
    out.write(count_line(results) + "\n")


__all__ = ["TEST_FORMATS", "TestResult", "count_line", "counts", "render_results", "to_json", "to_junit"]
