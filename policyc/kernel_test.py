"""`policyc test PATH... --kernel VERSION`: a policy's test blocks run against a real kernel
as well as the reference evaluator, and any disagreement is reported.

On the host, `run_kernel_tests` boots the kernel (policyc.vm) and runs this module inside it
(`python -m policyc.kernel_test PATH...`). In the guest each test block's policy is built
and loaded, and each expectation is performed for real by a probe process (policyc/probe.py)
that is governed when the evaluator says the event's process is: files and executables the
event needs are created first (the guest's filesystem is a throwaway copy-on-write view).
The guest prints one JSON line per expectation; the host prints the report. A denial must
also fail with the errno of the family that decides it (EACCES for file, exec and net, EPERM
for the rest: policyc/abi.py DENY_ERRNO_BY_FAMILY); one that fails with another errno fails
the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from .abi import deny_errno

MARK = "policyc-kernel-test:"
EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2
DENIAL_ERRNOS = ("EPERM", "EACCES")

def expected_errno(ev) -> str:
    """The errno a denial of `ev` fails with: its family's (abi.deny_errno), for a capability
    the errno of the kernel check that asked for it."""
    fam = ev.op.partition(".")[0]
    return deny_errno(fam, ev.cap if fam == "capability" else None)


# --- host ----------------------------------------------------------------------------------
def run_kernel_tests(program, kernel: str, out: TextIO, err: TextIO) -> int:
    from .vm import VmError, run_in_vm

    files = [f for f in program.files if not f.endswith(".test")] or list(program.files)
    if not program.tests:
        out.write("no test blocks\n")
        return EXIT_OK
    _prebuild(program, err)
    try:
        res = run_in_vm([sys.executable, "-m", "policyc.kernel_test", *files], kernel=kernel)
    except VmError as e:
        err.write(f"policyc: error: {e}\n")
        return EXIT_BAD_INPUT
    rows = [json.loads(line[len(MARK):]) for line in res.output.splitlines() if line.startswith(MARK)]
    if not rows:
        err.write(res.output[-4000:])
        err.write(f"policyc: error: the kernel test run in {kernel} reported nothing (exit {res.returncode})\n")
        return EXIT_BAD_INPUT
    return report(rows, kernel, out)


def _prebuild(program, err: TextIO) -> None:
    """Compile the objects on the host (clang under emulation is slow); the guest reads the
    host's object cache."""
    from .codegen import compile_c, render_c, template_families, template_flags

    for p in program.policies:
        compile_c(render_c(template_families(p), **template_flags(p)), "policy")


def _said(decision: str, errno: str | None) -> str:
    """A decision as the report says it: a denial with its errno (`deny (EACCES)`)."""
    return f"{decision} ({errno})" if decision == "deny" and errno else decision


def report(rows: list[dict], kernel: str, out: TextIO) -> int:
    failed = unsupported = disagree = 0
    for r in rows:
        if r["status"] == "unsupported":
            unsupported += 1
            out.write(f"{r['location']}: SKIP (kernel {kernel}) {r['text']}: {r['reason']}\n")
            continue
        want = r.get("expected_errno")
        got = _said(r["kernel"], r.get("errno"))
        # a denial that fails with another errno than its family's is a wrong answer too
        wrong_errno = r["kernel"] == "deny" and want is not None and r.get("errno") != want
        if r["kernel"] != r["evaluator"]:
            disagree += 1
            out.write(f"{r['location']}: DISAGREE {r['text']}: kernel {kernel} says {got}, "
                      f"the reference evaluator says {_said(r['evaluator'], want)}\n")
        if r["kernel"] != r["expected"] or wrong_errno:
            failed += 1
            out.write(f"{r['location']}: FAIL (kernel {kernel}) {r['text']}: got {got}"
                      + (f" ({r['detail']})" if r.get("detail") else "")
                      + (f", expected {_said(r['expected'], want)}" if r["expected"] == "deny" else "") + "\n")
    ran = len(rows) - unsupported
    out.write(f"kernel {kernel}: PASS: {ran - failed}/{ran}"
              + (f", {unsupported} not performable in a VM" if unsupported else "")
              + (f", {disagree} disagreements with the reference evaluator" if disagree else "") + "\n")
    return EXIT_FAIL if failed or disagree else EXIT_OK


# --- guest ---------------------------------------------------------------------------------
class _Unsupported(Exception):
    pass


def _ensure_file(path: str, executable: bool = False) -> None:
    p = Path(path)
    if p.exists():
        return
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if executable:
            shutil.copy("/bin/true", p)
        else:
            p.write_text("policyc kernel test\n")
    except OSError as e:
        raise _Unsupported(f"cannot create `{path}` in the VM ({e.strerror})")


def _ensure_absent(path: str) -> None:
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    except OSError as e:
        raise _Unsupported(f"cannot prepare `{path}` in the VM ({e.strerror})")


def _target_process(exe: str | None) -> subprocess.Popen:
    """A process to signal or trace: `exe` itself when it is a copy of sleep we made."""
    path = exe or "/usr/bin/sleep"
    if exe and not Path(exe).exists():
        try:
            Path(exe).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy("/usr/bin/sleep", exe)
        except OSError as e:
            raise _Unsupported(f"cannot create `{exe}` in the VM ({e.strerror})")
    elif exe and Path(exe).read_bytes()[:4096] != Path("/usr/bin/sleep").read_bytes()[:4096]:
        raise _Unsupported(f"`{exe}` exists in the VM and is not ours to start")
    return subprocess.Popen([path, "30"])


def _file_request(ev, op: str):
    if op == "create":
        _ensure_absent(ev.path)
    else:
        _ensure_file(ev.path, executable=(op == "exec-map"))
    req = {"op": op, "path": ev.path}
    if op in ("rename", "link"):
        req["dest"] = tempfile.mktemp(prefix="policyc-kt-", dir="/tmp")
    return req, None


def _exec_request(ev, op: str):
    _ensure_file(ev.path, executable=True)
    return {"op": "exec", "path": ev.path}, None


def _net_request(ev, op: str):
    if op == "create":
        return {"op": "net-create", "proto": ev.proto or "tcp"}, None
    if op not in ("connect", "bind"):
        raise _Unsupported(f"`net.{op}` cannot be performed")
    if ev.addr is None:
        raise _Unsupported("a network expectation needs an address to be performed")
    return {"op": op, "addr": ev.addr, "port": ev.port or 80, "proto": ev.proto or "tcp"}, None


def _capability_request(ev, op: str):
    scratch = tempfile.mktemp(prefix="policyc-kt-", dir="/tmp")
    Path(scratch).write_text("x")
    return {"op": "cap", "name": ev.cap, "path": scratch}, None


def _task_request(ev, op: str):
    if ev.target_cgroup:
        raise _Unsupported("`to cgroup` targets are not performed in the VM")
    target = _target_process(ev.target_exe)
    if ev.family == "signal":
        from .ir.vocab import SIGNALS

        return {"op": "signal", "pid": target.pid, "sig": SIGNALS[ev.signal]}, target
    return {"op": "ptrace", "pid": target.pid}, target


def _mount_request(ev, op: str):
    path = ev.path or tempfile.mkdtemp(prefix="policyc-kt-mnt-", dir="/tmp")
    Path(path).mkdir(parents=True, exist_ok=True)
    return {"op": "mount", "path": path}, None


# The guest side's registry of rule families: how an expectation's event is performed (a
# request to policyc/probe.py, and a process to clean up). One entry per family of
# policyc/ir/vocab.py FAMILIES (tests/unit/test_family_registries.py); an op a family's
# performer does not know is refused, never performed as another op.
PERFORM = {
    "file": _file_request,
    "exec": _exec_request,
    "net": _net_request,
    "mount": _mount_request,
    "capability": _capability_request,
    "signal": _task_request,
    "ptrace": _task_request,
    "module": lambda ev, op: ({"op": "module-load"}, None),
    "bpf": lambda ev, op: ({"op": "bpf"}, None),
}


def _perform(session, policy, ev, governed: bool) -> tuple[str, str, str | None]:
    """Do the event; (decision the kernel made, detail, the errno of a denial)."""
    from .probe import __file__ as probe_file

    fam, _, op = ev.op.partition(".")
    if fam not in PERFORM:
        raise _Unsupported(f"`{ev.op}` cannot be performed")
    req, cleanup = PERFORM[fam](ev, op)
    worker = subprocess.Popen([sys.executable, probe_file], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, bufsize=1)
    try:
        hello = json.loads(worker.stdout.readline())
        if op == "exec-map":
            _ask(worker, {"op": "preopen", "path": ev.path})
        if governed:
            session.govern(hello["pid"])
        session.drain()
        ans = _ask(worker, req)
    finally:
        worker.stdin.close()
        worker.wait(timeout=30)
        if cleanup is not None:
            cleanup.kill()
            cleanup.wait()
    if ans.get("unsupported"):
        raise _Unsupported(ans["unsupported"])
    if ans.get("error"):
        raise _Unsupported(ans["error"])
    events = [e for e in session.drain() if _matches(e, ev)]
    return kernel_answer(fam, ans, events)


def kernel_answer(fam: str, ans: dict, events: list) -> tuple[str, str, str | None]:
    """What the kernel decided, from the probe's answer and the events matching the
    expectation: (decision, detail, the errno the operation failed with when denied)."""
    got = ans.get("errno")
    if got in DENIAL_ERRNOS and (fam == "capability" or events):
        return "deny", (f"rule {events[0].rule_id}" if events and events[0].rule_id else ""), got
    if got not in (None, *DENIAL_ERRNOS) and not ans.get("ok"):
        if fam not in ("net",):
            return "allow", f"the operation failed otherwise: {got}", None
    if any(e.decision == "audit" for e in events):
        return "audit", "", None
    if got in DENIAL_ERRNOS:
        return "deny", f"{got} without an event", got
    return "allow", "", None


def _ask(worker, req: dict) -> dict:
    worker.stdin.write(json.dumps(req) + "\n")
    worker.stdin.flush()
    return json.loads(worker.stdout.readline())


def _matches(e, ev) -> bool:
    fam, _, op = ev.op.partition(".")
    if fam == "file":
        return e.family == "file" and e.path == ev.path and (e.op == op or op in ("rename", "link"))
    if fam == "exec":
        return e.op == "exec" and e.path == ev.path
    return e.family == fam


def guest_main(paths: list[str]) -> int:
    from . import pipeline
    from .evaluate import decide_policy, governs
    from .execute import Session

    # the same front end (checks included) as on the host: `program.files` lists the files
    # in program order, so the program is the one the host checked
    front = pipeline.front_end(paths)
    program = front.program
    if not front.ok:
        print(MARK + json.dumps({"status": "unsupported", "location": "-", "text": "-",
                                 "reason": "the policies do not load in the VM"}))
        return EXIT_BAD_INPUT
    out_dir = Path(tempfile.mkdtemp(prefix="policyc-kt-build-"))
    for case in program.tests:
        policy = program.policy(case.policy)
        res = pipeline.build(front, policy, out_dir)
        with Session(res.manifest_path, name=f"kt-{policy.name}"[:60]) as session:
            for x in case.expectations:
                ev = x.event
                evaluator = decide_policy(policy, ev).action if governs(policy, ev) else "allow"
                row = {"location": f"{x.span.file}:{x.span.line}", "text": x.text, "expected": x.decision,
                       "evaluator": evaluator, "expected_errno": expected_errno(ev)}
                try:
                    kernel, detail, errno = _perform(session, policy, ev, governs(policy, ev))
                    row.update(status="ran", kernel=kernel, detail=detail, errno=errno)
                except _Unsupported as e:
                    row.update(status="unsupported", reason=str(e))
                print(MARK + json.dumps(row), flush=True)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(guest_main(sys.argv[1:]))
