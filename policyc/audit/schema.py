"""The audit log's records (schema version 1, docs/audit-log.md): building them from decoded
ring-buffer events, and their one-line text form.

Three record types share `schema`, `type`, `time_ns`, `time`, `host`, `policy`, `instance`:
`event` (one deny or audit decision), `dropped` (events the ring buffer had no room for, per
rule, exact) and `suppressed` (events a rule's `limit` held back, per rule, exact).
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import time

from .. import abi
from .event import REASON_TEXT, REASONS, RawEvent, rule_location
from .families import family, op_text

SCHEMA_VERSION = 1
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


class ProcCache:
    """exe, parent exe and cgroup path of live processes from /proc, cached per reader batch
    (so a burst from one process costs one readlink, not one per event). None when the
    process is gone or the file cannot be read."""

    def __init__(self, proc: str = "/proc"):
        self.proc = proc
        self._exe: dict[int, str | None] = {}
        self._cg: dict[int, str | None] = {}

    def clear(self) -> None:
        self._exe.clear()
        self._cg.clear()

    def exe(self, tgid: int) -> str | None:
        if tgid not in self._exe:
            try:
                self._exe[tgid] = os.readlink(f"{self.proc}/{tgid}/exe") if tgid > 0 else None
            except OSError:
                self._exe[tgid] = None
        return self._exe[tgid]

    def cgroup(self, tgid: int) -> str | None:
        if tgid not in self._cg:
            val = None
            try:
                with open(f"{self.proc}/{tgid}/cgroup") as f:
                    for line in f:
                        if line.startswith("0::"):
                            val = line[3:].strip()
                            break
            except OSError:
                pass
            self._cg[tgid] = val
        return self._cg[tgid]


def _object(ev: RawEvent) -> dict:
    return family(ev.family).object(ev)


def event_record(ev: RawEvent, manifest: dict, *, instance: str, host: str, offset_ns: int,
                 procs: ProcCache | None = None) -> dict:
    """One `event` record. `offset_ns` converts boot time to UTC (boot_offset_ns())."""
    rule = rule_location(manifest, ev.rule_id) if ev.rule_id else None
    if rule is not None:
        location = rule.get("location")
    elif ev.reason == "default":
        location = manifest.get("default_location")
    else:
        location = None
    t = ev.ts_boot_ns + offset_ns
    procs = procs or ProcCache()
    return {
        "schema": SCHEMA_VERSION,
        "type": "event",
        "time_ns": t,
        "time": iso_utc(t),
        "host": host,
        "policy": manifest.get("policy", instance),
        "instance": instance,
        "rule_id": ev.rule_id or None,
        "rule": location,
        "rule_text": rule.get("text") if rule else None,
        "decision": ev.decision,
        "mode": ev.mode,
        "hook": ev.hook,
        "family": ev.family,
        "op": ev.op,
        "reason": ev.reason,
        "failed_closed": ev.reason in FAIL_CLOSED,
        "reason_text": REASON_TEXT.get(ev.reason_code),
        "subject": {
            "pid": ev.pid, "tgid": ev.tgid, "ppid": ev.ppid, "uid": ev.uid, "gid": ev.gid,
            "comm": ev.comm, "exe": procs.exe(ev.tgid), "cgroup_id": ev.cgroup_id,
            "cgroup": procs.cgroup(ev.tgid), "parent_exe": procs.exe(ev.ppid),
        },
        "object": _object(ev),
        "ts_boot_ns": ev.ts_boot_ns,
    }


def dropped_record(*, policy: str, instance: str, host: str, rules: list[dict], unattributed: int,
                   now_ns: int | None = None) -> dict:
    """`rules`: [{"rule_id", "rule", "rule_text", "count"}] with the drops since the last
    `dropped` record of this policy instance; `unattributed`: drops counted only per hook."""
    t = time.time_ns() if now_ns is None else now_ns
    return {
        "schema": SCHEMA_VERSION, "type": "dropped", "time_ns": t, "time": iso_utc(t), "host": host,
        "policy": policy, "instance": instance,
        "count": sum(r["count"] for r in rules) + unattributed,
        "rules": rules, "unattributed": unattributed,
    }


def suppressed_record(*, policy: str, instance: str, host: str, rules: list[dict],
                      now_ns: int | None = None) -> dict:
    """`rules`: [{"rule_id", "rule", "rule_text", "limit", "count"}] with the events each
    rule's `limit` held back since the last `suppressed` record of this policy instance."""
    t = time.time_ns() if now_ns is None else now_ns
    return {
        "schema": SCHEMA_VERSION, "type": "suppressed", "time_ns": t, "time": iso_utc(t), "host": host,
        "policy": policy, "instance": instance, "count": sum(r["count"] for r in rules), "rules": rules,
    }


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
    s = rec["subject"]
    why = rec["rule_text"] or rec["reason_text"] or (f"default {rec['decision']}" if rec["reason"] == "default"
                                                     else rec["reason"])
    return (f"{rec['time']} {rec['decision'].upper()} policy={rec['policy']} {op} {obj} "
            f"pid={s['pid']} comm={s['comm']} exe={s['exe'] or '?'} rule={rec['rule'] or '-'} ({why})")
