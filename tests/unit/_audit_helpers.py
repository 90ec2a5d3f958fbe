"""Shared by the audit tests: raw ring-buffer events and log records made by hand."""

from __future__ import annotations

import json
from pathlib import Path

from policyc import abi
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
        cgroup: int = 77, exe: str | None = "/usr/bin/cat", parent_exe: str | None = "/usr/bin/bash",
        args: list[str] | None = None, start: int = 4_000_000_000, exec_count: int = 2, euid: int | None = None,
        loginuid: int = 1000, exe_ino: int = 1234, exe_dev: int = 0x800001, id_flags: int | None = None) -> bytes:
    """An event as the kernel sends it: the header, then the tail path NUL exe NUL parent NUL args."""
    p, e, pe = path.encode(), (exe or "").encode(), (parent_exe or "").encode()
    a = b"".join(x.encode() + b"\0" for x in args) if args is not None else b""
    if id_flags is None:
        id_flags = (0 if exe else abi.ID_NO_EXE) | (0 if parent_exe else abi.ID_PARENT_NO_EXE) | \
            (0 if args is not None else abi.ID_ARGS_ABSENT)
    head = HEADER.pack_fields(
        ts_boot_ns=ts, cgroup_id=cgroup, pid=pid, tgid=tgid, ppid=ppid, uid=uid, gid=gid, rule_id=rule_id, aux=aux,
        target_pid=target_pid, path_len=len(p), port=port, decision=decision, hook=HOOKS.index(hook), op=op,
        reason=reason, family=FAMILY[family], proto=proto, mode=mode, addr=addr, comm=comm.ljust(16, b"\0"),
        start_boot_ns=start, exec_count=exec_count, exe_ino=exe_ino if exe is not None else 0, exe_dev=exe_dev if exe is not None else 0,
        euid=uid if euid is None else euid, loginuid=loginuid, exe_len=len(e), parent_exe_len=len(pe),
        args_len=len(a), id_flags=id_flags)
    return head + p + b"\0" + e + b"\0" + pe + b"\0" + a


def record(offset_ns: int = 1_700_000_000_000_000_000, procs: ProcCache | None = None, **kw) -> dict:
    return event_record(decode(raw(**kw)), MANIFEST, instance="web", host="h1", offset_ns=offset_ns,
                        procs=procs or ProcCache("/nonexistent-proc"))


def write_log(path: Path, recs: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return str(path)
