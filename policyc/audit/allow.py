"""The rule that would allow exactly one event: the `suggestion` of an event the policy's
default decided (audit records, `policyc exec`, `policyc explain`).

Light on purpose (no compiler module): the audit reader imports it for every default-decided
event. `policyc suggest` proposes rules for many events at once, with globs and review; this
is the one-event form of the same text.
"""

from __future__ import annotations

import re

_GLOB_CHARS = re.compile(r"[*?{}$\[\]]")
NET_PROTOS = {"tcp", "udp", "icmp", "raw", "packet"}


def literal(path: str) -> str:
    """A glob matching the literal path (and hardly more): glob characters become `?`."""
    return _GLOB_CHARS.sub("?", path)


def quote(pattern: str) -> str:
    """A glob as a policy string."""
    p = pattern.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{p}"'


def net_object(op: str, obj: dict) -> str:
    """The object text of a net rule for one event: `tcp 10.0.0.1 port 443`, `udp port 53`."""
    proto = obj.get("proto") if obj.get("proto") in NET_PROTOS else "any"
    if op == "create":
        return proto
    parts = [proto]
    if op == "connect" and obj.get("addr"):
        parts.append(obj["addr"])
    if obj.get("port"):
        parts.append(f"port {obj['port']}")
    return " ".join(parts)


def exact_allow(family: str, op: str, obj: dict) -> str | None:
    """`allow ...` for exactly this event, or None when no rule can name its object (a file
    without a path: a pipe, a memfd)."""
    if family in ("file", "exec", "mount"):
        path = obj.get("path") or ""
        if not path.startswith("/"):
            return None
        ops = f"{op} " if family == "file" else ""
        return f"allow {family} {ops}{quote(literal(path))}"
    if family == "net":
        return f"allow net {op} {net_object(op, obj)}"
    if family == "capability":
        return f"allow capability {obj['capability']}" if obj.get("capability") else None
    if family in ("signal", "ptrace"):
        what = f" {obj['signal']}" if family == "signal" and obj.get("signal") else ""
        to = f" to exe {quote(literal(obj['target_exe']))}" if obj.get("target_exe") else ""
        return f"allow {family}{what}{to}"
    if family == "module":
        return "allow module load"
    if family == "bpf":
        return "allow bpf"
    return None
