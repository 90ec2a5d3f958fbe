"""The audit log's records (docs/audit-log.md): building them from decoded ring-buffer events,
and their text form.

Schema 2 (what `policyc audit` writes): who decided is what the kernel knew when it decided
(`process.*`: the executable's path as the kernel resolved it, the parent's, ids, the process's
start time and an exec id that survives pid reuse); the reader adds only what the kernel cannot
(a user name for a uid, the cgroup path for its id, the host's ids), never anything read
through a pid. Schema 1 (`policyc audit --schema 1`) is the same record in the first layout,
for existing pipelines; `report` and `suggest` read both.

Three record types share `schema`, `type`, `time_ns`, `time`, `host`, `policy`, `instance`:
`event` (one deny or audit decision), `dropped` (events the ring buffer had no room for, per
rule, exact) and `suppressed` (events a rule's `limit` held back, per rule, exact).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import pwd
import socket
import time
from dataclasses import dataclass

from .. import abi
from .allow import exact_allow
from .event import NO_LOGINUID, REASON_TEXT, REASONS, RawEvent, rule_location
from .families import family, op_text

SCHEMA_VERSION = 2          # what `policyc audit` writes unless told `--schema 1`
SCHEMAS = (1, 2)            # what report and suggest read
RECORD_TYPES = ("event", "dropped", "suppressed")
# reasons that mean "failed closed" (a decision the kernel could not make from rules): the ones
# the kernel counts as failed_closed
FAIL_CLOSED = frozenset(REASONS[v] for v in abi.FAILED_CLOSED)


def boot_offset_ns() -> int:
    """UTC epoch ns minus CLOCK_BOOTTIME ns: adds to bpf_ktime_get_boot_ns() to give UTC."""
    # the smallest gap of three tries: the two clocks are read as close together as we can
    best = None
    for _ in range(3):
        a = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        now = time.time_ns()
        b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        if best is None or b - a < best[0]:
            best = (b - a, now - (a + b) // 2)
    return best[1]


_last_second: list = [None, ""]   # [second, its text]: events come in bursts of one second


def iso_utc(ns: int) -> str:
    """`2024-05-01T12:00:00.123456789Z`: UTC with all nine digits."""
    sec, frac = divmod(ns, 1_000_000_000)
    if _last_second[0] != sec:
        _last_second[1] = _dt.datetime.fromtimestamp(sec, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second[0] = sec
    return f"{_last_second[1]}.{frac:09d}Z"


def hostname() -> str:
    return socket.gethostname()


def _read_id(path: str) -> str | None:
    try:
        with open(path) as f:
            text = f.read().strip().replace("-", "")
    except OSError:
        return None
    return text or None


@dataclass(frozen=True)
class HostInfo:
    """`host.name`, `host.id` (/etc/machine-id) and `host.boot_id` of the records."""

    name: str
    id: str | None = None
    boot_id: str | None = None

    @classmethod
    def here(cls, etc: str = "/etc", proc: str = "/proc") -> "HostInfo":
        return cls(hostname(), _read_id(f"{etc}/machine-id"), _read_id(f"{proc}/sys/kernel/random/boot_id"))


def as_host(host: "HostInfo | str") -> HostInfo:
    return host if isinstance(host, HostInfo) else HostInfo(host)


class Names:
    """What the reader adds to the kernel's ids: a user name for a uid, the path of a cgroup id.
    Never anything read through a pid (a pid may be another process by the time we look).

    A cgroup id is its directory's inode number under the cgroup2 mount: the tree is walked
    once and again on a miss, at most every RESCAN_S seconds (a cgroup made since)."""

    RESCAN_S = 2.0

    def __init__(self, cgroup_root: str = "/sys/fs/cgroup"):
        self.cgroup_root = cgroup_root
        self._cgroups: dict[int, str] = {}
        self._scanned = -1e9
        self._users: dict[int, str | None] = {}

    def clear(self) -> None:
        pass   # ids name the same thing for as long as they exist: nothing per batch

    def _scan(self) -> None:
        self._scanned = time.monotonic()
        found: dict[int, str] = {}
        root = self.cgroup_root
        stack = [root]
        while stack and len(found) < 100_000:
            d = stack.pop()
            try:
                found[os.stat(d).st_ino] = "/" + os.path.relpath(d, root) if d != root else "/"
                with os.scandir(d) as it:
                    stack.extend(e.path for e in it if e.is_dir(follow_symlinks=False))
            except OSError:
                continue
        self._cgroups = found

    def cgroup(self, cgroup_id: int) -> str | None:
        if not cgroup_id:
            return None
        path = self._cgroups.get(cgroup_id)
        if path is None and time.monotonic() - self._scanned >= self.RESCAN_S:
            self._scan()
            path = self._cgroups.get(cgroup_id)
        return path

    def user(self, uid: int) -> str | None:
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except (KeyError, OverflowError):
                self._users[uid] = None
        return self._users[uid]


# how the kernel read an executable (event.id_flags), for `process.exe_state`
def _exe_state(flags: int, shift: int = 0) -> str:
    if flags & (abi.ID_NO_EXE << shift):
        return "none"
    if flags & (abi.ID_EXE_UNRESOLVED << shift):
        return "unresolved"
    if flags & (abi.ID_EXE_PSEUDO << shift):
        return "pseudo"
    if flags & (abi.ID_EXE_DELETED << shift):
        return "deleted"
    return "ok"


def exec_id(host: HostInfo, ev: RawEvent) -> str:
    """One exec of one process, stable for its life and never reused: the host, its boot, the
    process's start time and pid, and how many execs it has made. 32 hex digits."""
    key = f"{host.id}:{host.boot_id}:{ev.start_boot_ns}:{ev.tgid}:{ev.exec_count}"
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def process_fields(ev: RawEvent, host: HostInfo, names: Names, offset_ns: int) -> dict:
    """Schema 2's `process`: the kernel's facts at decision time, plus names for its ids."""
    f = ev.id_flags
    start = ev.start_boot_ns + offset_ns if ev.start_boot_ns else None
    return {
        "pid": ev.tgid, "tid": ev.pid, "name": ev.comm,
        "exe": ev.exe, "exe_state": _exe_state(f),
        "exe_inode": {"ino": ev.exe_ino, "dev": ev.exe_dev} if ev.exe_ino else None,
        "uid": ev.uid, "euid": ev.euid, "gid": ev.gid,
        "loginuid": None if ev.loginuid == NO_LOGINUID else ev.loginuid,
        "user": names.user(ev.uid),
        "start_time_ns": start, "start_time": iso_utc(start) if start else None,
        "exec_id": exec_id(host, ev) if ev.start_boot_ns else None,
        "args": ev.args, "args_truncated": bool(f & abi.ID_ARGS_TRUNCATED),
        "cgroup_id": ev.cgroup_id, "cgroup": names.cgroup(ev.cgroup_id),
        "parent": {"pid": ev.ppid, "exe": ev.parent_exe, "exe_state": _exe_state(f, 4)},
    }


# Kept for callers of the first reader: the name stays, what it reads does not (no /proc).
ProcCache = Names


def _object(ev: RawEvent) -> dict:
    return family(ev.family).object(ev)


def event_record(ev: RawEvent, manifest: dict, *, instance: str, host: HostInfo | str, offset_ns: int,
                 names: Names | None = None, seq: int | None = None, procs: Names | None = None) -> dict:
    """One schema 2 `event` record. `offset_ns` converts boot time to UTC (boot_offset_ns());
    `seq` is the reader's sequence number (records_as(rec, 1) gives the schema 1 layout)."""
    rule = rule_location(manifest, ev.rule_id) if ev.rule_id else None
    if rule is not None:
        location = rule.get("location")
    elif ev.reason == "default":
        location = manifest.get("default_location")
    else:
        location = None
    t = ev.ts_boot_ns + offset_ns
    host = as_host(host)
    names = names or procs or Names()
    obj = _object(ev)
    return {
        "schema": SCHEMA_VERSION,
        "type": "event",
        "seq": seq,
        "time_ns": t,
        "time": iso_utc(t),
        "host": {"name": host.name, "id": host.id, "boot_id": host.boot_id},
        "policy": manifest.get("policy", instance),
        "instance": instance,
        "rule_id": ev.rule_id or None,
        "rule": location,
        "rule_text": rule.get("text") if rule else None,
        "decision": ev.decision,
        # what the denied system call returned (abi.DENY_ERRNO_BY_FAMILY); null when allowed
        "errno": abi.deny_errno(ev.family, obj.get("capability")) if ev.decision == "deny" else None,
        "mode": ev.mode,
        "hook": ev.hook,
        "family": ev.family,
        "op": ev.op,
        "reason": ev.reason,
        "failed_closed": ev.reason in FAIL_CLOSED,
        "reason_text": REASON_TEXT.get(ev.reason_code),
        "process": process_fields(ev, host, names, offset_ns),
        "object": obj,
        # what the default decided names its fix: the rule that would allow exactly this
        "suggestion": exact_allow(ev.family, ev.op, obj) if ev.reason == "default" else None,
        "ts_boot_ns": ev.ts_boot_ns,
    }


def _count_record(typ: str, *, policy: str, instance: str, host: HostInfo | str, now_ns: int | None,
                  seq: int | None, **rest) -> dict:
    t = time.time_ns() if now_ns is None else now_ns
    h = as_host(host)
    return {"schema": SCHEMA_VERSION, "type": typ, "seq": seq, "time_ns": t, "time": iso_utc(t),
            "host": {"name": h.name, "id": h.id, "boot_id": h.boot_id},
            "policy": policy, "instance": instance, **rest}


def dropped_record(*, policy: str, instance: str, host: HostInfo | str, rules: list[dict], unattributed: int,
                   now_ns: int | None = None, seq: int | None = None) -> dict:
    """`rules`: [{"rule_id", "rule", "rule_text", "count"}] with the drops since the last
    `dropped` record of this policy instance; `unattributed`: drops counted only per hook."""
    return _count_record("dropped", policy=policy, instance=instance, host=host, now_ns=now_ns, seq=seq,
                         count=sum(r["count"] for r in rules) + unattributed, rules=rules,
                         unattributed=unattributed)


def suppressed_record(*, policy: str, instance: str, host: HostInfo | str, rules: list[dict],
                      now_ns: int | None = None, seq: int | None = None) -> dict:
    """`rules`: [{"rule_id", "rule", "rule_text", "limit", "count"}] with the events each
    rule's `limit` held back since the last `suppressed` record of this policy instance."""
    return _count_record("suppressed", policy=policy, instance=instance, host=host, now_ns=now_ns, seq=seq,
                         count=sum(r["count"] for r in rules), rules=rules)


def as_schema1(rec: dict) -> dict:
    """A schema 2 record in the schema 1 layout (`policyc audit --schema 1`): `host` the name,
    `subject` for `process` (its exe now the kernel's, no longer read from /proc), no `seq`."""
    if rec.get("schema") == 1:
        return rec
    out = {k: v for k, v in rec.items() if k not in ("seq", "process", "suggestion", "errno")}
    out["schema"] = 1
    out["host"] = rec["host"]["name"] if isinstance(rec.get("host"), dict) else rec.get("host")
    if rec["type"] == "event":
        p = rec["process"]
        out["subject"] = {"pid": p["tid"], "tgid": p["pid"], "ppid": p["parent"]["pid"], "uid": p["uid"],
                          "gid": p["gid"], "comm": p["name"], "exe": p["exe"], "cgroup_id": p["cgroup_id"],
                          "cgroup": p["cgroup"], "parent_exe": p["parent"]["exe"]}
        # keep schema 1's key order: subject before object
        out = {k: out[k] for k in (*[k for k in out if k not in ("subject", "object", "ts_boot_ns")],
                                   "subject", "object", "ts_boot_ns")}
    return out


def process_view(rec: dict) -> dict:
    """The process of an event record of either schema: pid (the process), tid, comm, exe."""
    p = rec.get("process")
    if p is not None:
        return {"pid": p.get("pid"), "tid": p.get("tid"), "comm": p.get("name"), "exe": p.get("exe")}
    s = rec.get("subject") or {}
    return {"pid": s.get("tgid"), "tid": s.get("pid"), "comm": s.get("comm"), "exe": s.get("exe")}


def format_text(rec: dict) -> str:
    """One readable line per record."""
    if rec["type"] == "suppressed":
        per = ", ".join(f"{r['rule'] or 'rule ' + str(r['rule_id'])} (limit {r.get('limit') or '?'}): {r['count']}"
                        for r in rec["rules"])
        return f"{rec['time']} SUPPRESSED policy={rec['policy']} count={rec['count']} ({per})"
    if rec["type"] == "dropped":
        per = ", ".join(f"{r['rule'] or 'rule ' + str(r['rule_id'])}: {r['count']}" for r in rec["rules"])
        if rec["unattributed"]:
            per += (", " if per else "") + f"unattributed: {rec['unattributed']}"
        return f"{rec['time']} DROPPED policy={rec['policy']} count={rec['count']} ({per})"
    fam, o = rec["family"], rec["object"]
    obj = family(fam).text(o)
    op = op_text(fam, rec["op"])
    s = process_view(rec)
    why = rec["rule_text"] or rec["reason_text"] or (f"default {rec['decision']}" if rec["reason"] == "default"
                                                     else rec["reason"])
    fix = f"; to allow: {rec['suggestion']}" if rec.get("suggestion") else ""
    # what the program was told (a denial's errno; docs/audit-log.md): last, so that what
    # reads the fields before it reads them as it did
    err = f" errno={rec['errno']}" if rec.get("errno") else ""
    return (f"{rec['time']} {rec['decision'].upper()} policy={rec['policy']} {op} {obj} "
            f"pid={s['pid']} comm={s['comm']} exe={s['exe'] or '?'} rule={rec['rule'] or '-'} ({why}{fix}){err}")
