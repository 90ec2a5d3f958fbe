"""Exec transitions in a real kernel: `allow exec "X" as policy NAME` hands the program (and
what it starts) to policy NAME at its exec, `as unconfined` lets it leave; an exec handed to a
policy that is not loaded fails closed; a process the policy still governs may not attach to
one that left. Each probe is first run with no policy loaded."""

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from policyc import abi
from policyc.execute import Session

from .harness import build, tree

R = "/tmp/pk-trans"
PID = os.getpid()
OUTER = f"trouter{PID}"
INNER = f"trinner{PID}"

OUTER_POLICY = f"""
policy {OUTER} {{
    subject exe "/nonexistent/outer"
    default allow
    deny file read "{R}/secret-outer"
    allow exec "{R}/bin/inner" as policy {INNER}
    allow exec "{R}/bin/free" as unconfined
}}
"""

INNER_POLICY = f"""
policy {INNER} {{
    subject exe "/nonexistent/inner"
    default allow
    deny file read "{R}/secret-inner"
}}
"""

# PTRACE_ATTACH of argv[1]: "ptrace ok" (detached again) or "ptrace ERRNO"
ATTACH = ("import ctypes, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"
          "r = libc.ptrace(16, int(sys.argv[1]), 0, 0)\nprint('ptrace', 'ok' if r == 0 else ctypes.get_errno())\n"
          "r == 0 and libc.ptrace(17, int(sys.argv[1]), 0, 0)\n")


def reads(*names: str) -> str:
    """sh: read each secret with the shell's own `read` (no child), then with cat (a child)."""
    return "; ".join(f"read x < {R}/{n} && echo \"{n}=$x\"; cat {R}/{n}" for n in names)


@pytest.fixture(scope="module", autouse=True)
def files():
    shutil.rmtree(R, ignore_errors=True)
    tree(R, {"secret-outer": "o1\n", "secret-inner": "i1\n", "bin": None})
    sh = os.path.realpath("/bin/sh")
    for name in ("inner", "free", "plain"):
        shutil.copy(sh, f"{R}/bin/{name}")
        os.chmod(f"{R}/bin/{name}", 0o755)
    Path(f"{R}/attach.py").write_text(ATTACH)
    yield
    shutil.rmtree(R, ignore_errors=True)


def load(text: str, name: str) -> tuple:
    _, policy, manifest = build(text, name)
    return policy, Session(manifest, name=name)


def rule_id(policy, fragment: str) -> int:
    return next(r.id for r in policy.rules if fragment in r.text)


def secret_events(events, name: str):
    return [e for e in events if e.path == f"{R}/{name}"]


def test_probes_work_with_no_policy():
    for prog in ("inner", "free", "plain"):
        r = subprocess.run([f"{R}/bin/{prog}", "-c", reads("secret-outer", "secret-inner")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "secret-outer=o1" in r.stdout and "secret-inner=i1" in r.stdout, r.stdout
        assert r.stdout.count("o1") == 2 and r.stdout.count("i1") == 2, r.stdout


def test_handing_to_a_policy_that_is_not_loaded_fails_closed():
    policy, outer = load(OUTER_POLICY, OUTER)
    try:
        res = outer.run(["/bin/sh", "-c", f"{R}/bin/inner -c 'echo ran'; echo rc=$?"])
        assert "ran" not in res.stdout and "rc=126" in res.stdout, res.stdout + res.stderr
        assert "Permission denied" in res.stderr, res.stderr
        evs = [e for e in res.events if e.path == f"{R}/bin/inner"]
        assert len(evs) == 1, res.events
        ev = evs[0]
        assert ev.decision == "deny" and ev.reason == "transition-unloaded", ev
        assert ev.rule_id == rule_id(policy, "as policy"), ev
        rec = outer.record(ev)
        assert rec["errno"] == "EACCES", rec
        # the control beside it: the policy still governs and decides the rest
        res = outer.run(["/bin/sh", "-c", reads("secret-outer")])
        assert "o1" not in res.stdout and "Permission denied" in res.stderr, res.stdout + res.stderr
        assert len(secret_events(res.events, "secret-outer")) == 2, res.events
    finally:
        outer.close()


@pytest.fixture(scope="module")
def both():
    """Both policies, loaded once for the tests below (each load is an object load under TCG)."""
    outer_policy, outer = load(OUTER_POLICY, OUTER)
    try:
        inner_policy, inner = load(INNER_POLICY, INNER)
    except BaseException:
        outer.close()
        raise
    yield outer_policy, outer, inner_policy, inner
    outer.close()
    inner.close()


def test_as_policy_hands_the_program_and_its_children_over(both):
    outer_policy, outer, inner_policy, inner = both
    inner.drain()
    res = outer.run(["/bin/sh", "-c", f"{R}/bin/inner -c '{reads('secret-outer', 'secret-inner')}'"])
    # under the inner policy: the outer policy's secret is readable, by the program and its child
    assert res.stdout.count("o1") == 2, res.stdout + res.stderr
    assert not secret_events(res.events, "secret-outer"), res.events
    # the inner policy's own rule denies its secret, to the program (the builtin) and to cat
    assert "i1" not in res.stdout and res.stderr.count("Permission denied") == 2, res.stdout + res.stderr
    evs = secret_events(inner.drain(), "secret-inner")
    assert len(evs) == 2 and {e.comm for e in evs} == {"inner", "cat"}, evs
    deny = rule_id(inner_policy, "secret-inner")
    for e in evs:
        assert e.decision == "deny" and e.reason == "rule" and e.rule_id == deny, e
        assert inner.record(e)["errno"] == "EACCES"
    # control: a program with no `as` rule stays under the outer policy
    res = outer.run(["/bin/sh", "-c", f"{R}/bin/plain -c '{reads('secret-outer', 'secret-inner')}'"])
    assert "o1" not in res.stdout and res.stdout.count("i1") == 2, res.stdout + res.stderr
    evs = secret_events(res.events, "secret-outer")
    assert len(evs) == 2 and {e.rule_id for e in evs} == {rule_id(outer_policy, "secret-outer")}, evs
    assert not secret_events(inner.drain(), "secret-inner")


def test_as_unconfined_leaves_with_its_children(both):
    outer_policy, outer, _, inner = both
    inner.drain()
    res = outer.run(["/bin/sh", "-c", f"{R}/bin/free -c '{reads('secret-outer', 'secret-inner')}'"])
    assert res.stdout.count("o1") == 2 and res.stdout.count("i1") == 2, res.stdout + res.stderr
    assert not secret_events(res.events, "secret-outer") and not secret_events(inner.drain(), "secret-inner")
    # the shell that started it is still governed
    res = outer.run(["/bin/sh", "-c", f"{R}/bin/free -c 'echo left'; {reads('secret-outer')}"])
    assert "left" in res.stdout and "o1" not in res.stdout, res.stdout + res.stderr
    assert len(secret_events(res.events, "secret-outer")) == 2, res.events


def test_no_attaching_to_a_program_that_left(both):
    _, outer, _, _ = both
    # `exec sleep`: the program that left (or stayed) becomes the sleep, which inherits its
    # state; `kill -9 $!` ends it even when the attach left it stopped (a tracer that exits
    # without waiting for the stop leaves a SIGSTOP behind), which would hold the output open
    script = (f"{R}/bin/{{prog}} -c 'exec sleep 20' & sleep 0.5; python3 {R}/attach.py $!; kill -9 $!")
    # control: the governed shell may attach to a program that stayed (ptrace rules: none)
    res = outer.run(["/bin/sh", "-c", script.format(prog="plain")])
    assert "ptrace ok" in res.stdout, res.stdout + res.stderr
    res = outer.run(["/bin/sh", "-c", script.format(prog="free")])
    assert f"ptrace {errno.EPERM}" in res.stdout, res.stdout + res.stderr
    evs = [e for e in res.events if e.family == "ptrace"]
    assert len(evs) == 1 and evs[0].decision == "deny" and evs[0].reason == "protect", res.events
    assert outer.record(evs[0])["errno"] == "EPERM"

