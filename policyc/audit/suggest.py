"""`policyc suggest`: from a log's audit-mode and deny events, the smallest set of `allow`
rules that would have allowed them, as a `ruleset` per policy (add `use NAME-suggested` to the
policy), in the spirit of aa-logprof and audit2allow.

What is proposed, and what is not:
- Only events that the policy's `default` decided become `allow` rules. An event an explicit
  `deny` (or `audit`) rule decided stays as it is: an `allow` cannot outrank a `deny` of the
  same policy anyway, and the point of such a rule is to hold. They are listed as comments.
- Failed-closed events (a path too long, a detached mount, ...) and objects without an
  absolute path (`pipe:[..]`, `memfd:x`) are not turned into rules: they are listed.
- Paths: `COLLAPSE` or more files of one directory for one operation become `DIR/*`; a
  directory with `COLLAPSE` or more such subdirectories becomes `DIR/**` (never within the
  first two levels: no `/usr/**`). Rules with the same operations share one line.
- Globbing is a widening: review the text before using it. Characters the glob language
  would read (`*`, `?`, `{`, `}`, `$`) are written as `?`.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict

from .logfile import Record

COLLAPSE = 3
_GLOB_CHARS = re.compile(r"[*?{}$\[\]]")
_LANG_PROTOS = {"tcp", "udp", "icmp", "raw", "packet"}


class SuggestError(Exception):
    pass


def literal(path: str) -> str:
    """A glob matching the literal path (and hardly more): glob characters become `?`."""
    return _GLOB_CHARS.sub("?", path)


def quote(pattern: str) -> str:
    """A glob as a policy string."""
    p = pattern.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{p}"'


def _depth(d: str) -> int:
    return len([c for c in d.split("/") if c])


def collapse_paths(paths: set[str], threshold: int = COLLAPSE) -> list[str]:
    """Globs (as raw pattern text, quoting later) covering `paths`, collapsing siblings."""
    absolute = {literal(p) for p in paths if p.startswith("/")}
    by_dir: dict[str, set[str]] = defaultdict(set)
    for p in absolute:
        by_dir[posixpath.dirname(p)].add(p)
    # level 1: many files of one directory -> DIR/*
    starred: set[str] = set()
    keep: set[str] = set()
    for d, files in by_dir.items():
        if len(files) >= threshold and d != "/":
            starred.add(d)
        else:
            keep |= files
    # level 2: a directory with many starred or populated subdirectories -> DIR/**
    children: dict[str, set[str]] = defaultdict(set)
    for d in starred | {posixpath.dirname(p) for p in keep}:
        parent = posixpath.dirname(d)
        if parent != d:
            children[parent].add(d)
    deep = sorted(p for p, kids in children.items()
                  if len(kids & starred) >= threshold and _depth(p) >= 2)
    # outermost first: a deeper `**` inside a shallower one is covered
    chosen_deep: list[str] = []
    for p in sorted(deep, key=_depth):
        if not any(p == q or p.startswith(q + "/") for q in chosen_deep):
            chosen_deep.append(p)

    def covered(path: str) -> bool:
        return any(path.startswith(q + "/") for q in chosen_deep)

    out = [q + "/**" for q in chosen_deep]
    out += [d + "/*" for d in sorted(starred) if not covered(d + "/x")]
    out += [p for p in sorted(keep) if not covered(p)]
    return out


def _net_rule(e: dict) -> tuple[str, str]:
    """(op, object text) of a net event."""
    o = e["object"]
    proto = o.get("proto") if o.get("proto") in _LANG_PROTOS else "any"
    op = e["op"]
    if op == "create":
        return op, proto
    addr = o.get("addr")
    port = o.get("port")
    parts = [proto]
    if op == "connect" and addr:
        parts.append(addr)
    if port:
        parts.append(f"port {port}")
    return op, " ".join(parts)


def suggest(records: list[Record], policy: str | None = None) -> str:
    events = [r for r in records if r.data["type"] == "event"]
    if policy is not None:
        events = [r for r in events if policy in (r.data.get("policy"), r.data.get("instance"))]
        if not events:
            names = sorted({r.data.get("policy") for r in records if r.data["type"] == "event"})
            raise SuggestError(f"no events of policy `{policy}` in the log"
                               + (f" (it has: {', '.join(map(str, names))})" if names else ""))
    if not events:
        raise SuggestError("the log has no events to learn from")
    by_policy: dict[str, list[Record]] = defaultdict(list)
    for r in events:
        by_policy[r.data["policy"]].append(r)
    return "\n".join(_ruleset(name, recs) for name, recs in sorted(by_policy.items()))


def ruleset_name(policy: str) -> str:
    return f"{policy}-suggested"


def _ruleset(policy: str, recs: list[Record]) -> str:
    file_paths: dict[str, set[str]] = defaultdict(set)   # op -> paths
    exec_paths: set[str] = set()
    mount_paths: set[str] = set()
    net: dict[str, set[str]] = defaultdict(set)           # op -> objects
    caps: set[str] = set()
    signals: dict[str | None, set[str]] = defaultdict(set)  # target exe -> signals
    ptrace: set[str | None] = set()
    module = bpf = False
    kept: dict[tuple, int] = defaultdict(int)
    failed: dict[tuple, int] = defaultdict(int)
    sources = sorted({r.path for r in recs})
    for r in recs:
        e = r.data
        if e["reason"] != "default":
            if e.get("failed_closed"):
                failed[(e["reason"], e["family"], e["op"], str(e["object"].get("path", "")))] += 1
            else:
                kept[(e.get("rule"), e.get("rule_text"), e["decision"])] += 1
            continue
        fam, o = e["family"], e["object"]
        if fam in ("file", "exec", "mount") and not str(o.get("path") or "").startswith("/"):
            failed[("no-path", fam, e["op"], str(o.get("path") or ""))] += 1  # pipe:[..], memfd: no rule names them
            continue
        if fam == "file":
            file_paths[e["op"]].add(o.get("path") or "")
        elif fam == "exec":
            exec_paths.add(o.get("path") or "")
        elif fam == "mount":
            mount_paths.add(o.get("path") or "")
        elif fam == "net":
            op, obj = _net_rule(e)
            net[op].add(obj)
        elif fam == "capability":
            caps.add(o["capability"])
        elif fam == "signal":
            signals[o.get("target_exe")].add(o["signal"])
        elif fam == "ptrace":
            ptrace.add(o.get("target_exe"))
        elif fam == "module":
            module = True
        elif fam == "bpf":
            bpf = True
    lines: list[str] = []
    # file: group patterns by the set of operations that need them
    ops_of: dict[str, set[str]] = defaultdict(set)
    for op, paths in file_paths.items():
        for pat in collapse_paths({p for p in paths if p}):
            ops_of[pat].add(op)
    by_ops: dict[tuple, list[str]] = defaultdict(list)
    for pat, ops in ops_of.items():
        by_ops[tuple(sorted(ops))].append(pat)
    for ops, pats in sorted(by_ops.items()):
        lines.append(f"allow file {', '.join(ops)} {', '.join(quote(p) for p in sorted(pats))}")
    if exec_paths - {""}:
        lines.append("allow exec " + ", ".join(quote(p) for p in collapse_paths(exec_paths - {""})))
    if mount_paths - {""}:
        lines.append("allow mount " + ", ".join(quote(p) for p in collapse_paths(mount_paths - {""})))
    for op in sorted(net):
        for obj in sorted(net[op]):
            lines.append(f"allow net {op} {obj}")
    if caps:
        lines.append("allow capability " + ", ".join(sorted(caps)))
    for target in sorted(signals, key=lambda t: t or ""):
        to = f" to exe {quote(literal(target))}" if target else ""
        lines.append(f"allow signal {', '.join(sorted(signals[target]))}{to}")
    for target in sorted(ptrace, key=lambda t: t or ""):
        lines.append("allow ptrace" + (f" to exe {quote(literal(target))}" if target else ""))
    if module:
        lines.append("allow module load")
    if bpf:
        lines.append("allow bpf")
    head = [f"# suggested by `policyc suggest` from {len(recs)} events of policy `{policy}` "
            f"({', '.join(sources)})",
            f"# to use: include this file and add `use {ruleset_name(policy)}` to policy `{policy}`"]
    for (loc, text, decision), n in sorted(kept.items(), key=lambda kv: str(kv[0])):
        head.append(f"# kept: {n} events decided by rule {loc or '?'} ({text or decision}): no allow proposed")
    for (reason, fam, op, path), n in sorted(failed.items()):
        what = "not a path" if reason == "no-path" else f"failed closed: {reason}"
        head.append(f"# {what}: {n} {fam} {op} events{' on ' + path if path else ''}: no allow proposed")
    head = [h.replace("\n", " ").replace("\r", " ") for h in head]
    body = "".join(f"    {line}\n" for line in lines)
    return "\n".join(head) + f"\nruleset {ruleset_name(policy)} {{\n{body}}}\n"
