"""Who decided, as the kernel knew it (issue 17): the audit record's executable, parent, ids
and exec id come from the event, not from /proc after the fact. A short-lived process is named
after it is gone; a reused pid is attributed to the program that had it; an exec through a
symlink, a deleted executable and a memfd executable are named as the kernel sees them.

Each probe is first shown to work with no policy loaded (the control), then denied with the
record naming the rule and the process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import Loaded, tree
from .test_audit import read_into, records

R = "/tmp/pk-ident"
CG = "/sys/fs/cgroup"
CAT = os.path.realpath("/usr/bin/cat")
HEAD = os.path.realpath("/usr/bin/head")
DASH = os.path.realpath("/bin/dash")

IDENT = f"""
policy ident {{
    subject exe "/nonexistent/ident"
    default allow
    deny file read "{R}/secret*"
}}"""

MEMFD = f"""
policy identcg {{
    subject cgroup "/pk-ident"
    default allow
    deny file read "{R}/secret*"
}}"""


@pytest.fixture(scope="module", autouse=True)
def files():
    shutil.rmtree(R, ignore_errors=True)
    tree(R, {"secret": "s\n", "open": "o\n", "bin": None})
    yield


def _event_records(log: str, instance: str) -> list[dict]:
    evs = records(log, instance, "event")
    assert all(e["schema"] == 2 for e in evs)
    return evs


def test_short_lived_processes_are_named_by_the_kernel(tmp_path):
    # control: with no policy, the probe reads the file
    assert subprocess.run([CAT, f"{R}/secret"], capture_output=True).returncode == 0
    pol = Loaded(IDENT, "ident")
    log = str(tmp_path / "a.jsonl")
    try:
        pids = []
        for _ in range(100):
            p = pol.session.spawn([CAT, f"{R}/secret"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL)
            _, err = p.communicate(timeout=60)
            assert p.returncode == 1 and b"Permission denied" in err
            pids.append(p.pid)
        # the control beside it: an allowed read by the same program under the policy
        ok = pol.session.spawn([CAT, f"{R}/open"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert ok.communicate(timeout=60)[0] == b"o\n" and ok.returncode == 0
        read_into(log)   # every cat has exited long before the reader looks
        evs = _event_records(log, pol.session.name)
        assert len(evs) == 100
        rule = pol.rule_id_of("file read")
        for e, pid in zip(evs, pids):
            p = e["process"]
            assert e["rule_id"] == rule and e["rule"] == pol.rule_line(rule) and e["object"]["path"] == f"{R}/secret"
            assert e["decision"] == "deny" and e["errno"] == "EACCES"
            assert (p["pid"], p["tid"], p["exe"], p["exe_state"], p["name"]) == (pid, pid, CAT, "ok", "cat")
            assert p["parent"]["pid"] == os.getpid() and p["parent"]["exe"] == os.path.realpath(sys.executable)
            assert p["uid"] == p["euid"] == os.getuid() and p["gid"] == os.getgid()
            assert p["exe_inode"] == {"ino": os.stat(CAT).st_ino, "dev": _mount_dev(CAT)}
            assert p["cgroup_id"] and p["cgroup"] is not None
            assert e["host"]["name"] and e["seq"] >= 1
        assert len({e["process"]["exec_id"] for e in evs}) == 100
        seqs = [e["seq"] for e in evs]
        assert seqs == sorted(seqs) and len(set(seqs)) == 100
    finally:
        pol.close()


def _mount_dev(path: str) -> int:
    """The kernel's dev_t (major << 20 | minor) of the file system holding `path`: its
    super block's, as /proc/self/mountinfo lists it (stat()'s st_dev may differ: overlayfs, as
    the test VM's /usr is, reports a per-layer pseudo device)."""
    best, dev = "", None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        f = line.split()
        mnt = f[4]
        if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, dev = mnt, f[2]
    major, minor = map(int, dev.split(":"))
    return (major << 20) | minor


def _spawn_with_pid(pol: Loaded, argv: list[str], want: int | None):
    """Spawn argv as the subject; with `want`, make the kernel hand out that pid (ns_last_pid)."""
    for _ in range(20):
        if want is not None:
            Path("/proc/sys/kernel/ns_last_pid").write_text(str(want - 1))
        p = pol.session.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        p.communicate(timeout=60)
        if want is None or p.pid == want:
            return p
    pytest.fail(f"could not get pid {want} again")


def test_a_reused_pid_is_attributed_to_the_program_that_had_it(tmp_path):
    assert subprocess.run([HEAD, "-c1", f"{R}/secret"], capture_output=True).returncode == 0   # control
    pol = Loaded(IDENT, "identreuse")
    log = str(tmp_path / "r.jsonl")
    try:
        first = _spawn_with_pid(pol, [CAT, f"{R}/secret"], None)
        assert first.returncode == 1
        second = _spawn_with_pid(pol, [HEAD, "-c1", f"{R}/secret"], first.pid)
        assert second.returncode == 1 and second.pid == first.pid
        read_into(log)
        evs = [e for e in _event_records(log, pol.session.name) if e["process"]["pid"] == first.pid]
        assert [e["process"]["exe"] for e in evs] == [CAT, HEAD]
        assert [e["process"]["name"] for e in evs] == ["cat", "head"]
        assert [e["errno"] for e in evs] == ["EACCES", "EACCES"]
        assert evs[0]["process"]["exec_id"] != evs[1]["process"]["exec_id"]
        assert evs[0]["process"]["start_time_ns"] < evs[1]["process"]["start_time_ns"]
    finally:
        pol.close()


def test_symlink_and_deleted_executables(tmp_path):
    link = f"{R}/bin/catlink"
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(CAT, link)
    mysh = f"{R}/bin/mysh"
    shutil.copy(DASH, mysh)
    script = f"rm -f {mysh}; read x < {R}/secret; echo rc=$?"
    # control: no policy, both probes read the file
    assert subprocess.run([link, f"{R}/secret"], capture_output=True).returncode == 0
    r = subprocess.run([mysh, "-c", script], capture_output=True, text=True)
    assert "rc=0" in r.stdout and not os.path.exists(mysh)
    shutil.copy(DASH, mysh)
    pol = Loaded(IDENT, "identexe")
    log = str(tmp_path / "s.jsonl")
    try:
        a = pol.session.spawn([link, f"{R}/secret"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL)
        a.wait(timeout=60)
        b = pol.session.spawn([mysh, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL)
        out = b.communicate(timeout=60)[0].decode()
        assert a.returncode == 1 and "rc=0" not in out and "rc=" in out
        read_into(log)
        evs = {e["process"]["pid"]: e["process"] for e in _event_records(log, pol.session.name)}
        # an exec through a symlink runs (and is named by) its target
        assert (evs[a.pid]["exe"], evs[a.pid]["exe_state"]) == (CAT, "ok")
        # an executable unlinked after its exec keeps its path, marked deleted
        assert (evs[b.pid]["exe"], evs[b.pid]["exe_state"]) == (mysh, "deleted")
    finally:
        pol.close()


def test_memfd_executable_is_named_as_the_kernel_names_it(tmp_path):
    if not os.path.exists(f"{CG}/cgroup.procs"):
        subprocess.run(["mount", "-t", "cgroup2", "none", CG], check=True)
    os.makedirs(f"{CG}/pk-ident", exist_ok=True)
    # a dash run from a memfd (started ungoverned: policyc denies executing a file with no
    # path to a governed process) that joins the subject cgroup, then reads the secret
    runner = (
        "import os, sys\n"
        "fd = os.memfd_create('payload', 0)\n"
        f"os.write(fd, open({DASH!r}, 'rb').read())\n"
        "script = sys.argv[1]\n"
        "os.execve(f'/proc/self/fd/{fd}', ['payload', '-c', script], {'PATH': '/usr/bin:/bin'})\n")
    script = f"echo $$ > {CG}/pk-ident/cgroup.procs; read x < {R}/secret; echo rc=$?"
    r = subprocess.run([sys.executable, "-c", runner, script], capture_output=True, text=True)
    assert "rc=0" in r.stdout, r.stdout + r.stderr        # control: no policy
    pol = Loaded(MEMFD, "identmemfd")
    log = str(tmp_path / "m.jsonl")
    try:
        p = subprocess.Popen([sys.executable, "-c", runner, script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        out, err = p.communicate(timeout=60)
        assert "rc=0" not in out and "rc=" in out, out + err
        read_into(log)
        evs = [e for e in _event_records(log, pol.session.name) if e["process"]["pid"] == p.pid]
        assert len(evs) == 1 and evs[0]["errno"] == "EACCES"
        proc = evs[0]["process"]
        assert proc["exe"].startswith("memfd:payload") and proc["exe_state"] == "pseudo", proc
        assert proc["parent"]["exe"] == os.path.realpath(sys.executable)
        # outside the cgroup the same program reads (the control beside it)
        assert subprocess.run([CAT, f"{R}/secret"], capture_output=True).returncode == 0
    finally:
        pol.close()
