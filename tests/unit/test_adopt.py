"""Adopting the processes that run before their policy loads (policyc/adopt.py): a fake /proc
tree in a temporary directory and a fake task storage (pidfds and the `subjects` map) stand for
the kernel; tests/kernel/test_adopt.py does it for real."""

from __future__ import annotations

import errno
import io
import json
import os
from pathlib import Path

import pytest

from policyc import abi, adopt, deploy, runtime
from policyc.cli import load as load_cli
from policyc.cli.load import run_load

G, X, STICKY = abi.SUBJECT_GOVERNED, abi.SUBJECT_EXCEPTED, abi.SUBJECT_STICKY


class FakeProc:
    """/proc: PID/stat (ppid, start time), PID/exe (a symlink: readlink is all adopt does),
    PID/task/TID/stat."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "self").mkdir()       # not a pid: ignored
        (root / "sys").mkdir()

    def add(self, pid: int, exe: str | None, ppid: int = 1, start: int = 1000, threads=(), state: str = "S",
            comm: str = "x"):
        d = self.root / str(pid)
        d.mkdir(parents=True, exist_ok=True)
        self.stat(d / "stat", pid, ppid, start, state, comm)
        if exe is not None:
            if (d / "exe").is_symlink():
                (d / "exe").unlink()
            os.symlink(exe, d / "exe")
        for tid in (pid, *threads):
            (d / "task" / str(tid)).mkdir(parents=True, exist_ok=True)
            self.stat(d / "task" / str(tid) / "stat", tid, ppid, start, state, comm)

    @staticmethod
    def stat(path: Path, pid: int, ppid: int, start: int, state: str, comm: str):
        # fields 1..22: pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
        # cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime
        rest = [ppid, pid, pid, 0, -1, 4194560, 0, 0, 0, 0, 0, 0, 0, 0, 20, 0, 1, 0, start, 1234, 56]
        path.write_text(f"{pid} ({comm}) {state} " + " ".join(map(str, rest)) + "\n")

    def remove(self, pid: int):
        import shutil
        shutil.rmtree(self.root / str(pid))


class FakeStorage:
    """The policy's `subjects` map keyed by pidfds: handles name tids; `threads` says whether
    pidfd_open takes PIDFD_THREAD (Linux 6.9+)."""

    def __init__(self, proc: FakeProc, threads: bool = True):
        self.proc, self.threads = proc, threads
        self.state: dict[int, int] = {}
        self.handles: dict[int, int] = {}
        self.next = 100
        self.on_open = None         # called with (pid, thread) after the pidfd is made
        self.writes: list[tuple[int, int]] = []

    def _alive(self, tid: int) -> bool:
        return any((d / "task" / str(tid)).is_dir() for d in self.proc.root.iterdir() if d.name.isdigit())

    def open(self, pid: int, thread: bool) -> int:
        if thread and not self.threads:
            raise OSError(errno.EINVAL, "Invalid argument")
        if not thread and not (self.proc.root / str(pid)).is_dir():
            raise ProcessLookupError(errno.ESRCH, "No such process")
        if thread and not self._alive(pid):
            raise ProcessLookupError(errno.ESRCH, "No such process")
        self.next += 1
        self.handles[self.next] = pid
        if self.on_open:
            self.on_open(pid, thread)
        return self.next

    def close(self, handle: int) -> None:
        del self.handles[handle]

    def get(self, handle: int):
        return self.state.get(self.handles[handle])

    def set(self, handle: int, state: int) -> None:
        tid = self.handles[handle]
        self.state[tid] = state
        self.writes.append((tid, state))


def manifest(subjects=(), exceptions=(), policy="p") -> dict:
    return {"policy": policy,
            "subjects": [{"kind": "exe", "exe": s, "cgroup": None} for s in subjects],
            "exceptions": [{"kind": "exe", "exe": s, "cgroup": None} for s in exceptions]}


@pytest.fixture
def proc(tmp_path):
    p = FakeProc(tmp_path / "proc")
    p.add(1, "/usr/lib/systemd/systemd", ppid=0)
    return p


def run(proc, storage, m, skip=()):
    return adopt.adopt(m, storage, proc.root, skip=skip)


def test_a_running_subject_is_marked_as_its_exec_would_and_others_are_not(proc):
    proc.add(100, "/usr/sbin/food")
    proc.add(200, "/usr/bin/other")
    proc.add(300, "/usr/sbin/foodie")
    st = FakeStorage(proc)
    r = run(proc, st, manifest(["/usr/sbin/food"]))
    assert st.state == {100: G}
    assert [(a.pid, a.exe, a.via) for a in r.adopted] == [(100, "/usr/sbin/food", None)]
    assert r.lines() == ["  governed 1 running process:", "    100 /usr/sbin/food"]
    assert r.to_json() == [{"pid": 100, "exe": "/usr/sbin/food", "via": None, "excepted": False,
                            "threads": 0, "threads_not_governed": 0}]
    assert not st.handles                         # every pidfd closed


def test_globs_mean_what_they_mean_to_the_kernel(proc):
    proc.add(100, "/opt/a/bin/x")
    proc.add(101, "/opt/a/bin/sub/y")
    proc.add(102, "/opt/b/bin/x")
    st = FakeStorage(proc)
    run(proc, st, manifest(["/opt/{a,c}/bin/*"]))
    assert st.state == {100: G}                   # `*` stops at `/`; {a,c} is not b
    st = FakeStorage(proc)
    run(proc, st, manifest(["/opt/**"]))
    assert st.state == {100: G, 101: G, 102: G}


def test_no_exe_subject_no_walk(proc):
    proc.add(100, "/usr/sbin/food")
    st = FakeStorage(proc)
    r = adopt.adopt({"policy": "p", "subjects": [{"kind": "cgroup", "exe": None, "cgroup": "/x"}]}, st, proc.root)
    assert st.state == {} and r.adopted == [] and r.passes == 0


def test_descendants_are_governed_through_the_subject(proc):
    proc.add(100, "/usr/sbin/food")
    proc.add(101, "/bin/sh", ppid=100)
    proc.add(102, "/bin/cat", ppid=101)
    proc.add(103, "/bin/sh", ppid=1)              # not a descendant
    proc.add(104, None, ppid=101)                 # exe unreadable: still a descendant
    proc.add(105, "/bin/true", ppid=100, state="Z")   # a zombie: nothing left to govern
    st = FakeStorage(proc)
    r = run(proc, st, manifest(["/usr/sbin/food"]))
    assert st.state == {100: G, 101: G, 102: G, 104: G}
    assert {a.pid: a.via for a in r.adopted} == {100: None, 101: 100, 102: 100, 104: 100}
    assert "    102 /bin/cat (child of 100)" in r.lines()


def test_except_exe_is_marked_excepted_as_the_kernel_does(proc):
    # the kernel: a governed process that execs an `except exe` is GOVERNED|EXCEPTED (not
    # decided itself; its children are governed again); one that only matches `except` is
    # nobody's business
    proc.add(100, "/opt/app/main")
    proc.add(101, "/opt/app/helper", ppid=100)
    proc.add(102, "/bin/sh", ppid=101)
    proc.add(103, "/opt/app/helper", ppid=1)
    st = FakeStorage(proc)
    r = run(proc, st, manifest(["/opt/app/main"], ["/opt/app/helper"]))
    assert st.state == {100: G, 101: G | X, 102: G}
    assert "    101 /opt/app/helper (child of 100; excepted: its children are governed)" in r.lines()
    # subject and exception at once (`subject exe "/opt/app/*" except exe "/opt/app/helper"`)
    st = FakeStorage(proc)
    run(proc, st, manifest(["/opt/app/*"], ["/opt/app/helper"]))
    assert st.state == {100: G, 101: G | X, 102: G, 103: G | X}


def test_a_deleted_executable_still_matches(proc):
    proc.add(100, "/usr/sbin/food (deleted)")     # upgraded under the running daemon
    st = FakeStorage(proc)
    r = run(proc, st, manifest(["/usr/sbin/food"]))
    assert st.state == {100: G}
    assert r.adopted[0].deleted and r.to_json()[0]["exe"] == "/usr/sbin/food (deleted)"
    assert r.lines()[1] == "    100 /usr/sbin/food (deleted)"


def test_pid_reuse_between_walk_and_pidfd_is_detected(proc):
    proc.add(100, "/usr/sbin/food", start=1000)
    st = FakeStorage(proc)

    def reuse(pid, thread):
        if pid == 100 and not thread:
            # food exited and another process got pid 100 before pidfd_open: other start time
            proc.remove(100)
            proc.add(100, "/usr/sbin/food", start=2000)
            st.on_open = None

    st.on_open = reuse
    r = run(proc, st, manifest(["/usr/sbin/food"]))
    assert st.state == {}                          # never marked through a pidfd of the wrong process
    assert r.skipped == [{"pid": 100, "exe": "/usr/sbin/food", "reason": "exited, or pid reused, since the walk"}]
    assert r.lines() == ["  not governed: 100 /usr/sbin/food (exited, or pid reused, since the walk)"]


def test_a_process_that_exited_before_its_pidfd_is_left_alone(proc):
    proc.add(100, "/usr/sbin/food")
    st = FakeStorage(proc)
    st.on_open = None
    real_open = st.open

    def gone(pid, thread):
        proc.remove(100)
        return real_open(pid, thread)

    st.open = gone
    r = run(proc, st, manifest(["/usr/sbin/food"]))
    assert st.state == {} and r.adopted == [] and r.skipped == []


def test_a_subject_that_exec_d_something_else_since_the_walk_is_not_marked(proc):
    proc.add(100, "/usr/sbin/food")
    st = FakeStorage(proc)

    def execs(pid, thread):
        proc.add(100, "/usr/bin/other")            # same process (start time), a new program
        st.on_open = None

    st.on_open = execs
    r = run(proc, st, manifest(["/usr/sbin/food"]))
    assert st.state == {}
    assert "no longer a subject" in r.skipped[0]["reason"]


def test_unreadable_entries_are_skipped(proc):
    proc.add(100, "/usr/sbin/food")
    (proc.root / "300").mkdir()                                    # no stat: gone mid-walk
    (proc.root / "301").mkdir()
    (proc.root / "301" / "stat").write_text("garbage")            # unparsable
    proc.add(302, None)                                            # exe unreadable (kernel thread)
    (proc.root / "303").mkdir()
    (proc.root / "303" / "stat").write_text("303 (a) b) c")        # too short after the last `)`
    proc.add(304, "/usr/sbin/food", ppid=100, comm="fo) (o d")    # a comm with `)` and spaces
    st = FakeStorage(proc)
    r = run(proc, st, manifest(["/usr/sbin/food"]))
    assert st.state == {100: G, 304: G}
    assert [a.via for a in r.adopted] == [None, 100]


def test_bits_the_task_holds_are_kept_and_already_governed_ones_not_listed(proc):
    proc.add(100, "/usr/sbin/food")
    proc.add(101, "/usr/sbin/food")
    proc.add(102, "/usr/sbin/food")
    st = FakeStorage(proc)
    st.state = {100: STICKY, 101: G, 102: G | STICKY}
    r = run(proc, st, manifest(["/usr/sbin/food"]))
    assert st.state == {100: STICKY | G, 101: G, 102: G | STICKY}
    assert st.writes == [(100, STICKY | G)]
    assert [a.pid for a in r.adopted] == [100] and r.already == 2


def test_threads_are_marked_where_the_kernel_can_name_them(proc):
    proc.add(100, "/usr/sbin/food", threads=(107, 108))
    st = FakeStorage(proc, threads=True)
    r = run(proc, st, manifest(["/usr/sbin/food"]))
    assert st.state == {100: G, 107: G, 108: G}
    assert r.adopted[0].threads == 2 and r.adopted[0].threads_not_governed == 0


def test_threads_the_kernel_cannot_name_are_reported_not_governed(proc):
    proc.add(100, "/usr/sbin/food", threads=(107, 108))
    st = FakeStorage(proc, threads=False)        # Linux < 6.9: pidfd_open(tid) is EINVAL
    r = run(proc, st, manifest(["/usr/sbin/food"]))
    assert st.state == {100: G}
    assert r.adopted[0].threads_not_governed == 2 and r.threads_not_governed() == 2
    assert r.lines()[1] == ("    100 /usr/sbin/food (2 of its threads NOT governed: this kernel cannot name "
                            "a thread by pidfd (Linux < 6.9))")
    assert r.to_json()[0]["threads_not_governed"] == 2


def test_a_thread_replaced_between_listing_and_pidfd_is_not_marked(proc):
    proc.add(100, "/usr/sbin/food", threads=(107,))
    st = FakeStorage(proc)

    def respawn(pid, thread):
        if thread and pid == 107:
            FakeProc.stat(proc.root / "100" / "task" / "107" / "stat", 107, 1, 5000, "S", "x")
            st.on_open = None

    st.on_open = respawn
    run(proc, st, manifest(["/usr/sbin/food"]))
    assert 107 not in st.state or st.state[107] == G   # a later walk may take the new thread 107
    assert 100 in st.state


def test_a_child_forked_before_its_parent_is_marked_is_found_by_the_next_walk(proc):
    proc.add(100, "/usr/sbin/food")
    st = FakeStorage(proc)

    def fork(pid, thread):
        if pid == 100:
            # forked after the walk, before the parent's mark: the kernel did not mark it
            proc.add(110, "/usr/sbin/food", ppid=100, start=1500)
            proc.add(100, "/usr/sbin/food", threads=(111,))   # and a thread
            st.on_open = None

    st.on_open = fork
    r = run(proc, st, manifest(["/usr/sbin/food"]))
    assert st.state == {100: G, 110: G, 111: G}
    assert r.passes >= 2 and [a.pid for a in r.adopted] == [100, 110]


def test_the_loader_itself_is_left_out(proc):
    proc.add(100, "/usr/bin/python3")
    proc.add(101, "/usr/bin/python3", ppid=100)
    st = FakeStorage(proc)
    run(proc, st, manifest(["/usr/bin/python3"]), skip={100})
    assert st.state == {101: G}


def test_a_failed_write_is_reported_and_the_others_go_on(proc):
    proc.add(100, "/usr/sbin/food")
    proc.add(101, "/usr/sbin/food")
    st = FakeStorage(proc)
    real_set = st.set

    def refuse(handle, state):
        if st.handles[handle] == 100:
            raise runtime.BpfError("marking a task failed: ENOMEM (Cannot allocate memory)")
        real_set(handle, state)

    st.set = refuse
    r = run(proc, st, manifest(["/usr/sbin/food"]))
    assert st.state == {101: G}
    assert r.skipped == [{"pid": 100, "exe": "/usr/sbin/food",
                          "reason": "marking a task failed: ENOMEM (Cannot allocate memory)"}]


# ---- load and load --sync ----------------------------------------------------------------------------

@pytest.fixture
def fake_load(tmp_path, monkeypatch):
    """deploy on top of a runtime that loads nothing; adopt_loaded replaced by one that adopts
    pid 4242 (and remembers the pin it was given)."""
    monkeypatch.setattr(deploy, "PIN_ROOT", str(tmp_path / "pins"))
    monkeypatch.setenv("POLICYC_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(deploy, "check_kernel", lambda: None)
    monkeypatch.setattr(load_cli, "check_kernel", lambda: None)   # never probe BPF on the host
    calls = []

    def load(obj, name, fills, pin_root, replace=False, shared=()):
        d = tmp_path / "pins" / name
        (d / "links").mkdir(parents=True, exist_ok=True)
        (d / "links" / "policyc_file_open").write_text("x")
        return runtime.LoadedPolicy(name, str(d), {"policyc_file_open": str(d / "links/policyc_file_open")},
                                    {"subjects": str(d / "maps/subjects")}, replaced=replace)

    def adopt_loaded(m, pin, report):
        calls.append((m["policy"], pin))
        report.adopted.append(adopt.Adopted(4242, "/usr/sbin/food"))
        return report

    monkeypatch.setattr(deploy.runtime, "load", load)
    monkeypatch.setattr(adopt, "adopt_loaded", adopt_loaded)
    out = tmp_path / "out"
    out.mkdir()
    (out / "p.bpf.o").write_bytes(b"\x7fELF")
    m = {"format": 1, "policy": "p", "object": "p.bpf.o", "maps": {}, "mode": "enforce", "rules": [],
         "subjects": [{"kind": "exe", "exe": "/usr/sbin/food", "cgroup": None}], "exceptions": []}
    (out / "p.manifest.json").write_text(json.dumps(m))
    return out, calls


def test_load_adopts_after_attaching_and_says_so(fake_load, tmp_path):
    out_dir, calls = fake_load
    out, err = io.StringIO(), io.StringIO()
    assert run_load([str(out_dir / "p.manifest.json")], None, False, out, err) == 0, err.getvalue()
    assert calls == [("p", str(tmp_path / "pins/p/maps/subjects"))]
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("loaded p (enforce, 0 rules, 1 hooks)")
    assert lines[1:] == ["  governed 1 running process:", "    4242 /usr/sbin/food"]
    assert deploy.load_info("p")["adopted"][0]["pid"] == 4242


def test_load_json_has_adopted(fake_load):
    out_dir, calls = fake_load
    out, err = io.StringIO(), io.StringIO()
    assert run_load([str(out_dir / "p.manifest.json")], None, False, out, err, as_json=True) == 0, err.getvalue()
    doc = json.loads(out.getvalue())
    assert doc["loaded"][0]["name"] == "p"
    assert doc["loaded"][0]["adopted"] == [{"pid": 4242, "exe": "/usr/sbin/food", "via": None, "excepted": False,
                                            "threads": 0, "threads_not_governed": 0}]


def test_no_adopt_skips_it(fake_load):
    out_dir, calls = fake_load
    out, err = io.StringIO(), io.StringIO()
    assert run_load([str(out_dir / "p.manifest.json")], None, False, out, err, adopt=False) == 0
    assert calls == [] and out.getvalue().count("\n") == 1
    assert "adopted" not in deploy.load_info("p")


def test_sync_adopts_and_says_so_under_the_policy_line(fake_load):
    out_dir, calls = fake_load
    out, err = io.StringIO(), io.StringIO()
    assert run_load([], None, False, out, err, sync=str(out_dir)) == 0, err.getvalue()
    assert out.getvalue().splitlines() == ["loaded p (enforce, 0 rules)", "  governed 1 running process:",
                                           "    4242 /usr/sbin/food", "sync: 1 loaded"]
    out = io.StringIO()
    assert run_load([], None, False, out, err, sync=str(out_dir), adopt=False) == 0
    assert len(calls) == 1                        # unchanged: nothing loaded, nothing adopted


def test_json_does_not_go_with_sync(fake_load):
    out_dir, _ = fake_load
    err = io.StringIO()
    assert run_load([], None, False, io.StringIO(), err, sync=str(out_dir), as_json=True) != 0
    assert "--json does not go with --sync" in err.getvalue()


def test_a_failed_adoption_leaves_the_policy_loaded(fake_load, monkeypatch):
    out_dir, _ = fake_load

    def broken(m, pin, report):
        raise runtime.BpfError("opening pinned map `x` failed: EPERM")

    monkeypatch.setattr(adopt, "adopt_loaded", broken)
    out, err = io.StringIO(), io.StringIO()
    assert run_load([str(out_dir / "p.manifest.json")], None, False, out, err) == 0
    assert out.getvalue().splitlines()[1] == "  not adopting running processes: opening pinned map `x` failed: EPERM"


def test_a_fork_storm_that_never_settles_is_said(proc):
    proc.add(100, "/usr/sbin/food")
    st = FakeStorage(proc)
    born = iter(range(1000, 2000))

    def fork(pid, thread):
        proc.add(next(born), "/usr/sbin/food", ppid=100, start=1500)

    st.on_open = fork
    r = run(proc, st, manifest(["/usr/sbin/food"]))
    assert r.passes == adopt.MAX_PASSES and r.unsettled
    assert r.lines()[-1].startswith(f"  still finding new processes after {adopt.MAX_PASSES} walks")
