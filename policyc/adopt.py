"""Processes that started before their policy: govern them at load (docs/semantics.md,
"Processes running before load").

The kernel marks a task as governed when it execs a subject executable (`subject exe`) and
hands the mark to everything it starts (task_alloc). A daemon that already runs when its policy
loads made that exec before any program was attached: nothing marked it. After the policy's
programs are attached, `adopt` walks /proc and marks, in the policy's `subjects` task storage,
every running process whose executable matches a `subject exe` pattern, and all of its
descendants, with what the kernel's exec would have written there:

    SUBJECT_GOVERNED                      (what a subject's exec commits)
    | SUBJECT_EXCEPTED                    when the process's own executable matches an
                                          `except exe` (as an excepted program started by a
                                          governed one: it is not decided, its children are)
    | the bits the task already holds     (STICKY, PENDING, an exec in progress: kept)

The race with new processes is closed by the order: programs attached first, then the walk.
A process that execs a subject after the attach is marked by the kernel; one forked by a
process before that process is marked is found by the next walk (as its child), and walks
repeat until one finds nothing new to mark. A pid is never marked blind: its pidfd is opened
first, then /proc/PID/stat is read again, and only a process with the start time (stat field
22) the walk saw is marked; the pidfd then names the very process that was matched.

Task storage is per thread. pidfd_open() names a thread other than a thread-group leader only
with PIDFD_THREAD (Linux 6.9); on older kernels the threads a process already has when the
policy loads cannot be marked, and are reported as not governed (threads started later by the
marked leader inherit the mark).

`policyc exec` sessions never adopt: their subject is their command. `subject all` and
`subject cgroup` need nothing here: the kernel decides those on every hook.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

from . import abi

PIDFD_THREAD = os.O_EXCL           # linux/pidfd.h: PIDFD_THREAD is O_EXCL (Linux 6.9)
DELETED = " (deleted)"
MAX_PASSES = 8                     # walks at most; a walk that marks nothing new ends it
GOVERNED, EXCEPTED = abi.SUBJECT_GOVERNED, abi.SUBJECT_EXCEPTED


# ---- /proc ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    start: int                      # stat field 22: start time in clock ticks since boot
    state: str                      # stat field 3 (R, S, Z, ...)
    exe: str | None                 # readlink /proc/PID/exe, " (deleted)" taken off; None: unreadable
    deleted: bool = False


def _read_stat(path: Path) -> tuple[int, int, str] | None:
    """(ppid, start time, state) of a /proc stat file; None when it cannot be read. comm (field
    2) may hold spaces and parentheses: the fields are counted after its last `)`."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    end = raw.rfind(b")")
    if end < 0:
        return None
    rest = raw[end + 1:].split()
    try:
        # rest[0] is field 3 (state), so field N is rest[N - 3]
        return int(rest[1]), int(rest[19]), rest[0].decode("ascii", "replace")
    except (IndexError, ValueError):
        return None


def read_exe(proc_root: Path, pid: int) -> tuple[str | None, bool]:
    """(path, deleted) of a process's executable; (None, False) when it cannot be read (a
    kernel thread, a zombie, another user's process for a loader without CAP_SYS_PTRACE)."""
    try:
        exe = os.readlink(proc_root / str(pid) / "exe")
    except OSError:
        return None, False
    if exe.endswith(DELETED):
        return exe[:-len(DELETED)], True
    return exe, False


def read_proc(proc_root: Path, pid: int) -> Proc | None:
    st = _read_stat(proc_root / str(pid) / "stat")
    if st is None:
        return None
    exe, deleted = read_exe(proc_root, pid)
    return Proc(pid, st[0], st[1], st[2], exe, deleted)


def thread_start(proc_root: Path, pid: int, tid: int) -> int | None:
    st = _read_stat(proc_root / str(pid) / "task" / str(tid) / "stat")
    return None if st is None else st[1]


def threads_of(proc_root: Path, pid: int) -> list[int]:
    """The process's threads other than its leader."""
    try:
        names = os.listdir(proc_root / str(pid) / "task")
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit() and int(n) != pid)


def scan(proc_root: Path) -> dict[int, Proc]:
    out = {}
    try:
        names = os.listdir(proc_root)
    except OSError:
        return out
    for n in names:
        if n.isdigit():
            p = read_proc(proc_root, int(n))
            if p is not None:
                out[p.pid] = p
    return out


# ---- what the policy names -----------------------------------------------------------------------

class Patterns:
    """A manifest's `subject exe` and `except exe` globs, matched as the reference evaluator
    matches them (policyc/evaluate: glob_matches; the kernel's DFA is the same automaton)."""

    def __init__(self, subjects: Iterable[str], exceptions: Iterable[str]):
        from .diagnostics import Diagnostics
        from .ir.glob import parse_glob
        from .span import Span

        def globs(texts):
            out = []
            for t in texts:
                g = parse_glob(t, Span("<manifest>", 1, 1, 1, 1), Diagnostics())
                if g is not None:
                    out.append(g)
            return out

        self.subjects, self.exceptions = globs(subjects), globs(exceptions)

    @classmethod
    def from_manifest(cls, m: dict) -> "Patterns":
        def exes(kind):
            return [s["exe"] for s in m.get(kind, ()) if s.get("kind") == "exe" and s.get("exe")]
        return cls(exes("subjects"), exes("exceptions"))

    @staticmethod
    def _any(globs, exe: str | None) -> bool:
        from .evaluate import glob_matches

        return exe is not None and any(glob_matches(g, exe) for g in globs)

    def subject(self, exe: str | None) -> bool:
        return self._any(self.subjects, exe)

    def excepted(self, exe: str | None) -> bool:
        return self._any(self.exceptions, exe)


def select(procs: dict[int, Proc], patterns: Patterns, skip: Iterable[int] = ()) -> dict[int, int]:
    """pid -> the pid of the subject it is governed through (itself for a subject): every
    process whose executable matches a `subject exe`, and every descendant of one (by the parent
    links /proc shows now). Zombies and SKIP (the loader) are left out."""
    skip = set(skip)
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out: dict[int, int] = {}
    for p in sorted(procs.values(), key=lambda p: p.pid):
        if p.pid in out or not patterns.subject(p.exe):
            continue
        stack = [p.pid]
        while stack:
            pid = stack.pop()
            if pid in out:
                continue
            out[pid] = p.pid
            stack.extend(children.get(pid, ()))
    return {pid: via for pid, via in out.items()
            if pid not in skip and procs[pid].state not in ("Z", "X")}


# ---- marking -------------------------------------------------------------------------------------

class Marker(Protocol):
    """What adopt needs of the kernel (a fake in the unit tests)."""

    def open(self, pid: int, thread: bool) -> int: ...      # a pidfd; OSError as pidfd_open
    def close(self, handle: int) -> None: ...
    def get(self, handle: int) -> int | None: ...            # the task's state; None: no entry
    def set(self, handle: int, state: int) -> None: ...


class TaskStorage:
    """The policy's pinned `subjects` map (BPF_MAP_TYPE_TASK_STORAGE, keyed by a pidfd).
    runtime.mark_task only writes; adoption reads first, to keep the bits a task holds."""

    def __init__(self, pin_path: str):
        from .runtime import _libbpf as B
        from .runtime.errors import BpfError

        self.B, self.BpfError, self.pin = B, BpfError, pin_path
        self.fd = B.lib().bpf_obj_get(os.fsencode(pin_path))
        if self.fd < 0:
            raise BpfError(f"opening pinned map `{pin_path}` failed: {B.describe(self.fd)}")

    def open(self, pid: int, thread: bool) -> int:
        return os.pidfd_open(pid, PIDFD_THREAD if thread else 0)

    def close(self, handle: int) -> None:
        os.close(handle)

    def get(self, handle: int) -> int | None:
        B = self.B
        key = B.ffi.new("int *", handle)
        buf = B.ffi.new("char[]", abi.SUBJECT_STATE.size)
        rc = B.lib().bpf_map_lookup_elem(self.fd, key, buf)
        if rc == -errno.ENOENT:
            return None
        if rc < 0:
            raise self.BpfError(f"reading `{self.pin}` failed: {B.describe(rc)}")
        return abi.SUBJECT_STATE.unpack_fields(bytes(B.ffi.buffer(buf)))["state"]

    def set(self, handle: int, state: int) -> None:
        B = self.B
        key = B.ffi.new("int *", handle)
        rc = B.lib().bpf_map_update_elem(self.fd, key, abi.SUBJECT_STATE.pack_fields(state=state), B.BPF_ANY)
        if rc < 0:
            raise self.BpfError(f"marking a task in `{self.pin}` failed: {B.describe(rc)}")

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class Adopted:
    pid: int
    exe: str | None
    deleted: bool = False
    via: int | None = None          # the subject process it descends from (None: itself a subject)
    excepted: bool = False          # its own executable is an `except exe`: marked as the kernel would
    threads: int = 0                # other threads marked
    threads_not_governed: int = 0   # other threads that could not be marked (kernel < 6.9)

    def exe_text(self) -> str:
        return (self.exe or "?") + (DELETED if self.deleted else "")

    def to_dict(self) -> dict:
        return {"pid": self.pid, "exe": self.exe_text(), "via": self.via, "excepted": self.excepted,
                "threads": self.threads, "threads_not_governed": self.threads_not_governed}


@dataclass
class Report:
    """What one adoption did; `deploy.load_manifest(adopt=Report())` fills it."""

    policy: str = ""
    adopted: list[Adopted] = field(default_factory=list)
    already: int = 0                                    # governed before (a replace keeps the map)
    skipped: list[dict] = field(default_factory=list)   # {pid, exe, reason}: matched, not marked
    passes: int = 0
    unsettled: bool = False                             # the last walk still found new processes
    error: str | None = None                            # adoption could not run at all

    def threads_not_governed(self) -> int:
        return sum(a.threads_not_governed for a in self.adopted)

    def lines(self) -> list[str]:
        """The text `policyc load` and `load --sync` print (indented under the policy's line)."""
        out = []
        if self.error:
            out.append(f"  not adopting running processes: {self.error}")
            return out
        if self.adopted:
            n = len(self.adopted)
            out.append(f"  governed {n} running process{'' if n == 1 else 'es'}:")
            for a in self.adopted:
                notes = []
                if a.via is not None:
                    notes.append(f"child of {a.via}")
                if a.excepted:
                    notes.append("excepted: its children are governed")
                if a.threads:
                    notes.append(f"and {a.threads} other thread{'' if a.threads == 1 else 's'}")
                if a.threads_not_governed:
                    notes.append(f"{a.threads_not_governed} of its threads NOT governed: "
                                 "this kernel cannot name a thread by pidfd (Linux < 6.9)")
                out.append(f"    {a.pid} {a.exe_text()}" + (f" ({'; '.join(notes)})" if notes else ""))
        for s in self.skipped:
            out.append(f"  not governed: {s['pid']} {s['exe'] or '?'} ({s['reason']})")
        if self.unsettled:
            out.append(f"  still finding new processes after {self.passes} walks: some forked during "
                       "the load may not be governed")
        return out

    def to_json(self) -> list[dict]:
        return [a.to_dict() for a in self.adopted]


def _state(old: int | None, excepted: bool) -> int:
    return (old or 0) | GOVERNED | (EXCEPTED if excepted else 0)


def _mark_one(marker: Marker, handle: int, excepted: bool) -> bool:
    """Mark the task behind HANDLE; False when it already held that state."""
    old = marker.get(handle)
    new = _state(old, excepted)
    if old == new:
        return False
    marker.set(handle, new)
    return True


def adopt(manifest: dict, marker: Marker, proc_root: str | Path = "/proc",
          skip: Iterable[int] | None = None, report: Report | None = None) -> Report:
    """Mark the running processes MANIFEST's `subject exe` patterns govern (module docstring).
    Call it after the policy's programs are attached."""
    proc_root = Path(proc_root)
    report = report if report is not None else Report()
    report.policy = manifest.get("policy", "")
    patterns = Patterns.from_manifest(manifest)
    if not patterns.subjects:
        return report
    skip = {os.getpid()} if skip is None else set(skip)
    done: set[int] = set()            # pids decided (marked, already governed, or skipped)
    threads_done: set[tuple[int, int]] = set()
    entries: dict[int, Adopted] = {}
    for n in range(MAX_PASSES):
        report.passes = n + 1
        procs = scan(proc_root)
        chosen = select(procs, patterns, skip)
        if not chosen:
            break          # no subject runs: one that starts now is marked by its exec
        new = 0
        for pid, via in sorted(chosen.items()):
            if pid not in done:
                done.add(pid)
                entry = _adopt_process(marker, proc_root, patterns, procs[pid], via, report)
                if entry is not None:
                    entries[pid] = entry
                    new += 1
            if pid in entries:
                # threads the process had, or started before its leader was marked
                new += _adopt_threads(marker, proc_root, entries[pid], threads_done)
        if not new and n >= 1:
            break
    else:
        report.unsettled = True
    report.adopted = [entries[p] for p in sorted(entries)]
    return report


def _adopt_process(marker: Marker, proc_root: Path, patterns: Patterns, p: Proc, via: int,
                   report: Report) -> Adopted | None:
    """Mark one process (its leader task) if it is still the process the walk saw; the
    Adopted entry, or None (gone, reused, changed, already governed: counted in REPORT)."""
    try:
        h = marker.open(p.pid, False)
    except OSError:
        return None                                # gone since the walk
    try:
        now = read_proc(proc_root, p.pid)
        if now is None or now.start != p.start:
            # the pid is another process now (or none): the pidfd may name that one, not ours
            report.skipped.append({"pid": p.pid, "exe": p.exe, "reason": "exited, or pid reused, since the walk"})
            return None
        if via == p.pid and not patterns.subject(now.exe):
            report.skipped.append({"pid": p.pid, "exe": now.exe,
                                   "reason": f"exec'd `{now.exe}` since the walk: no longer a subject"})
            return None
        excepted = patterns.excepted(now.exe)
        try:
            changed = _mark_one(marker, h, excepted)
        except Exception as e:   # a BpfError: say it, go on with the others
            report.skipped.append({"pid": p.pid, "exe": now.exe, "reason": getattr(e, "message", str(e))})
            return None
    finally:
        marker.close(h)
    if not changed:
        # marked already: by its exec (a replace keeps the map), and its later threads with it
        report.already += 1
        return None
    return Adopted(p.pid, now.exe, now.deleted, None if via == p.pid else via, excepted)


def _adopt_threads(marker: Marker, proc_root: Path, entry: Adopted,
                   threads_done: set[tuple[int, int]]) -> int:
    """Mark the process's other threads (each has its own task storage), as their leader."""
    new, pid = 0, entry.pid
    for tid in threads_of(proc_root, pid):
        if (pid, tid) in threads_done:
            continue
        start = thread_start(proc_root, pid, tid)
        if start is None:
            continue
        try:
            h = marker.open(tid, True)
        except OSError as e:
            if e.errno == errno.EINVAL:           # no PIDFD_THREAD here (Linux < 6.9)
                threads_done.add((pid, tid))
                entry.threads_not_governed += 1
            continue
        try:
            if thread_start(proc_root, pid, tid) != start:
                continue
            try:
                changed = _mark_one(marker, h, entry.excepted)
            except Exception:
                continue
        finally:
            marker.close(h)
        threads_done.add((pid, tid))
        if changed:
            new += 1
            entry.threads += 1
    return new


def adopt_loaded(manifest: dict, subjects_pin: str, report: Report | None = None) -> Report:
    """adopt() on the kernel: the policy's pinned `subjects` map, the host's /proc."""
    report = report if report is not None else Report()
    storage = TaskStorage(subjects_pin)
    try:
        return adopt(manifest, storage, report=report)
    finally:
        storage.release()
