"""Shared by the audit tests: raw ring-buffer events and log records made by hand."""

from __future__ import annotations

import json
from pathlib import Path

from policyc.audit.event import HEADER, HOOKS, decode
from policyc.audit.schema import ProcCache, event_record

MANIFEST = {
    "format": 1, "policy": "web", "mode": "enforce", "default": "deny",
    "default_location": "p.policy:4:5",
    "rules": [
        {"id": 1, "decision": "deny", "family": "file", "ops": ["read"], "text": 'deny file read "/etc/shadow"',
         "location": "p.policy:6:5"},
        {"id": 2, "decision": "deny", "family": "net", "ops": ["connect"], "text": "deny net connect any 10.0.0.0/8",
         "location": "p.policy:7:5"},
    ],
}
FAMILY = {"file": 1, "exec": 2, "net": 3, "mount": 4, "capability": 5, "signal": 6, "ptrace": 7, "module": 8, "bpf": 9}


def raw(*, path: str = "/etc/shadow", rule_id: int = 1, decision: int = 2, hook: str = "file_open",
        family: str = "file", op: int = 0, reason: int = 0, mode: int = 0, pid: int = 100, tgid: int = 100,
        ppid: int = 1, uid: int = 1000, gid: int = 1000, aux: int = 0, target_pid: int = 0, port: int = 0,
        proto: int = 0, addr: bytes = bytes(16), comm: bytes = b"cat", ts: int = 5_000_000_000,
        cgroup: int = 77) -> bytes:
    p = path.encode()
    head = HEADER.pack(ts, cgroup, pid, tgid, ppid, uid, gid, rule_id, aux, target_pid, len(p), port, decision,
                       HOOKS.index(hook), op, reason, FAMILY[family], proto, mode, 0, addr, comm.ljust(16, b"\0"))
    return head + p + b"\0"


def record(offset_ns: int = 1_700_000_000_000_000_000, procs: ProcCache | None = None, **kw) -> dict:
    return event_record(decode(raw(**kw)), MANIFEST, instance="web", host="h1", offset_ns=offset_ns,
                        procs=procs or ProcCache("/nonexistent-proc"))


def write_log(path: Path, recs: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(path)
