"""`owner` in a real kernel: a file rule with `owner` speaks only for files whose owner (the
inode's i_uid) is the acting task's fsuid; a file being created is the creator's.

The worker runs as root (fsuid 0): the files the test leaves to root are its own, the ones it
chowns to uid 1000 are not. Under `default deny` an `allow ... owner` rule lets the worker
reach its own files and the default denies it the others (EACCES, an event naming the
default); a `deny ... owner` rule denies the worker its own files (an event naming that rule)
and leaves the others to the rule without `owner`. The kernel's decisions are held to the
reference evaluator's for the same events, with the owner fact the test set up.
"""

import os
import shutil
from pathlib import Path

import pytest

from policyc import abi
from policyc.evaluate import decide_policy
from policyc.ir.model import Event

from .harness import Loaded, Worker, governed_worker, tree

R = "/tmp/pk-owner"
OTHER_UID = 1000   # not root: the worker (root) does not own what this uid owns

POLICY = f"""
policy ownertest {{
    subject exe "/nonexistent/owner-subject"
    default deny
    allow file read, write owner "{R}/home/**"
    allow file create, write, delete owner "{R}/new/**"
    deny  file write owner "{R}/locked/**"
    allow file write "{R}/locked/**"
}}

test ownertest {{
    exe "/nonexistent/owner-subject"
    expect allow file read owner "{R}/home/mine"
    expect deny  file read "{R}/home/theirs"
    expect deny  file write owner "{R}/locked/mine"
    expect allow file write "{R}/locked/theirs"
    expect allow file create "{R}/new/made"
    expect deny  file delete "{R}/new/theirs"
}}
"""

THEIRS = ("home/theirs", "locked/theirs", "new/theirs")


@pytest.fixture(scope="module")
def files():
    shutil.rmtree(R, ignore_errors=True)
    tree(R, {"home/mine": "m\n", "home/theirs": "t\n", "locked/mine": "m\n", "locked/theirs": "t\n",
             "new/theirs": "t\n", "elsewhere": None})
    for rel in THEIRS:
        os.chown(f"{R}/{rel}", OTHER_UID, OTHER_UID)
        # writable by all: root then writes it without CAP_DAC_OVERRIDE, which `default deny`
        # denies (a capability denial, not the file rule this test is about)
        os.chmod(f"{R}/{rel}", 0o666)
    assert os.stat(f"{R}/home/mine").st_uid == os.getuid() == 0   # the worker is root: fsuid 0
    assert os.stat(f"{R}/home/theirs").st_uid == OTHER_UID
    yield


@pytest.fixture(scope="module")
def pol(files):
    with Loaded(POLICY, "owner") as p:
        yield p


@pytest.fixture
def worker(pol):
    yield from governed_worker(pol)


def one_event(pol, op, path):
    evs = [e for e in pol.drain() if e.op == op and e.path == path]
    assert len(evs) == 1, (op, path, pol.audit_lines(evs))
    return evs[0]


def evaluator(pol, op, path, owner):
    d = decide_policy(pol.policy, Event("/nonexistent/owner-subject", f"file.{op}", path=path, owner=owner))
    return d.action, (d.rule.id if d.rule else 0)


def test_probe_reaches_every_file_without_the_policy(files):
    """First the probe itself: with no policy loaded (this test runs before `pol` loads it,
    and its worker is governed by nothing) root reads and writes both kinds of file."""
    w = Worker()
    try:
        for rel in ("home/mine", "home/theirs", "locked/mine", "locked/theirs"):
            assert w.op("read", f"{R}/{rel}")["ok"], rel
            assert w.op("write", f"{R}/{rel}")["ok"], rel
    finally:
        w.close()


def test_own_file_is_allowed(pol, worker):
    assert worker.op("read", f"{R}/home/mine")["ok"]
    assert worker.op("write", f"{R}/home/mine")["ok"]
    assert [e for e in pol.drain() if e.path == f"{R}/home/mine"] == []
    assert evaluator(pol, "read", f"{R}/home/mine", True) == ("allow", pol.rule_id_of('read, write owner'))


def test_someone_elses_file_is_denied_by_the_default(pol, worker):
    path = f"{R}/home/theirs"
    ans = worker.op("read", path)
    assert ans == {"ok": False, "errno": abi.deny_errno("file")}, ans
    ev = one_event(pol, "read", path)
    assert (ev.decision, ev.reason, ev.rule_id) == ("deny", "default", 0)
    assert evaluator(pol, "read", path, False) == ("deny", 0)
    assert Path(path).read_text() == "t\n"


def test_deny_owner_denies_the_owner_only(pol, worker):
    mine, theirs = f"{R}/locked/mine", f"{R}/locked/theirs"
    ans = worker.op("write", mine)
    assert ans == {"ok": False, "errno": abi.deny_errno("file")}, ans
    ev = one_event(pol, "write", mine)
    rule = pol.rule_id_of("deny  file write owner")
    assert (ev.decision, ev.reason, ev.rule_id) == ("deny", "rule", rule)
    assert pol.rule_line(ev.rule_id) == str(next(r.span for r in pol.policy.rules if r.id == rule))
    assert evaluator(pol, "write", mine, True) == ("deny", rule)
    # not the worker's: the owner rule is not there, the allow without `owner` decides
    assert worker.op("write", theirs)["ok"]
    assert [e for e in pol.drain() if e.path == theirs] == []
    assert evaluator(pol, "write", theirs, False) == ("allow", pol.rule_id_of('allow file write "'))


def test_a_new_file_is_the_creators_own(pol, worker):
    """path_mknod decides the create (no inode yet: the creator's); the open that follows
    writes the new file (file_open), which the worker owns by then."""
    made = f"{R}/new/made"
    Path(made).unlink(missing_ok=True)
    assert worker.op("create", made)["ok"]
    assert os.stat(made).st_uid == 0
    assert [e for e in pol.drain() if e.path == made] == []
    assert evaluator(pol, "create", made, False) == ("allow", pol.rule_id_of("create, write, delete owner"))
    # and the worker's own new file may be deleted again (delete: the existing file's owner)
    assert worker.op("delete", made)["ok"]
    assert pol.drain() == []


def test_create_elsewhere_is_still_denied(pol, worker):
    """The control for the create: without an `owner` create rule for the place, the default."""
    path = f"{R}/elsewhere/new"
    ans = worker.op("create", path)
    assert ans == {"ok": False, "errno": abi.deny_errno("file")}, ans
    ev = one_event(pol, "create", path)
    assert (ev.reason, ev.rule_id) == ("default", 0)
    assert not Path(path).exists()


def test_delete_of_someone_elses_file_is_denied(pol, worker):
    path = f"{R}/new/theirs"
    ans = worker.op("delete", path)
    assert ans == {"ok": False, "errno": abi.deny_errno("file")}, ans
    ev = one_event(pol, "delete", path)
    assert (ev.reason, ev.rule_id) == ("default", 0)
    assert evaluator(pol, "delete", path, False) == ("deny", 0)
    assert Path(path).exists()


def test_ungoverned_worker_is_untouched(pol):
    w = Worker()
    try:
        assert w.op("read", f"{R}/home/theirs")["ok"]
        assert w.op("write", f"{R}/locked/mine")["ok"]
    finally:
        w.close()
    assert [e for e in pol.drain() if (e.path or "").startswith(R)] == []


def test_the_policys_test_block_passes_on_the_evaluator(pol):
    """The `test` block says the same as the kernel tests above (owned or not as set up here)."""
    (t,) = pol.program.tests
    for ex in t.expectations:
        d = decide_policy(pol.policy, ex.event)
        assert d.action == ex.decision, (ex.text, d.action)
