"""`policyc test --format text|json|junit|tap|github`: each output parsed and its counts and
fields checked, on temporary files through the command line."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import types
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from policyc.cli.main import app

from _policyc_helpers import POLICIES, write

runner = CliRunner()

GOOD = 'policy p {\n    subject exe "/usr/bin/x"\n    default deny\n    allow exec "/usr/bin/y"\n}\n'
# Two blocks of one policy (lines 6 and 11): 3 expectations (line 9 fails by the default),
# then 2 (line 13 fails by the rule at 4:5).
TESTED = GOOD + ('test p {\n    expect allow exec "/usr/bin/y"\n    expect deny exec "/usr/bin/curl"\n'
                 '    expect allow exec "/usr/bin/curl"\n}\n'
                 'test p {\n    expect allow exec "/usr/bin/y"\n    expect deny exec "/usr/bin/y"\n}\n')
ALL_PASS = GOOD + 'test p {\n    expect allow exec "/usr/bin/y"\n}\n'


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def tested(tmp_path):
    (p,) = write(tmp_path, {"a.policy": TESTED})
    return p


# --- text --------------------------------------------------------------------------------------
def test_text_keeps_its_lines_and_ends_with_the_counts(tested):
    r = run("test", tested)
    assert r.exit_code == 1
    assert r.stdout.splitlines() == [
        f'{tested}:9: FAIL expect allow exec "/usr/bin/curl": got deny (by policy default at {tested}:3:5)',
        f'{tested}:13: FAIL expect deny exec "/usr/bin/y": '
        f'got allow (by rule at {tested}:4:5: allow exec "/usr/bin/y")',
        "PASS: 3/5",
    ]
    assert r.stderr == "3 passed, 2 failed\n"
    r = run("test", "--format", "text", "-v", tested)
    assert r.stdout.count(": PASS expect ") == 3 and r.stdout.endswith("PASS: 3/5\n")
    assert r.stderr.splitlines()[-1] == "3 passed, 2 failed"


def test_text_all_passed(tmp_path):
    (p,) = write(tmp_path, {"a.policy": ALL_PASS})
    r = run("test", p)
    assert (r.exit_code, r.stdout, r.stderr) == (0, "PASS: 1/1\n", "1 passed, 0 failed\n")


# --- json --------------------------------------------------------------------------------------
def test_json(tested):
    r = run("test", "--format", "json", tested)
    assert r.exit_code == 1 and r.stderr == ""
    doc = json.loads(r.stdout)
    assert doc["version"] == 1
    assert (doc["passed"], doc["failed"], doc["total"]) == (3, 2, 5)
    res = doc["results"]
    assert [(x["line"], x["result"]) for x in res] == [
        (7, "pass"), (8, "pass"), (9, "fail"), (12, "pass"), (13, "fail")]
    for x in res:
        assert x["file"] == tested and x["col"] == 5 and x["policy"] == "p"
        assert x["expectation"].startswith("expect ")
        assert {"file", "line", "col", "policy", "expectation", "result", "actual"} <= set(x)
    ok = res[0]
    assert ok["actual"] is None and ok["expected"] == "allow"
    by_default = res[2]
    assert by_default["expectation"] == 'expect allow exec "/usr/bin/curl"'
    assert by_default["actual"]["decision"] == "deny" and by_default["actual"]["rule"] is None
    assert by_default["actual"]["by"] == "default"
    by_rule = res[4]
    assert by_rule["actual"]["decision"] == "allow"
    assert by_rule["actual"]["rule"] == f"{tested}:4:5" and by_rule["actual"]["rule_text"] == 'allow exec "/usr/bin/y"'
    assert [x["test"]["line"] for x in res] == [6, 6, 6, 11, 11]


def test_json_lines_match_the_text_output(tested):
    res = json.loads(run("test", "-f", "json", tested).stdout)["results"]
    failed_lines = {int(m) for m in re.findall(r":(\d+): FAIL", run("test", tested).stdout)}
    assert {x["line"] for x in res if x["result"] == "fail"} == failed_lines == {9, 13}


# --- junit -------------------------------------------------------------------------------------
def test_junit(tested):
    r = run("test", "--format", "junit", tested)
    assert r.exit_code == 1 and r.stderr == ""
    assert r.stdout.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ET.fromstring(r.stdout.encode())           # well formed, or this raises
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("5", "2", "0")
    suites = root.findall("testsuite")
    assert len(suites) == 2                            # one per test block
    assert [(s.get("tests"), s.get("failures")) for s in suites] == [("3", "1"), ("2", "1")]
    assert all(s.get("name").startswith("p (") for s in suites) and suites[0].get("name") != suites[1].get("name")
    cases = [c for s in suites for c in s.findall("testcase")]
    assert len(cases) == 5
    assert [c.get("line") for c in cases] == ["7", "8", "9", "12", "13"]
    assert all(c.get("classname") == "p" and c.get("file") == tested for c in cases)
    assert cases[2].get("name") == 'expect allow exec "/usr/bin/curl"'
    failures = [(c.get("line"), c.find("failure")) for c in cases if c.find("failure") is not None]
    assert [line for line, _ in failures] == ["9", "13"]
    for _, f in failures:
        assert f.get("message", "").startswith("got ")
        assert "FAIL" in f.text
    assert failures[0][1].get("message") == f"got deny (by policy default at {tested}:3:5)"
    assert all(c.find("failure") is None for c in cases if c.get("line") not in ("9", "13"))


def test_junit_escapes_what_xml_cannot_hold(tmp_path):
    text = GOOD + 'test p {\n    expect allow file read "/a<&>\x01b\\"q]]>"\n}\n'
    (p,) = write(tmp_path, {"a.policy": text})
    r = run("test", "-f", "junit", p)
    assert r.exit_code == 1
    root = ET.fromstring(r.stdout.encode())
    (case,) = root.iter("testcase")
    assert "/a<&>" in case.get("name") and "\x01" not in case.get("name")
    assert case.find("failure") is not None


def test_junit_without_tests(tmp_path):
    (p,) = write(tmp_path, {"a.policy": GOOD})
    r = run("test", "-f", "junit", p)
    root = ET.fromstring(r.stdout.encode())
    assert (r.exit_code, root.get("tests"), root.findall("testsuite")) == (0, "0", [])


# --- tap ---------------------------------------------------------------------------------------
def test_tap(tested):
    r = run("test", "--format", "tap", tested)
    assert r.exit_code == 1 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0] == "TAP version 13"
    assert lines[1] == "1..5"
    results = [re.match(r"^(ok|not ok) (\d+) - (.*)$", x) for x in lines[2:]]
    points = [m for m in results if m]
    assert [(m.group(1), int(m.group(2))) for m in points] == [
        ("ok", 1), ("ok", 2), ("not ok", 3), ("ok", 4), ("not ok", 5)]
    assert points[2].group(3) == f'p: expect allow exec "/usr/bin/curl" ({tested}:9)'
    # A YAML block after each failure, indented, between --- and ...
    i = lines.index(f"not ok 3 - {points[2].group(3)}")
    assert lines[i + 1] == "  ---"
    block = lines[i + 2: lines.index("  ...", i)]
    assert '  expected: "allow"' in block and '  actual: "deny"' in block and "  line: 9" in block
    assert lines[-1] == "# 3 passed, 2 failed"


def test_tap_escapes_hash_and_has_an_empty_plan(tmp_path):
    (p,) = write(tmp_path, {"a.policy": GOOD + 'test p {\n    expect deny file read "/x#y"\n}\n'})
    lines = run("test", "-f", "tap", p).stdout.splitlines()
    assert lines[2] == f'ok 1 - p: expect deny file read "/x\\#y" ({p}:7)'
    (q,) = write(tmp_path, {"b.policy": GOOD})
    r = run("test", "-f", "tap", q)
    assert r.stdout.splitlines()[:2] == ["TAP version 13", "1..0"] and r.exit_code == 0


# --- github ------------------------------------------------------------------------------------
def test_github(tested):
    r = run("test", "--format", "github", tested)
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    anns = [re.match(r"^::error file=([^,]*),line=(\d+),col=(\d+)::(.*)$", x) for x in lines[:-1]]
    assert all(anns), lines
    assert [(int(m.group(2)), int(m.group(3))) for m in anns] == [(9, 5), (13, 5)]
    assert anns[0].group(4) == (f'FAIL expect allow exec "/usr/bin/curl": got deny '
                                f'(by policy default at {tested.replace("%", "%25")}:3:5)')
    assert lines[-1] == "3 passed, 2 failed"


# --- no tests, bad options ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["text", "json", "junit", "tap", "github"])
def test_no_test_blocks_is_said_on_stderr(tmp_path, fmt):
    (p,) = write(tmp_path, {"a.policy": GOOD})
    r = run("test", "--format", fmt, p)
    assert r.exit_code == 0
    assert "no tests found" in r.stderr and p in r.stderr
    (q,) = write(tmp_path, {"b.policy": ALL_PASS})
    assert "no tests found" not in run("test", "--format", fmt, q).stderr


def test_empty_json_document(tmp_path):
    (p,) = write(tmp_path, {"a.policy": GOOD})
    doc = json.loads(run("test", "-f", "json", p).stdout)
    assert doc == {"version": 1, "passed": 0, "failed": 0, "total": 0, "results": []}


def test_bad_format_is_exit_2(tested):
    r = run("test", "--format", "xml", tested)
    assert r.exit_code == 2 and "xml" in r.stderr and r.stdout == ""


def test_kernel_runs_only_with_text(tested, monkeypatch):
    calls = []
    mod = types.ModuleType("policyc.kernel_test")
    mod.__spec__ = importlib.util.spec_from_loader("policyc.kernel_test", loader=None)
    mod.run_kernel_tests = lambda program, kernel, out, err: calls.append(kernel) or 0
    monkeypatch.setitem(sys.modules, "policyc.kernel_test", mod)
    r = run("test", "--kernel", "6.12", "--format", "junit", tested)
    assert r.exit_code == 2 and calls == [] and "--kernel" in r.stderr


def test_examples_pass_in_every_format():
    for fmt in ("json", "junit", "tap", "github"):
        r = run("test", "--format", fmt, POLICIES)
        assert r.exit_code == 0, (fmt, r.stdout)
    doc = json.loads(run("test", "-f", "json", POLICIES).stdout)
    assert doc["failed"] == 0 and doc["passed"] == doc["total"] >= 60
    root = ET.fromstring(run("test", "-f", "junit", POLICIES).stdout.encode())
    assert root.get("tests") == str(doc["total"]) and root.get("failures") == "0"
