"""The command line through typer's CliRunner: exit codes 0/1/2, output shapes."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import types

import pytest
from typer.testing import CliRunner

from policyc.cli.main import app

from _policyc_helpers import POLICIES, write

runner = CliRunner()

GOOD = 'policy p {\n    subject exe "/usr/bin/x"\n    default deny\n    allow exec "/usr/bin/y"\n}\n'
WARN = GOOD.replace("}\n", '    let unused = "/z"\n}\n')
BAD = 'policy p {\n    subject exe "/usr/bin/x"\n    allow capability net_bind_servic\n}\n'
TESTED = GOOD + ('test p {\n    expect allow exec "/usr/bin/y"\n    expect deny exec "/usr/bin/curl"\n'
                 '    expect allow exec "/usr/bin/curl"\n}\n')


def run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


# --- check -------------------------------------------------------------------------------------
def test_check_clean_is_silent(tmp_path):
    (p,) = write(tmp_path, {"a.policy": GOOD})
    r = run("check", p)
    assert (r.exit_code, r.stdout) == (0, "")


def test_check_examples_are_clean():
    r = run("check", POLICIES)
    assert (r.exit_code, r.stdout) == (0, ""), r.stdout


def test_check_warnings_exit_0(tmp_path):
    (p,) = write(tmp_path, {"a.policy": WARN})
    r = run("check", p)
    assert r.exit_code == 0
    assert re.search(r"a\.policy:5:9: warning\[W104\]: ", r.stdout)


def test_check_errors_exit_2_with_location_line_and_caret(tmp_path):
    (p,) = write(tmp_path, {"a.policy": BAD})
    r = run("check", p)
    assert r.exit_code == 2
    lines = r.stdout.splitlines()
    assert lines[0] == f"{p}:3:22: error[P012]: unknown capability `net_bind_servic`"
    assert lines[2] == "3 |     allow capability net_bind_servic"
    assert lines[3] == "  |                      ^~~~~~~~~~~~~~~"
    assert lines[4] == "  = help: did you mean `net_bind_service`?"
    assert "\x1b[" not in r.stdout   # no colour when not a terminal


def test_check_json(tmp_path):
    (p,) = write(tmp_path, {"a.policy": BAD})
    r = run("check", "--format", "json", p)
    assert r.exit_code == 2
    (d,) = json.loads(r.stdout)
    assert d["code"] == "P012" and d["severity"] == "error"
    assert d["location"] == {"file": p, "line": 3, "col": 22, "end_line": 3, "end_col": 37}
    assert set(d) == {"code", "severity", "message", "location", "hints", "notes"}
    r = run("check", "--format", "json", POLICIES)
    assert (r.exit_code, json.loads(r.stdout)) == (0, [])


def test_check_sarif(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, {"a.policy": BAD, "b.policy": WARN.replace("policy p", "policy q")})
    r = run("check", "-f", "sarif", "a.policy", "b.policy")
    assert r.exit_code == 2
    log = json.loads(r.stdout)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    (run_,) = log["runs"]
    rules = run_["tool"]["driver"]["rules"]
    assert [x["id"] for x in rules] == ["P012", "W104"]
    assert all(x["shortDescription"]["text"] and x["defaultConfiguration"]["level"] in ("error", "warning")
               for x in rules)
    results = run_["results"]
    assert [(x["ruleId"], x["level"]) for x in results] == [("P012", "error"), ("W104", "warning")]
    for x in results:
        assert rules[x["ruleIndex"]]["id"] == x["ruleId"]
        assert x["message"]["text"]
        (loc,) = x["locations"]
        region = loc["physicalLocation"]["region"]
        assert loc["physicalLocation"]["artifactLocation"]["uri"] in ("a.policy", "b.policy")
        assert region["startLine"] >= 1 and region["startColumn"] >= 1
        assert region["endColumn"] > region["startColumn"]
    assert results[0]["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 3, "startColumn": 22, "endLine": 3, "endColumn": 37}


def test_check_bad_format_and_no_paths(tmp_path):
    (p,) = write(tmp_path, {"a.policy": GOOD})
    assert run("check", "--format", "xml", p).exit_code == 2
    assert run("check").exit_code == 2


# --- fmt ---------------------------------------------------------------------------------------
UGLY = 'policy p {subject exe "/usr/bin/x"\n default deny  allow exec "/usr/bin/y" }\n'


def test_fmt_prints(tmp_path):
    (p,) = write(tmp_path, {"a.policy": UGLY})
    r = run("fmt", p)
    assert (r.exit_code, r.stdout) == (0, GOOD)


def test_fmt_check(tmp_path):
    ugly, good = write(tmp_path, {"a.policy": UGLY, "b.policy": GOOD})
    assert run("fmt", "--check", good).exit_code == 0
    r = run("fmt", "--check", ugly, good)
    assert r.exit_code == 1 and r.stdout == ""
    r = run("fmt", "--check", "-l", tmp_path)
    assert (r.exit_code, r.stdout) == (1, f"{ugly}\n")
    assert (tmp_path / "a.policy").read_text() == UGLY


def test_fmt_diff_and_write(tmp_path):
    (p,) = write(tmp_path, {"a.policy": UGLY})
    r = run("fmt", "-d", p)
    assert r.exit_code == 0 and r.stdout.startswith(f"--- a/{p}\n+++ b/{p}\n")
    r = run("fmt", "-w", p)
    assert (r.exit_code, r.stdout) == (0, "")
    assert (tmp_path / "a.policy").read_text() == GOOD
    assert run("fmt", "--check", p).exit_code == 0


def test_fmt_stdin():
    r = run("fmt", "-", input=UGLY)
    assert (r.exit_code, r.stdout) == (0, GOOD)


def test_fmt_bad_input_exit_2_and_nothing_written(tmp_path):
    (p,) = write(tmp_path, {"a.policy": "policy p {\n"})
    r = run("fmt", "-w", p)
    assert r.exit_code == 2 and "P001" in r.stderr
    assert (tmp_path / "a.policy").read_text() == "policy p {\n"
    assert run("fmt", "-w", "--check", p).exit_code == 2


# --- explain -----------------------------------------------------------------------------------
NGINX = POLICIES / "nginx.policy"


def test_explain_text():
    r = run("explain", NGINX, "--exe", "/usr/sbin/nginx", "--op", "exec", "--path", "/usr/bin/curl")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[0] == "decision: deny"
    assert re.search(r"rule: +\S*nginx\.policy:\d+:5: deny exec \"/usr/bin/\{curl,wget\}\"", r.stdout)


def test_explain_json_by_rule():
    r = run("explain", NGINX, "--exe", "/usr/sbin/nginx", "--op", "net.connect", "--addr", "10.1.2.3",
            "--port", "8080", "--proto", "tcp", "--json")
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert d["decision"] == "allow" and d["policy"] == "nginx"
    assert re.fullmatch(r".*nginx\.policy:\d+:\d+", d["rule"])


def test_explain_json_default_and_ungoverned():
    d = json.loads(run("explain", NGINX, "--exe", "/usr/sbin/nginx", "--op", "file.write", "--path", "/opt/x",
                       "--json").stdout)
    assert (d["decision"], d["policy"], d["rule"]) == ("deny", "nginx", None)
    d = json.loads(run("explain", NGINX, "--exe", "/usr/bin/other", "--op", "bpf", "--json").stdout)
    assert (d["decision"], d["policy"], d["rule"]) == ("allow", None, None)


def test_explain_parents_and_capabilities():
    d = json.loads(run("explain", NGINX, "--exe", "/bin/sh", "--parent-exe", "/bin/bash", "--parent-exe",
                       "/usr/sbin/nginx", "--op", "capability", "--cap", "sys_admin", "--json").stdout)
    assert (d["decision"], d["policy"]) == ("deny", "nginx")
    d = json.loads(run("explain", NGINX, "--exe", "/usr/sbin/nginx", "--op", "signal", "--signal", "SIGKILL",
                       "--target-exe", "/usr/sbin/policyc", "--json").stdout)
    assert d["decision"] == "deny"


@pytest.mark.parametrize("args,hint", [
    (["--op", "file.raed", "--path", "/x"], "did you mean `file.read`?"),
    (["--op", "exex", "--path", "/x"], "did you mean `exec`?"),
    (["--op", "capability", "--cap", "net_admn"], "did you mean `net_admin`?"),
    (["--op", "signal", "--signal", "kil"], "did you mean `kill`?"),
    (["--op", "file.read"], "--path"),
    (["--op", "net.connect", "--addr", "10.0.0.300", "--port", "80"], "bad address"),
    (["--op", "net.connect", "--addr", "10.0.0.1", "--port", "70000"], "bad port"),
    (["--op", "net.connect", "--addr", "10.0.0.1", "--proto", "sctp"], "unknown protocol"),
])
def test_explain_bad_input_exit_2(args, hint):
    r = run("explain", NGINX, "--exe", "/usr/sbin/nginx", *args)
    assert r.exit_code == 2
    assert hint in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_explain_bad_policy_exit_2(tmp_path):
    (p,) = write(tmp_path, {"a.policy": BAD})
    r = run("explain", p, "--exe", "/usr/bin/x", "--op", "bpf")
    assert r.exit_code == 2 and "P012" in r.stderr


# --- test --------------------------------------------------------------------------------------
def test_test_examples_pass():
    r = run("test", POLICIES)
    assert r.exit_code == 0
    assert re.fullmatch(r"PASS: (\d+)/\1\n", r.stdout)


def test_test_failure_lines(tmp_path):
    (p,) = write(tmp_path, {"a.policy": TESTED})
    r = run("test", p)
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    assert lines == [
        f'{p}:9: FAIL expect allow exec "/usr/bin/curl": got deny (by policy default at {p}:3:5)',
        "PASS: 2/3",
    ]


def test_test_failure_by_rule_and_ungoverned(tmp_path):
    text = GOOD + 'test p {\n    expect deny exec "/usr/bin/y"\n}\ntest p {\n    exe "/usr/bin/other"\n' \
                  '    expect deny exec "/usr/bin/y"\n}\n'
    (p,) = write(tmp_path, {"a.policy": text})
    r = run("test", p)
    assert r.exit_code == 1
    assert f'{p}:7: FAIL expect deny exec "/usr/bin/y": got allow (by rule at {p}:4:5: allow exec "/usr/bin/y")' \
        in r.stdout
    assert "(no policy governs `/usr/bin/other`)" in r.stdout


def test_test_companion_file(tmp_path):
    p, _ = write(tmp_path, {"a.policy": GOOD, "a.policy.test": 'test p {\n    expect deny exec "/bin/sh"\n}\n'})
    r = run("test", p)
    assert (r.exit_code, r.stdout) == (0, "PASS: 1/1\n")


def test_test_bad_input_exit_2(tmp_path):
    (p,) = write(tmp_path, {"a.policy": GOOD + "test q {\n    expect deny bpf\n}\n"})
    r = run("test", p)
    assert r.exit_code == 2 and "P022" in r.stderr


def test_test_kernel_calls_the_kernel_runner(tmp_path, monkeypatch):
    calls = []
    mod = types.ModuleType("policyc.kernel_test")
    mod.__spec__ = importlib.util.spec_from_loader("policyc.kernel_test", loader=None)

    def run_kernel_tests(program, kernel, out, err):
        calls.append((len(program.tests), kernel))
        out.write("kernel ran\n")
        return 1

    mod.run_kernel_tests = run_kernel_tests
    monkeypatch.setitem(sys.modules, "policyc.kernel_test", mod)
    (p,) = write(tmp_path, {"a.policy": TESTED})
    r = run("test", "--kernel", "6.12", p)
    assert (r.exit_code, r.stdout, calls) == (1, "kernel ran\n", [(1, "6.12")])


# --- vm, internal errors -----------------------------------------------------------------------
def test_vm_passes_the_command(monkeypatch):
    import policyc.cli.vm_cmd as vm_cmd

    seen = []
    monkeypatch.setattr(vm_cmd, "run_vm", lambda kernel, argv, out, err: seen.append((kernel, argv)) or 0)
    r = run("vm", "--kernel", "6.12", "--", "ls", "-la")
    assert (r.exit_code, seen) == (0, [("6.12", ["ls", "-la"])])


def test_internal_error_is_one_line_and_exit_3(tmp_path, monkeypatch):
    import policyc.cli.common as common

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(common, "load", boom)
    monkeypatch.delenv("POLICYC_DEBUG", raising=False)
    (p,) = write(tmp_path, {"a.policy": GOOD})
    r = run("check", p)
    assert r.exit_code == 3
    assert r.stderr.strip().count("\n") == 0 and "internal error" in r.stderr and "Traceback" not in r.stderr
