"""A policy's rules as BPF map contents: the DFA over paths, the net prefix table, config.

The byte layouts here mirror templates/common/policy.h and event.h; tests/unit/
test_codegen_tables.py pins them. Nothing here knows about clang or the runtime.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from ..ir.model import DoubleStar, Policy
from .dfa import Dfa, Pattern, build_dfa, glob_atoms

# enum policyc_op (event.h): the columns of a verdict vector
FILE_OP_INDEX = {
    "read": 0, "write": 1, "append": 2, "create": 3, "delete": 4, "rename": 5, "link": 6,
    "chmod": 7, "chown": 8, "exec-map": 9,
}
OP_EXEC, OP_MOUNT, OP_SUBJECT, OP_EXCEPT = 10, 11, 12, 13
N_OPS = 16
OP_NAMES = {v: k for k, v in FILE_OP_INDEX.items()} | {OP_EXEC: "exec", OP_MOUNT: "mount", OP_SUBJECT: "subject",
                                                         OP_EXCEPT: "except"}

NET_OP_INDEX = {"connect": 0, "bind": 1, "create": 2}
PROTO_BITS = {"tcp": 1, "udp": 2, "icmp": 4, "raw": 8, "packet": 16, "any": 0xFF}
RANK = {"allow": 0, "audit": 1, "deny": 2}

CFG_SUBJECT_ALL, CFG_SUBJECT_CGROUP, CFG_MODE_AUDIT, CFG_EXCEPT_CGROUP = 0x1, 0x2, 0x4, 0x8
CFG_RATE_LIMITS = 0x10
CGROUP_LEVELS = 31

# struct layouts (little-endian: x86-64 and the BPF target agree)
CONFIG = struct.Struct("<IIIB3x")
DFA_STATE = struct.Struct("<IIIII")
U32 = struct.Struct("<I")
VERDICT = struct.Struct(f"<{N_OPS}I{N_OPS}BQ")
SIMPLE_VERDICT = struct.Struct("<IB3x")
TASK_RULE = struct.Struct("<QQIIBBB5x")
SIMPLE_MODULE_LOAD, SIMPLE_BPF = 0, 1
TASK_SIGNAL, TASK_PTRACE = 0, 1
TARGET_ANY, TARGET_EXE, TARGET_CGROUP = 0, 1, 2
MAX_TARGET_PATTERNS = 64
MAX_TASK_RULES = 256
NET_KEY = struct.Struct("<IB16s")
NET_SLICE = struct.Struct("<II")
NET_ENTRY = struct.Struct("<IHHBB2x")
# struct rule_limit: bpf_spin_lock, per_window, window_ns, window_start, sent (the last three
# are the kernel's; the lock is never copied from user space)
RULE_LIMIT = struct.Struct("<IIQQQ")
MAX_LIMITED_RULES = 4096  # templates/common/policy.h RULE_SUPPRESSED_MAX


@dataclass(frozen=True)
class MapData:
    """One map's contents: `entries` are (key, value) byte pairs in a stable order."""

    kind: str
    key_size: int
    value_size: int
    max_entries: int
    entries: tuple[tuple[bytes, bytes], ...]

    def to_json(self) -> dict:
        return {
            "type": self.kind,
            "key_size": self.key_size,
            "value_size": self.value_size,
            "max_entries": self.max_entries,
            "count": len(self.entries),
            "data": b"".join(k + v for k, v in self.entries).hex(),
        }


def path_patterns(policy: Policy) -> list[Pattern]:
    """Every path pattern of a policy, with the verdict columns it speaks for."""
    pats: list[Pattern] = []
    for rule in policy.rules:
        if rule.family == "file":
            mask = 0
            for op in rule.ops:
                mask |= 1 << FILE_OP_INDEX[op]
                if op == "write":
                    mask |= 1 << FILE_OP_INDEX["append"]  # write covers append
        elif rule.family == "exec":
            mask = (1 << OP_EXEC) | (1 << FILE_OP_INDEX["exec-map"])
        elif rule.family == "mount":
            mask = 1 << OP_MOUNT
        else:
            continue
        protects = rule.decision == "deny" and rule.family in ("file", "exec")
        globs = [g.parts for g in rule.paths] or [(DoubleStar(),)]
        for parts in globs:
            for atoms in glob_atoms(parts):
                pats.append(Pattern(atoms, mask, rule.id, RANK[rule.decision], protects))
    for i, subj in enumerate(policy.subjects):
        if subj.kind == "exe":
            for atoms in glob_atoms(subj.exe.parts):
                pats.append(Pattern(atoms, 1 << OP_SUBJECT, i + 1, 1))
    for bit, rule in enumerate(target_rules(policy)):
        for atoms in glob_atoms(rule.target.exe.parts):
            pats.append(Pattern(atoms, 0, rule.id, 0, target_bit=bit))
    for i, exc in enumerate(policy.exceptions):
        if exc.kind == "exe":
            for atoms in glob_atoms(exc.exe.parts):
                pats.append(Pattern(atoms, 1 << OP_EXCEPT, i + 1, 1))
    return pats


def target_rules(policy: Policy):
    """Signal and ptrace rules with a `to exe` target: bit i of a verdict's target mask."""
    return [r for r in policy.rules if r.family in ("signal", "ptrace") and r.target is not None
            and r.target.kind == "exe"]


def policy_dfa(policy: Policy) -> Dfa:
    default = (RANK[policy.default], 0)
    defaults = [default] * N_OPS
    defaults[OP_SUBJECT] = defaults[OP_EXCEPT] = (0, 0)
    return build_dfa(path_patterns(policy), N_OPS, defaults)


def dfa_maps(dfa: Dfa) -> dict[str, MapData]:
    states = tuple(
        (U32.pack(i), DFA_STATE.pack(s[0], s[1], s[2], s[3], s[4])) for i, s in enumerate(dfa.states)
    )
    edges = tuple((U32.pack(k), U32.pack(v)) for k, v in sorted(dfa.edges.items()))
    verdicts = []
    for i, vec in enumerate(dfa.verdicts):
        ops, targets = vec[:-1], vec[-1]
        rules = [rule for _, rule in ops]
        decisions = [rank for rank, _ in ops]
        verdicts.append((U32.pack(i), VERDICT.pack(*rules, *decisions, targets)))
    return {
        "dfa_states": MapData("array", 4, DFA_STATE.size, max(1, len(states)), states),
        "dfa_edges": MapData("hash", 4, 4, max(1, len(edges)), edges),
        "verdicts": MapData("array", 4, VERDICT.size, max(1, len(verdicts)), tuple(verdicts)),
    }


def net_maps(policy: Policy) -> dict[str, MapData]:
    """The LPM trie and its entry slices (see templates/net.bpf.c.j2)."""
    everything = ipaddress.IPv6Network("::/0")
    entries: list[tuple[int, ipaddress.IPv6Network, int, int, int, int, int]] = []
    for rule in policy.rules:
        if rule.family != "net" or rule.net is None:
            continue
        for op in rule.ops:
            if op not in NET_OP_INDEX:
                continue
            for net in rule.net.nets or (everything,):
                for lo, hi in rule.net.ports or ((0, 65535),):
                    entries.append((NET_OP_INDEX[op], net, lo, hi, PROTO_BITS[rule.net.proto],
                                    RANK[rule.decision], rule.id))
    prefixes = sorted({(e[0], e[1]) for e in entries}, key=lambda x: (x[0], int(x[1].network_address), x[1].prefixlen))
    keys, slices, flat = [], [], []
    for op, net in prefixes:
        covering = [e for e in entries if e[0] == op and net.subnet_of(e[1])]
        covering.sort(key=lambda e: (-e[5], e[6]))
        start = len(flat)
        for e in covering:
            flat.append(NET_ENTRY.pack(e[6], e[2], e[3], e[4], e[5]))
        keys.append(NET_KEY.pack(8 + net.prefixlen, op, net.network_address.packed))
        slices.append(NET_SLICE.pack(start, len(covering)))
    return {
        "net_prefixes": MapData("lpm_trie", NET_KEY.size, NET_SLICE.size, max(1, len(keys)),
                                tuple(zip(keys, slices))),
        "net_entries": MapData("array", 4, NET_ENTRY.size, max(1, len(flat)),
                               tuple((U32.pack(i), v) for i, v in enumerate(flat))),
    }


def _simple(policy: Policy, matches) -> tuple[int, int]:
    """(decision rank, rule id) among rules `matches` accepts: deny, audit, allow; then
    source order; the default (rule 0) when none does."""
    best = None
    for r in policy.rules:
        if matches(r) and (best is None or RANK[r.decision] > RANK[best.decision]):
            best = r
    return (RANK[best.decision], best.id) if best else (RANK[policy.default], 0)


def simple_maps(policy: Policy) -> dict[str, MapData]:
    """Capabilities (one verdict per number), module load and bpf (one verdict each)."""
    from ..ir.vocab import CAPABILITIES

    caps = []
    for num in range(64):
        name = CAPABILITIES[num] if num < len(CAPABILITIES) else None
        rank, rule = _simple(policy, lambda r: r.family == "capability" and name in r.ops)
        caps.append((U32.pack(num), SIMPLE_VERDICT.pack(rule, rank)))
    simple = []
    for idx, fam in ((SIMPLE_MODULE_LOAD, "module"), (SIMPLE_BPF, "bpf")):
        rank, rule = _simple(policy, lambda r: r.family == fam)
        simple.append((U32.pack(idx), SIMPLE_VERDICT.pack(rule, rank)))
    return {
        "cap_verdicts": MapData("array", 4, SIMPLE_VERDICT.size, 64, tuple(caps)),
        "simple_verdicts": MapData("array", 4, SIMPLE_VERDICT.size, 2, tuple(simple)),
    }


def task_maps(policy: Policy) -> tuple[dict[str, MapData], list[dict]]:
    """Signal and ptrace rules in precedence order, and the cgroup ids to fill at load."""
    from ..ir.vocab import SIGNALS

    bits = {r.id: i for i, r in enumerate(target_rules(policy))}
    rules = [r for r in policy.rules if r.family in ("signal", "ptrace")]
    rules.sort(key=lambda r: (-RANK[r.decision], r.id))
    entries, fixups = [], []
    for i, r in enumerate(rules):
        mask = 0
        if r.family == "signal":
            for name in r.ops:
                mask |= 1 << (SIGNALS[name] - 1)
        kind = TARGET_ANY
        if r.target is not None:
            kind = TARGET_EXE if r.target.kind == "exe" else TARGET_CGROUP
        if kind == TARGET_CGROUP:
            fixups.append({"map": "task_rules", "index": i, "offset": 8, "cgroup": r.target.cgroup})
        entries.append((U32.pack(i), TASK_RULE.pack(
            mask, 0, r.id, bits.get(r.id, 0), TASK_SIGNAL if r.family == "signal" else TASK_PTRACE,
            RANK[r.decision], kind)))
    return {"task_rules": MapData("array", 4, TASK_RULE.size, max(1, len(entries)), tuple(entries))}, fixups


def limited_rules(policy: Policy):
    """Rules with a `limit` that send events (deny and audit rules)."""
    return [r for r in policy.rules if r.limit is not None and r.decision != "allow"]


def default_limit(policy: Policy):
    """`default deny limit N/UNIT` (a default allow sends no events: nothing to limit)."""
    return policy.default_limit if policy.default != "allow" else None


def limit_map(policy: Policy) -> dict[str, MapData]:
    """`rule_limits`, indexed by rule id: each limited rule's events per window; index 0 is
    the default decision's (failed-closed decisions also carry rule id 0 but are never limited)."""
    limited = [(r.id, r.limit) for r in limited_rules(policy)]
    if default_limit(policy):
        limited.insert(0, (0, policy.default_limit))
    entries = tuple((U32.pack(rid), RULE_LIMIT.pack(0, lim.count, lim.window_s * 1_000_000_000, 0, 0))
                    for rid, lim in limited)
    size = max([rid for rid, _ in limited], default=0) + 1
    return {"rule_limits": MapData("array", 4, RULE_LIMIT.size, size, entries)}


def config_map(policy: Policy) -> MapData:
    flags = 0
    if any(s.kind == "all" for s in policy.subjects):
        flags |= CFG_SUBJECT_ALL
    if any(s.kind == "cgroup" for s in policy.subjects):
        flags |= CFG_SUBJECT_CGROUP
    if policy.mode == "audit":
        flags |= CFG_MODE_AUDIT
    if any(s.kind == "cgroup" for s in policy.exceptions):
        flags |= CFG_EXCEPT_CGROUP
    if limited_rules(policy) or default_limit(policy):
        flags |= CFG_RATE_LIMITS
    n_task_rules = sum(1 for r in policy.rules if r.family in ("signal", "ptrace"))
    value = CONFIG.pack(flags, CGROUP_LEVELS, n_task_rules, RANK[policy.default])
    return MapData("array", 4, CONFIG.size, 1, ((U32.pack(0), value),))
