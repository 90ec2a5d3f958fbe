"""The example policies: clean under `check`, their tests pass, and they exercise what the
issue asks of them."""

from __future__ import annotations

import io

import pytest

from policyc.checks import run_checks
from policyc.cli.test_cmd import run_test
from policyc.diagnostics import Diagnostics
from policyc.evaluate import decide
from policyc.ir.model import Event
from policyc.lower import load_program

from _policyc_helpers import POLICIES

FILES = ["nginx.policy", "ci-runner.policy", "sshd.policy", "host-hardening.policy", "abstractions/base.policy"]


@pytest.fixture(scope="module")
def program():
    diags = Diagnostics()
    prog = load_program([str(POLICIES)], diags)
    assert prog is not None, [str(d) for d in diags.items]
    run_checks(prog, diags)
    assert diags.items == []
    return prog


@pytest.mark.parametrize("name", FILES)
def test_each_file_is_clean_and_tested(name):
    diags = Diagnostics()
    prog = load_program([str(POLICIES / name)], diags)
    assert prog is not None
    run_checks(prog, diags)
    assert [d.code for d in diags.items] == []
    if name != "abstractions/base.policy":
        tested = {tc.policy for tc in prog.tests}
        assert {p.name for p in prog.policies} <= tested
        out = io.StringIO()
        assert run_test([str(POLICIES / name)], out=out, err=io.StringIO()) == 0, out.getvalue()


def test_every_expectation_holds(program):
    assert sum(len(tc.expectations) for tc in program.tests) >= 60
    for tc in program.tests:
        policy = program.policy(tc.policy)
        for ex in tc.expectations:
            assert decide((policy,), ex.event).action == ex.decision, ex.text


def test_nginx_from_the_issue(program):
    p = program.policy("nginx")
    ev = lambda op, **kw: decide((p,), Event("/usr/sbin/nginx", op, **kw)).action  # noqa: E731
    assert ev("exec", path="/usr/bin/curl") == "deny"
    assert ev("file.read", path="/srv/www/index.html") == "allow"
    assert ev("file.read", path="/etc/passwd") == "audit"


def test_host_hardening(program):
    bpf, modules, shadow = (program.policy(n) for n in ("host-bpf", "host-modules", "host-shadow"))
    assert all(s.kind == "all" for p in (bpf, modules, shadow) for s in p.subjects)
    assert decide((modules,), Event("/usr/bin/anything", "module.load")).action == "deny"
    loader = dict(cgroup="/policyc.slice/policyc.service", ancestors=("/usr/lib/systemd/systemd",))
    assert decide((bpf,), Event("/usr/bin/python3.11", "bpf", **loader)).action == "allow"
    assert decide((bpf,), Event("/usr/bin/python3.11", "bpf", cgroup="/user.slice")).action == "deny"
    assert decide((shadow,), Event("/usr/bin/cat", "file.read", path="/etc/shadow")).action == "deny"
    assert decide((shadow,), Event("/usr/sbin/unix_chkpwd", "file.read", path="/etc/shadow")).action == "allow"


def test_ci_runner_keeps_secrets(program):
    p = program.policy("ci-runner")
    job = dict(cgroup="/system.slice/ci-jobs.slice/job-1.scope")
    for path in ("/root/.ssh/id_ed25519", "/home/bob/.ssh/id_rsa", "/etc/shadow", "/home/bob/.aws/credentials"):
        assert decide((p,), Event("/bin/sh", "file.read", path=path, **job)).action == "deny", path
    assert decide((p,), Event("/bin/sh", "net.connect", addr="169.254.169.254", port=80, proto="tcp",
                              **job)).action == "deny"
    assert decide((p,), Event("/bin/sh", "file.write", path="/run/docker.sock", **job)).action == "deny"
    assert decide((p,), Event("/bin/sh", "exec", path="/usr/bin/curl", **job)).action == "deny"
