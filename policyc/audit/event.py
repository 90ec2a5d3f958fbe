"""Decode a `struct policyc_event` (templates/common/event.h) and name its rule.

tests/unit/test_event_layout.py pins this layout against the C header.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from ..codegen.tables import NET_OP_INDEX, OP_NAMES

HEADER = struct.Struct("<QQIIIIIIIIHHBBBBBBBB16s16s")
HEADER_SIZE = HEADER.size  # offsetof(struct policyc_event, path)

DECISIONS = {0: "allow", 1: "audit", 2: "deny"}
FAMILIES = {1: "file", 2: "exec", 3: "net", 4: "mount", 5: "capability", 6: "signal", 7: "ptrace",
            8: "module", 9: "bpf"}
NET_OPS = {v: k for k, v in NET_OP_INDEX.items()}
PROTOS = {1: "tcp", 2: "udp", 4: "icmp", 8: "raw", 16: "packet", 32: "other"}
REASONS = {
    0: "rule", 1: "default", 2: "path-too-long", 3: "detached-mount", 4: "read-fault",
    5: "map-fault", 6: "protect", 7: "anonymous-exec", 8: "bad-address", 9: "credential-override",
}
# Why a decision failed closed, for people.
REASON_TEXT = {
    2: "the path is longer than 4,096 bytes or too deep to read whole: failed closed",
    3: "the file is reached through a detached mount outside the namespace: failed closed",
    4: "a kernel read failed while resolving the path: failed closed",
    5: "a map lookup or task storage failed: failed closed",
    6: "the rename/link would move the path out from under a deny rule",
    7: "the file has no path (memfd, anonymous inode): executing it is denied",
    8: "the socket address could not be read: failed closed",
    9: "an io_uring personality would run the operation on other credentials, outside the "
       "capability rules: denied",
}
HOOKS = [
    "file_open", "path_mknod", "path_mkdir", "path_symlink", "path_unlink", "path_rmdir",
    "path_rename", "path_link", "path_chmod", "path_chown", "path_truncate", "mmap_file",
    "file_mprotect", "bprm_check_security", "task_alloc", "socket_connect", "socket_bind",
    "socket_sendmsg", "sb_mount", "move_mount", "capable", "task_kill", "ptrace_access_check",
    "ptrace_traceme", "kernel_read_file", "kernel_load_data", "kernel_module_request", "bpf",
    "socket_create", "unix_stream_connect", "unix_may_send", "socket_listen", "sctp_bind_connect",
    "sb_umount", "sb_pivotroot", "uring_override_creds", "file_send_sigiotask", "perf_event_alloc",
    "bprm_committing_creds", "file_ioctl", "mount_syscall",
]


CAP_PERSONALITY = 64   # templates/capability.bpf.c.j2: an io_uring personality, not a capability


def capability_name(aux: int) -> str:
    from ..ir.vocab import CAPABILITIES

    if aux == CAP_PERSONALITY:
        return "io_uring-personality"
    return CAPABILITIES[aux] if aux < len(CAPABILITIES) else str(aux)


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


def decode(data: bytes) -> RawEvent:
    if len(data) < HEADER_SIZE:
        raise ValueError(f"event of {len(data)} bytes is shorter than its {HEADER_SIZE}-byte header")
    (ts, cg, pid, tgid, ppid, uid, gid, rule_id, aux, target_pid, path_len, port, decision, hook, op,
     reason, family, proto, mode, _flags, addr, comm) = HEADER.unpack_from(data)
    path = data[HEADER_SIZE:HEADER_SIZE + path_len].decode("utf-8", "surrogateescape")
    fam = FAMILIES.get(family, str(family))
    if fam == "net":
        op_name = NET_OPS.get(op, str(op))
        ip = ipaddress.IPv6Address(addr)
        addr_text = str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ip)
    elif fam in ("capability", "signal", "ptrace", "bpf"):
        op_name, addr_text = fam, None
    elif fam == "module":
        op_name, addr_text = "load", None
    else:
        op_name = OP_NAMES.get(op, str(op))
        addr_text = None
    return RawEvent(
        ts_boot_ns=ts, cgroup_id=cg, pid=pid, tgid=tgid, ppid=ppid, uid=uid, gid=gid,
        rule_id=rule_id, aux=aux, target_pid=target_pid, path=path, port=port,
        decision=DECISIONS.get(decision, str(decision)),
        hook=HOOKS[hook] if hook < len(HOOKS) else str(hook),
        family=fam, op=op_name, reason=REASONS.get(reason, str(reason)), reason_code=reason,
        proto=PROTOS.get(proto) if fam == "net" else None,
        mode="audit" if mode else "enforce",
        addr=addr_text,
        comm=comm.split(b"\0", 1)[0].decode("utf-8", "replace"),
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


def describe(ev: RawEvent, manifest: dict) -> dict:
    """The event as one JSON-able record naming its policy, rule and source line."""
    rule = rule_location(manifest, ev.rule_id) if ev.rule_id else None
    from ..ir.vocab import SIGNALS

    if ev.family == "net":
        obj = {"addr": ev.addr, "port": ev.port, "proto": ev.proto}
    elif ev.family == "capability":
        obj = {"capability": capability_name(ev.aux)}
    elif ev.family in ("signal", "ptrace"):
        names = {v: k for k, v in SIGNALS.items()}
        obj = {"target_pid": ev.target_pid, "target_exe": ev.path or None}
        if ev.family == "signal":
            obj["signal"] = names.get(ev.aux, str(ev.aux))
    elif ev.family == "bpf":
        obj = {}
    else:
        obj = {"path": ev.path}
    location = rule["location"] if rule else (manifest.get("default_location") if ev.reason == "default" else None)
    out = {
        "policy": manifest.get("policy"),
        "decision": ev.decision,
        "mode": ev.mode,
        "hook": ev.hook,
        "family": ev.family,
        "op": ev.op,
        "rule_id": ev.rule_id or None,
        "rule": location,
        "rule_text": rule["text"] if rule else None,
        "reason": ev.reason,
        "pid": ev.pid,
        "tgid": ev.tgid,
        "ppid": ev.ppid,
        "uid": ev.uid,
        "gid": ev.gid,
        "comm": ev.comm,
        "cgroup_id": ev.cgroup_id,
        "ts_boot_ns": ev.ts_boot_ns,
        **obj,
    }
    if ev.reason_code in REASON_TEXT:
        out["reason_text"] = REASON_TEXT[ev.reason_code]
    return out


def format_text(rec: dict) -> str:
    """One readable line: `DENY nginx file.read /etc/shadow by policies/x.policy:12:5 (...)`."""
    op = f"{rec['family']}.{rec['op']}" if rec["family"] in ("file", "net") else rec["op"]
    if rec["family"] == "exec":
        op = "exec"
    obj = rec.get("path") or ""
    if rec["family"] == "net":
        obj = f"{rec['proto']} {rec['addr']} port {rec['port']}"
    elif rec["family"] == "capability":
        obj = rec["capability"]
    elif rec["family"] in ("signal", "ptrace"):
        obj = (rec.get("signal", "") + f" to pid {rec['target_pid']} ({rec.get('target_exe') or '?'})").strip()
    where = rec["rule"] or "-"
    why = rec["rule_text"] or rec.get("reason_text") or ("default " + rec["decision"] if rec["reason"] == "default" else rec["reason"])
    return (f"{rec['decision'].upper()} policy={rec['policy']} {op} {obj} pid={rec['pid']} comm={rec['comm']} "
            f"rule={where} ({why})")
