"""Decode a `struct policyc_event` (policyc/abi.py, templates/common/abi.h) and name its rule.

Imports no compiler module (policyc/abi.py and the vocabulary only): `policyc audit`, `exec`
and `status` run without lark or jinja2.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from operator import itemgetter

from .. import abi
from . import families as AUDIT_FAMILIES
from .families import capability_name  # noqa: F401  (the name callers know)

HEADER = abi.EVENT_HEADER
HEADER_SIZE = HEADER.size  # offsetof(struct policyc_event, path)

DECISIONS = abi.DECISIONS
MODES = abi.MODES
FAMILIES = abi.FAMILIES
NET_OPS = abi.NET_OPS
OP_NAMES = abi.OPS
PROTOS = abi.PROTOS
REASONS = abi.REASONS
HOOKS = abi.HOOKS
# Why a decision failed closed, for people.
REASON_TEXT = {
    abi.REASON_PATH_TOO_LONG: f"the path is longer than {abi.POLICYC_PATH_MAX:,} bytes or too deep to read "
                              "whole: failed closed",
    abi.REASON_DETACHED: "the file is reached through a detached mount outside the namespace: failed closed",
    abi.REASON_READ_FAULT: "a kernel read failed while resolving the path: failed closed",
    abi.REASON_MAP_FAULT: "a map lookup or task storage failed: failed closed",
    abi.REASON_PROTECT: "the rename/link would move the path out from under a deny rule",
    abi.REASON_ANON_EXEC: "the file has no path (memfd, anonymous inode): executing it is denied",
    abi.REASON_BAD_ADDRESS: "the socket address could not be read: failed closed",
    abi.REASON_DISCONNECTED: "the file was opened by handle and the kernel has not connected it to its "
                             "directory, so it has no path to decide on: failed closed",
    abi.REASON_CRED_OVERRIDE: "an io_uring personality would run the operation on other credentials, "
                              "outside the capability rules: denied",
    abi.REASON_TRANSITION_UNLOADED: "the rule hands the program to a policy that is not loaded: "
                                    "failed closed",
}
# The header's values in the order decode() takes them, by member name: the ABI's member
# order is free to change (one C call reorders them)
_FIELDS = itemgetter(*(HEADER.names.index(n) for n in (
    "ts_boot_ns", "cgroup_id", "pid", "tgid", "ppid", "uid", "gid", "rule_id", "aux", "target_pid",
    "path_len", "port", "decision", "hook", "op", "reason", "family", "proto", "mode", "addr", "comm",
    "start_boot_ns", "exec_count", "exe_ino", "exe_dev", "euid", "loginuid", "exe_len", "parent_exe_len",
    "args_len", "id_flags", "flags")))
NO_LOGINUID = 0xFFFFFFFF

@dataclass(slots=True)   # not frozen: a frozen dataclass's __init__ costs a reader under load
class RawEvent:
    ts_boot_ns: int
    cgroup_id: int
    pid: int
    tgid: int
    ppid: int
    uid: int
    gid: int
    rule_id: int
    aux: int
    target_pid: int
    path: str
    port: int
    decision: str
    hook: str
    family: str
    op: str
    reason: str
    reason_code: int
    proto: str | None
    mode: str
    addr: str | None
    comm: str
    # who, as the kernel knew it when it decided (event_identity() in policy.h)
    start_boot_ns: int = 0
    exec_count: int = 0
    exe_ino: int = 0
    exe_dev: int = 0
    euid: int = 0
    loginuid: int = NO_LOGINUID
    exe: str | None = None
    parent_exe: str | None = None
    args: list[str] | None = None
    id_flags: int = abi.ID_ARGS_ABSENT | abi.ID_NO_EXE | abi.ID_PARENT_NO_EXE
    flags: int = 0    # EVENT_*: EVENT_RECEIVE, a signal or ptrace decided on the receiver's side


def decode(data: bytes) -> RawEvent:
    if len(data) < HEADER_SIZE:
        raise ValueError(f"event of {len(data)} bytes is shorter than its {HEADER_SIZE}-byte header")
    (ts, cg, pid, tgid, ppid, uid, gid, rule_id, aux, target_pid, path_len, port, decision, hook, op,
     reason, family, proto, mode, addr, comm, start_ns, exec_count, exe_ino, exe_dev, euid, loginuid,
     exe_len, pexe_len, args_len, id_flags, flags) = _FIELDS(HEADER.unpack_from(data))
    # the tail: path NUL exe NUL parent-exe NUL args (policy.h, event_identity)
    at = HEADER_SIZE
    path = data[at:at + path_len].decode("utf-8", "surrogateescape")
    at += path_len + 1
    exe = data[at:at + exe_len].decode("utf-8", "surrogateescape")
    at += exe_len + 1
    parent_exe = data[at:at + pexe_len].decode("utf-8", "surrogateescape")
    at += pexe_len + 1
    if at + args_len > len(data):
        raise ValueError(f"event of {len(data)} bytes is shorter than its header says ({at + args_len})")
    args = None
    if not id_flags & abi.ID_ARGS_ABSENT:
        raw = data[at:at + args_len]
        args = [a.decode("utf-8", "surrogateescape") for a in raw.rstrip(b"\0").split(b"\0")] if raw else []
    fam = FAMILIES.get(family, str(family))
    op_name = AUDIT_FAMILIES.family(fam).op_name(op)
    addr_text = None
    if fam == "net":   # the only family whose event carries an address
        ip = ipaddress.IPv6Address(addr)
        addr_text = str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)
    return RawEvent(
        ts_boot_ns=ts, cgroup_id=cg, pid=pid, tgid=tgid, ppid=ppid, uid=uid, gid=gid,
        rule_id=rule_id, aux=aux, target_pid=target_pid, path=path, port=port,
        decision=DECISIONS.get(decision, str(decision)),
        hook=HOOKS[hook] if hook < len(HOOKS) else str(hook),
        family=fam, op=op_name, reason=REASONS.get(reason, str(reason)), reason_code=reason,
        proto=PROTOS.get(proto) if fam == "net" else None,
        mode=MODES.get(mode, str(mode)),
        addr=addr_text,
        comm=comm.split(b"\0", 1)[0].decode("utf-8", "replace"),
        start_boot_ns=start_ns, exec_count=exec_count, exe_ino=exe_ino, exe_dev=exe_dev, euid=euid,
        loginuid=loginuid,
        exe=exe if exe_len and not id_flags & (abi.ID_NO_EXE | abi.ID_EXE_UNRESOLVED) else None,
        parent_exe=parent_exe if pexe_len and not id_flags & (abi.ID_PARENT_NO_EXE | abi.ID_PARENT_UNRESOLVED) else None,
        args=args, id_flags=id_flags, flags=flags,
    )


# rule id -> rule entry per manifest, built on first use: a reader looks a rule up per event,
# and a policy may have ten thousand rules (keyed by id(), holding the manifest so the id
# cannot be reused while the entry lives)
_RULE_INDEX: dict[int, tuple[dict, dict[int, dict]]] = {}


def rule_location(manifest: dict, rule_id: int) -> dict | None:
    entry = _RULE_INDEX.get(id(manifest))
    if entry is None or entry[0] is not manifest:
        if len(_RULE_INDEX) > 256:
            _RULE_INDEX.clear()
        entry = (manifest, {r["id"]: r for r in manifest.get("rules", ())})
        _RULE_INDEX[id(manifest)] = entry
    return entry[1].get(rule_id)


def rule_entries(manifest: dict, counts: dict[int, int], with_limit: bool = False) -> list[dict]:
    """Per-rule counts as `dropped` and `suppressed` records list them, by rule id; rule id 0
    is the default (or a failed-closed decision): null id, the `default` line."""
    out = []
    for rid in sorted(counts):
        r = rule_location(manifest, rid) if rid else None
        entry = {"rule_id": rid or None,
                 "rule": r.get("location") if r else (manifest.get("default_location") if not rid else None),
                 "rule_text": r.get("text") if r else None, "count": counts[rid]}
        if with_limit:
            lim = (r or {}).get("limit") if rid else manifest.get("default_limit")
            entry["limit"] = (lim or {}).get("text")
        out.append(entry)
    return out
