"""`policyc audit --format ecs`: a schema 2 record as an Elastic Common Schema document.

Every field named here is an ECS field (tests/unit/test_audit_ecs.py checks names, types and
the categorization values against ECS 9.4's field set); what ECS has no field for goes under
`policyc.*`, the custom namespace ECS asks integrations to use. The mapping is tabled in
docs/audit-log.md beside the one to OCSF.
"""

from __future__ import annotations

import posixpath

from .schema import format_text

ECS_VERSION = "9.4.0"

# event.category and event.type per family and op (ECS's allowed values only)
_FILE_TYPE = {"read": "access", "exec-map": "access", "write": "change", "append": "change", "chmod": "change",
              "chown": "change", "create": "creation", "delete": "deletion", "rename": "change", "link": "creation"}
_CATEGORY = {"file": "file", "exec": "process", "net": "network", "mount": "file", "capability": "process",
             "signal": "process", "ptrace": "process", "module": "driver", "bpf": "host"}


def _types(rec: dict) -> list[str]:
    fam, op = rec["family"], rec["op"]
    if fam == "file":
        first = _FILE_TYPE.get(op, "access")
    elif fam == "exec":
        first = "start"
    elif fam == "net":
        first = "connection" if op == "connect" else "start" if op in ("bind", "listen") else "protocol"
    elif fam == "mount":
        first = "change"
    elif fam == "module":
        first = "installation"
    else:
        first = "access"
    # a deny is refused; an audit-mode hit was let through and logged
    return [first, "denied" if rec["decision"] == "deny" else "allowed"]


def _drop(d: dict) -> dict:
    """Leave out nulls (ECS documents omit absent fields) and empty objects."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = _drop(v)
            if not v:
                continue
        if v is not None:
            out[k] = v
    return out


def to_ecs(rec: dict) -> dict:
    """One ECS document for one record of schema 2 (`event`, `dropped` or `suppressed`)."""
    h = rec["host"]
    doc = {
        "@timestamp": rec["time"],
        "ecs": {"version": ECS_VERSION},
        "host": {"name": h["name"], "id": h["id"], "boot": {"id": h["boot_id"]}},
        "event": {"module": "policyc", "dataset": "policyc.audit", "sequence": rec.get("seq"),
                  "created": rec["time"]},
        "message": format_text(rec),
        "policyc": {"schema": rec["schema"], "type": rec["type"], "policy": rec["policy"],
                    "instance": rec["instance"]},
    }
    if rec["type"] != "event":
        # losses are the sensor's own state, not an activity: ECS `kind: metric`
        doc["event"].update({"kind": "metric", "action": rec["type"]})
        doc["policyc"].update({"count": rec["count"], "rules": rec["rules"], "unattributed": rec.get("unattributed")})
        return _drop(doc)
    p, o = rec["process"], rec["object"]
    doc["event"].update({
        "kind": "alert" if rec["decision"] == "deny" else "event",
        "category": [_CATEGORY.get(rec["family"], "host")],
        "type": _types(rec),
        "action": f"{rec['family']}-{rec['op']}",
        "outcome": "failure" if rec["decision"] == "deny" else "success",
        "reason": rec["rule_text"] or rec["reason_text"] or (f"default {rec['decision']}" if rec["reason"] == "default"
                                                             else rec["reason"]),
    })
    doc["rule"] = {"id": str(rec["rule_id"]) if rec["rule_id"] is not None else None,
                   "name": rec["rule_text"], "reference": rec["rule"], "ruleset": rec["policy"]}
    args = p.get("args")
    doc["process"] = {
        "pid": p["pid"], "thread": {"id": p["tid"]}, "name": p["name"], "executable": p["exe"],
        "entity_id": p["exec_id"], "start": p["start_time"],
        "args": args, "args_count": len(args) if args is not None else None,
        "user": {"id": str(p["euid"]), "name": p.get("user") if p["euid"] == p["uid"] else None},
        "real_user": {"id": str(p["uid"]), "name": p.get("user")},
        "real_group": {"id": str(p["gid"])},
        "parent": {"pid": p["parent"]["pid"], "executable": p["parent"]["exe"]},
    }
    fam = rec["family"]
    if fam in ("file", "exec", "mount", "module") and o.get("path") and o["path"].startswith("/"):
        doc["file"] = {"path": o["path"], "name": posixpath.basename(o["path"]) or None,
                       "directory": posixpath.dirname(o["path"])}
    if fam == "net":
        addr = o.get("addr")
        where = "destination" if rec["op"] == "connect" else "source"
        doc[where] = {"ip": addr, "port": o.get("port")}
        doc["network"] = {"transport": o.get("proto") if o.get("proto") in ("tcp", "udp", "icmp") else None,
                          "type": ("ipv6" if ":" in addr else "ipv4") if addr else None}
    doc["policyc"].update({
        "decision": rec["decision"], "mode": rec["mode"], "hook": rec["hook"], "family": fam, "op": rec["op"],
        "reason": rec["reason"], "failed_closed": rec["failed_closed"], "object": o,
        "process": {"loginuid": p["loginuid"], "exe_state": p["exe_state"], "exe_inode": p["exe_inode"],
                    "cgroup_id": p["cgroup_id"], "cgroup": p["cgroup"], "args_truncated": p["args_truncated"],
                    "parent_exe_state": p["parent"]["exe_state"]},
    })
    return _drop(doc)
