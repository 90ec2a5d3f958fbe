"""Every file operation and exec in a real kernel: denied -> EACCES and an event naming the
rule's line; allowed -> works; audit -> works and sends its event; ungoverned -> untouched."""

import os
import shutil
from pathlib import Path

import pytest

from .harness import Loaded, governed_worker, copy_true, tree

R = "/tmp/pk-files"

POLICY = f"""
policy fileops {{
    subject exe "/nonexistent/fileops-subject"
    default allow
    deny  file read     "{R}/read-denied"
    deny  file write    "{R}/write-denied"
    deny  file append   "{R}/append-denied"
    deny  file create   "{R}/new/create-denied"
    deny  file delete   "{R}/delete-denied"
    deny  file rename   "{R}/rename-denied"
    deny  file link     "{R}/link-denied"
    deny  file chmod    "{R}/chmod-denied"
    deny  file chown    "{R}/chown-denied"
    deny  file exec-map "{R}/map-denied"
    deny  exec          "{R}/bin/exec-denied"
    audit file read     "{R}/audited"
    deny  file create   "{R}/new/dir-denied"
}}
"""

FILES = ["read-denied", "write-denied", "append-denied", "delete-denied", "rename-denied",
         "link-denied", "chmod-denied", "chown-denied", "map-denied", "audited", "free"]


@pytest.fixture(scope="module")
def pol():
    shutil.rmtree(R, ignore_errors=True)
    tree(R, {f: "content\n" for f in FILES} | {"new": None, "out": None})
    copy_true(f"{R}/bin/exec-denied")
    copy_true(f"{R}/bin/exec-free")
    with Loaded(POLICY, "fileops") as p:
        yield p


@pytest.fixture
def worker(pol):
    yield from governed_worker(pol, preopen=[f"{R}/map-denied", f"{R}/free"])


def one_event(pol, op, path, decision="deny"):
    evs = [e for e in pol.drain() if e.op == op and e.path == path]
    assert len(evs) == 1, (op, path, evs)
    ev = evs[0]
    assert ev.decision == decision
    return ev


CASES = [
    ("read", "read-denied", {}, "read"),
    ("write", "write-denied", {}, "write"),
    ("append", "append-denied", {}, "append"),
    ("create", "new/create-denied", {}, "create"),
    ("delete", "delete-denied", {}, "delete"),
    ("rename", "rename-denied", {"dest": f"{R}/out/renamed"}, "rename"),
    ("link", "link-denied", {"dest": f"{R}/out/linked"}, "link"),
    ("chmod", "chmod-denied", {}, "chmod"),
    ("chown", "chown-denied", {}, "chown"),
    ("exec-map", "map-denied", {}, "exec-map"),
    ("mkdir", "new/dir-denied", {}, "create"),
]


@pytest.mark.parametrize("op,rel,kw,event_op", CASES, ids=[c[0] for c in CASES])
def test_denied_op_fails_with_eacces_and_names_its_rule(pol, worker, op, rel, kw, event_op):
    path = f"{R}/{rel}"
    ans = worker.op(op, path, **kw)
    assert ans == {"ok": False, "errno": "EACCES"}, ans
    ev = one_event(pol, event_op, path)
    rule = next(r for r in pol.policy.rules if r.decision == "deny" and any(g.text == path for g in r.paths))
    assert ev.rule_id == rule.id
    assert pol.rule_line(ev.rule_id) == str(rule.span)
    assert ev.reason == "rule" and ev.comm.startswith("python")


@pytest.mark.parametrize("op,kw", [
    ("read", {}), ("write", {}), ("append", {}), ("chmod", {}), ("chown", {}), ("exec-map", {}),
], ids=lambda x: x if isinstance(x, str) else "")
def test_allowed_op_works_and_sends_nothing(pol, worker, op, kw):
    ans = worker.op(op, f"{R}/free", **kw)
    assert ans["ok"], ans
    assert [e for e in pol.drain() if e.path == f"{R}/free"] == []


def test_allowed_create_delete_rename_link(pol, worker):
    assert worker.op("create", f"{R}/new/fine")["ok"]
    assert worker.op("link", f"{R}/new/fine", dest=f"{R}/new/fine2")["ok"]
    assert worker.op("rename", f"{R}/new/fine2", dest=f"{R}/new/fine3")["ok"]
    assert worker.op("delete", f"{R}/new/fine")["ok"]
    assert worker.op("delete", f"{R}/new/fine3")["ok"]
    assert pol.drain() == []


def test_write_rule_blocks_o_trunc_even_read_only(pol, worker):
    ans = worker.op("trunc-rdonly", f"{R}/write-denied")
    assert ans["errno"] == "EACCES"
    one_event(pol, "write", f"{R}/write-denied")
    assert Path(f"{R}/write-denied").read_text() == "content\n"


def test_truncate_is_a_write(pol, worker):
    assert worker.op("truncate", f"{R}/write-denied")["errno"] == "EACCES"
    one_event(pol, "write", f"{R}/write-denied")


def test_exec_denied_and_allowed(pol, worker):
    assert worker.op("exec", f"{R}/bin/exec-denied")["errno"] == "EACCES"
    ev = one_event(pol, "exec", f"{R}/bin/exec-denied")
    assert ev.hook == "bprm_check_security"
    assert ev.rule_id == pol.rule_id_of("deny  exec")
    ok = worker.op("exec", f"{R}/bin/exec-free")
    assert ok["ok"] and ok["exit"] == 0


def test_audit_rule_allows_and_sends_its_event(pol, worker):
    assert worker.op("read", f"{R}/audited")["ok"]
    ev = one_event(pol, "read", f"{R}/audited", decision="audit")
    assert ev.rule_id == pol.rule_id_of("audit file read")


def test_ungoverned_process_is_untouched(pol):
    from .harness import Worker

    w = Worker()  # not governed
    try:
        for op, rel in [("read", "read-denied"), ("write", "write-denied"), ("chmod", "chmod-denied")]:
            assert w.op(op, f"{R}/{rel}")["ok"]
        assert w.op("exec", f"{R}/bin/exec-denied")["ok"]
    finally:
        w.close()
    assert pol.drain() == []


def test_commands_run_as_subject_and_children_inherit(pol):
    # `sh` is the subject (started through policyc's trampoline); cat is its child and the
    # grandchild runs under `sh -c` again
    res = pol.run(["sh", "-c", f"cat {R}/read-denied; sh -c 'cat {R}/read-denied'; cat {R}/free"])
    assert res.stderr.count("Permission denied") == 2, res.stderr
    assert "content" in res.stdout
    denied = [e for e in res.events if e.op == "read" and e.path == f"{R}/read-denied"]
    assert len(denied) == 2
    assert len({e.pid for e in denied}) == 2
