"""`policyc test --kernel`'s judging, without a kernel (policyc/kernel_test.py): what the
kernel decided from a probe's answer, the errno a denial must fail with (the deciding family's,
#16), and the report of rows the guest sends."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from policyc import kernel_test as K
from policyc.ir.model import Event


def ev(op: str, **kw) -> Event:
    return Event("/usr/bin/true", op, **kw)


@pytest.mark.parametrize("event,want", [
    (ev("file.read", path="/x"), "EACCES"),
    (ev("file.write", path="/x"), "EACCES"),
    (ev("file.rename", path="/x"), "EACCES"),
    (ev("exec", path="/bin/x"), "EACCES"),
    (ev("net.connect", addr="10.0.0.1", port=80), "EACCES"),
    (ev("net.bind", addr="0.0.0.0", port=80), "EACCES"),
    (ev("net.create", proto="packet"), "EACCES"),
    (ev("mount", path="/mnt"), "EPERM"),
    (ev("signal", signal="term"), "EPERM"),
    (ev("ptrace"), "EPERM"),
    (ev("module.load"), "EPERM"),
    (ev("bpf"), "EPERM"),
    (ev("capability", cap="net_raw"), "EPERM"),
    (ev("capability", cap="sys_admin"), "EPERM"),
    # the kernel check that asked for these refuses the call with EACCES
    (ev("capability", cap="net_bind_service"), "EACCES"),
    (ev("capability", cap="dac_override"), "EACCES"),
], ids=lambda x: x.op + (f"-{x.cap}" if getattr(x, "cap", None) else "") if isinstance(x, Event) else x)
def test_expected_errno_is_the_deciding_familys(event, want):
    assert K.expected_errno(event) == want


def _event(decision="deny", rule_id=3):
    return SimpleNamespace(decision=decision, rule_id=rule_id)


def test_kernel_answer_keeps_the_errno_of_a_denial():
    assert K.kernel_answer("file", {"ok": False, "errno": "EACCES"}, [_event()]) == ("deny", "rule 3", "EACCES")
    # a wrong errno is still a denial, reported with the errno it had (the report judges it)
    assert K.kernel_answer("file", {"ok": False, "errno": "EPERM"}, [_event()]) == ("deny", "rule 3", "EPERM")
    assert K.kernel_answer("capability", {"ok": False, "errno": "EPERM"}, []) == ("deny", "", "EPERM")
    assert K.kernel_answer("file", {"ok": False, "errno": "EACCES"}, []) == ("deny", "EACCES without an event", "EACCES")


def test_kernel_answer_without_a_denial_has_no_errno():
    assert K.kernel_answer("file", {"ok": True, "errno": None}, []) == ("allow", "", None)
    assert K.kernel_answer("file", {"ok": True, "errno": None}, [_event("audit")]) == ("audit", "", None)
    assert K.kernel_answer("file", {"ok": False, "errno": "ENOENT"}, []) == \
        ("allow", "the operation failed otherwise: ENOENT", None)


def _row(**kw) -> dict:
    row = {"status": "ran", "location": "p.policy:9", "text": 'expect deny file read "/x"', "expected": "deny",
           "evaluator": "deny", "kernel": "deny", "detail": "", "errno": "EACCES", "expected_errno": "EACCES"}
    return {**row, **kw}


def test_report_passes_a_denial_with_its_familys_errno():
    out = io.StringIO()
    assert K.report([_row()], "6.1", out) == K.EXIT_OK
    assert out.getvalue() == "kernel 6.1: PASS: 1/1\n"


def test_report_fails_a_denial_with_another_errno():
    out = io.StringIO()
    assert K.report([_row(errno="EPERM")], "6.1", out) == K.EXIT_FAIL
    assert out.getvalue().splitlines() == [
        'p.policy:9: FAIL (kernel 6.1) expect deny file read "/x": got deny (EPERM), expected deny (EACCES)',
        "kernel 6.1: PASS: 0/1",
    ]


def test_report_says_the_expected_errno_of_a_missed_denial():
    out = io.StringIO()
    rows = [_row(kernel="allow", errno=None, text='expect deny signal term', expected_errno="EPERM")]
    assert K.report(rows, "6.12", out) == K.EXIT_FAIL
    lines = out.getvalue().splitlines()
    assert lines[0] == ("p.policy:9: DISAGREE expect deny signal term: kernel 6.12 says allow, "
                        "the reference evaluator says deny (EPERM)")
    assert lines[1] == "p.policy:9: FAIL (kernel 6.12) expect deny signal term: got allow, expected deny (EPERM)"


def test_report_of_an_allow_or_audit_ignores_the_errno():
    out = io.StringIO()
    rows = [_row(expected="allow", evaluator="allow", kernel="allow", errno=None),
            _row(expected="audit", evaluator="audit", kernel="audit", errno=None)]
    assert K.report(rows, "6.1", out) == K.EXIT_OK
    assert out.getvalue() == "kernel 6.1: PASS: 2/2\n"
