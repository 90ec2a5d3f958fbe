"""A policy's rules as BPF map contents: the DFA over paths, the net prefix table, config.

Every byte layout, number and name the maps share with the C is policyc/abi.py's (the C
header templates/common/abi.h is generated from it); the names below are the ones the rest of
the compiler knows them by. Nothing here knows about clang or the runtime.
"""

from __future__ import annotations

import gc
import ipaddress
from dataclasses import dataclass

from .. import abi
from ..abi import (CFG_EXCEPT_CGROUP, CFG_MODE_AUDIT, CFG_RATE_LIMITS, CFG_SUBJECT_ALL,  # noqa: F401
                   CFG_SUBJECT_CGROUP, CGROUP_LEVELS, MAX_TARGET_PATTERNS, MAX_TASK_RULES, OP_EXCEPT,
                   OP_EXEC, OP_MOUNT, OP_SUBJECT, SIMPLE_BPF, SIMPLE_MODULE_LOAD, TARGET_ANY,
                   TARGET_CGROUP, TARGET_EXE, TASK_PTRACE, TASK_SIGNAL, U32)
from ..ir.limits import limited_rules, receive_rules, target_rules, task_rules  # noqa: F401  (codegen's callers know them here)
from ..ir.model import Policy
from ..ir.vocab import FILE_OPS, PROTOCOLS
from ..ir.glob import CLASS_OF
# the automaton is built in policyc/ir/dfa.py (`check` builds it too, without the code
# generator); the names stay known here
from ..ir.dfa import Dfa, Pattern, build_dfa, glob_atoms, path_patterns, policy_dfa  # noqa: F401

# the language's names for the ABI's numbers
FILE_OP_INDEX = {op: abi.OP.index[op] for op in FILE_OPS}   # enum policyc_op: verdict columns
N_OPS = abi.POLICYC_N_OPS
OP_NAMES = abi.OPS
NET_OP_INDEX = abi.NET_OP.index
PROTO_BITS = {p: abi.PROTO.index[p] for p in PROTOCOLS if p != "any"} | {"any": abi.PROTO_MASK_ANY}
RANK = abi.DECISION.index   # a decision's value is its precedence

# struct layouts (abi.Struct: struct.Struct's pack/unpack/size, and pack_fields by name)
CONFIG = abi.POLICYC_CONFIG
DFA_STATE = abi.DFA_STATE
DFA_EDGE = abi.DFA_EDGE
DFA_CLASSES = abi.DFA_CLASSES
DFA_ABSORBING = abi.DFA_ABSORBING
DFA_NO_STATE = abi.DFA_NO_STATE
VERDICT = abi.VERDICT
SIMPLE_VERDICT = abi.SIMPLE_VERDICT
TASK_RULE = abi.TASK_RULE
NET_KEY = abi.NET_KEY
NET_SLICE = abi.NET_SLICE
NET_ENTRY = abi.NET_ENTRY
RULE_LIMIT = abi.RULE_LIMIT   # the lock is never copied from user space: written as 0
MAX_LIMITED_RULES = abi.RULE_SUPPRESSED_MAX


@dataclass(frozen=True)
class MapData:
    """One map's contents: `entries` are (key, value) byte pairs in a stable order."""

    kind: str
    key_size: int
    value_size: int
    max_entries: int
    entries: tuple[tuple[bytes, bytes], ...]

    def to_json(self) -> dict:
        """The map as manifests of format 1 held it (hex `data`); builds now write its bytes
        to NAME.maps (policyc/mapsfile.py pack). Kept to make format-1 manifests in tests."""
        return {
            "type": self.kind,
            "key_size": self.key_size,
            "value_size": self.value_size,
            "max_entries": self.max_entries,
            "count": len(self.entries),
            "data": b"".join(k + v for k, v in self.entries).hex(),
        }


# dfa_states and verdicts packed by position (pack_fields by name costs a dict per entry: a
# third of the maps' time on 10,000 rules); the order is checked against the ABI here, so a
# reordered struct fails at import rather than packing fields into the wrong members.
assert DFA_STATE.names == ("next", "verdict", "protect_rule", "base", "flags")
assert DFA_STATE.member("next").count == 3
assert DFA_EDGE.names == ("check", "next")
assert VERDICT.names == ("rule", "decision", "targets")
assert VERDICT.member("rule").count == VERDICT.member("decision").count == N_OPS
_pack_state = DFA_STATE.pack
_pack_edge = DFA_EDGE.pack
_pack_verdict = VERDICT.pack
_u32 = U32.pack


@dataclass(frozen=True)
class CombTables:
    """The automaton as the kernel walks it (templates/common/policy.h dfa_step), AppArmor's
    compression: bytes that no state tells apart share a class (`classes[byte]`); a state's
    edges that differ from its default by base class sit in one shared array at `base[state] +
    class`, each slot saying which state owns it (`check`). One array lookup per byte, where
    the hash of (state, byte) edges it replaces cost a helper call per byte."""

    classes: bytes                      # byte -> class
    base: list[int]                     # per state
    comb: list[tuple[int, int]]         # (check, next); check DFA_NO_STATE: free
    absorbing: list[bool]               # per state: every byte leads back to it

    def step(self, dfa: Dfa, state: int, b: int) -> int:
        """What the kernel computes for one byte (tests hold it to Dfa.step)."""
        i = self.base[state] + self.classes[b]
        if i < len(self.comb) and self.comb[i][0] == state:
            return self.comb[i][1]
        return dfa.states[state][CLASS_OF[b]]


def comb_tables(dfa: Dfa) -> CombTables:
    # Classes: a byte's base class and the explicit edges that name it (state and target);
    # two bytes with the same of both step alike from every state.
    sig: dict[int, list[int]] = {}
    for key in sorted(dfa.edges):
        sig.setdefault(key & 0xFF, []).extend((key >> 8, dfa.edges[key]))
    class_of_sig: dict[tuple, int] = {}
    classes = bytearray(256)
    for b in range(256):
        k = (CLASS_OF[b], tuple(sig.get(b, ())))
        c = class_of_sig.get(k)
        if c is None:
            c = class_of_sig[k] = len(class_of_sig)
        classes[b] = c
    # Rows: per state, class -> next, for the edges that are not the default.
    rows: dict[int, dict[int, int]] = {}
    for key, nxt in dfa.edges.items():
        rows.setdefault(key >> 8, {})[classes[key & 0xFF]] = nxt
    n = len(dfa.states)
    base = [0] * n
    absorbing = [False] * n
    for st, (a, b, c, _v, _p) in enumerate(dfa.states):
        absorbing[st] = a == b == c == st and st not in rows
    # First fit, widest rows first, a bounded search each; `used` marks the slots taken. A row
    # of one edge (most of them: a literal's next byte) takes the first free slot at or after
    # its column.
    used = bytearray()
    comb: list[tuple[int, int]] = []
    free_from = 0
    for st in sorted(rows, key=lambda s: (-len(rows[s]), s)):
        row = rows[st]
        if len(row) == 1:
            # one edge (most rows: a literal's next byte): the first free slot at or after
            # its column, no search
            ((c, nxt),) = row.items()
            i = used.find(0, max(free_from, c))
            if i < 0:
                i = max(len(used), c)
                used.extend(bytes(i + 1 - len(used)))
                comb.extend([(DFA_NO_STATE, 0)] * (i + 1 - len(comb)))
            used[i] = 1
            comb[i] = (st, nxt)
            base[st] = i - c
            if i == free_from:
                f = used.find(0, free_from)
                free_from = len(used) if f < 0 else f
            continue
        cols = sorted(row)
        lo = cols[0]
        # multi-edge rows search near the end, where the comb is still sparse (the one-edge
        # rows fill the holes left behind from free_from on)
        at = max(free_from - lo, 0) if len(cols) == 1 else max(free_from - lo, len(used) - 4 * len(cols) * 16, 0)
        tries = 0
        while True:
            i = used.find(0, at + lo)
            at = (i if i >= 0 else max(len(used), at + lo)) - lo
            if all(at + c >= len(used) or not used[at + c] for c in cols):
                break
            tries += 1
            if tries == 32:
                # a wide row in a crowded comb: past the end (the one-edge rows that come last
                # fill the holes), so the packing stays linear
                at = len(used) - lo
                break
            at += 1
        top = at + cols[-1] + 1
        if top > len(used):
            used.extend(bytes(top - len(used)))
            comb.extend([(DFA_NO_STATE, 0)] * (top - len(comb)))
        for c in cols:
            used[at + c] = 1
            comb[at + c] = (st, row[c])
        base[st] = at
        f = used.find(0, free_from)   # every slot below free_from is taken
        free_from = len(used) if f < 0 else f
    return CombTables(bytes(classes), base, comb, absorbing)


def dfa_maps(dfa: Dfa) -> dict[str, MapData]:
    """The automaton's maps: dfa_states, dfa_classes, dfa_comb, verdicts. With the cyclic
    garbage collector paused, as while building the automaton: the hundreds of thousands of
    tuples made here (all acyclic) set off collections that traversed the whole program each
    time it was still young, which it is when the checks built the automaton just before
    (a sixth of this, 10,000 rules); reference counting still frees everything."""
    was = gc.isenabled()
    gc.disable()
    try:
        return _dfa_maps(dfa)
    finally:
        if was:
            gc.enable()


def _dfa_maps(dfa: Dfa) -> dict[str, MapData]:
    u32 = _u32
    t = comb_tables(dfa)
    comb = tuple((u32(i), _pack_edge(*e)) for i, e in enumerate(t.comb))
    if dfa.not_owner is None:
        states = tuple((u32(i), _pack_state(*s[:5], t.base[i], DFA_ABSORBING if t.absorbing[i] else 0))
                       for i, s in enumerate(dfa.states))
        vecs = dfa.verdicts
    else:
        # `owner` rules: verdicts in pairs, a state's (2i) then the same with the owner rules
        # left out (2i + 1), which policy.h owner_verdict reads for a file not the process's
        states = tuple((u32(i), _pack_state(s[0], s[1], s[2], 2 * s[3], s[4], t.base[i],
                                            DFA_ABSORBING if t.absorbing[i] else 0))
                       for i, s in enumerate(dfa.states))
        vecs = [vec for pair in zip(dfa.verdicts, dfa.not_owner) for vec in pair]
    verdicts = []
    for i, vec in enumerate(vecs):
        ops = vec[:-1]
        verdicts.append((u32(i), _pack_verdict(*[rule for _, rule in ops], *[rank for rank, _ in ops], vec[-1])))
    return {
        "dfa_states": MapData("array", 4, DFA_STATE.size, max(1, len(states)), states),
        "dfa_classes": MapData("array", 4, DFA_CLASSES.size, 1, ((u32(0), DFA_CLASSES.pack(t.classes)),)),
        "dfa_comb": MapData("array", 4, DFA_EDGE.size, max(1, len(comb)), comb),
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
            if op == "create" and (rule.net.nets or rule.net.ports):
                # socket() has no address or port yet: a rule that names either cannot speak
                # for it (the evaluator's _net_matches), so it writes no create entry
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
            flat.append(NET_ENTRY.pack_fields(rule_id=e[6], port_lo=e[2], port_hi=e[3], proto_mask=e[4],
                                              decision=e[5]))
        keys.append(NET_KEY.pack_fields(prefixlen=abi.NET_KEY_OP_BITS + net.prefixlen, op=op,
                                        addr=net.network_address.packed))
        slices.append(NET_SLICE.pack_fields(start=start, count=len(covering)))
    return {
        "net_prefixes": MapData("lpm_trie", NET_KEY.size, NET_SLICE.size, max(1, len(keys)),
                                tuple(zip(keys, slices))),
        "net_entries": MapData("array", 4, NET_ENTRY.size, max(1, len(flat)),
                               tuple((U32.pack(i), v) for i, v in enumerate(flat))),
    }


def _simple_best(policy: Policy) -> tuple[dict, dict]:
    """In one pass over the rules: per capability name and per simple family (module, bpf),
    the rule that decides it: deny, audit, allow; then source order (the first of the most
    severe). Once per capability over every rule cost 1.7 s on 10,000 rules."""
    caps: dict[str, object] = {}
    fams: dict[str, object] = {}
    for r in policy.rules:
        if r.family == "capability":
            rank = RANK[r.decision]
            for name in r.ops:
                cur = caps.get(name)
                if cur is None or rank > RANK[cur.decision]:
                    caps[name] = r
        elif r.family in ("module", "bpf"):
            cur = fams.get(r.family)
            if cur is None or RANK[r.decision] > RANK[cur.decision]:
                fams[r.family] = r
    return caps, fams


def simple_maps(policy: Policy) -> dict[str, MapData]:
    """Capabilities (one verdict per number), module load and bpf (one verdict each)."""
    from ..ir.vocab import CAPABILITIES

    best_cap, best_fam = _simple_best(policy)
    default = (RANK[policy.default], 0)

    def verdict(r) -> tuple[int, int]:
        return (RANK[r.decision], r.id) if r is not None else default

    caps = []
    for num in range(abi.POLICYC_N_CAPS):
        name = CAPABILITIES[num] if num < len(CAPABILITIES) else None
        rank, rule = verdict(best_cap.get(name)) if name is not None else default
        caps.append((U32.pack(num), SIMPLE_VERDICT.pack_fields(rule_id=rule, decision=rank)))
    simple = []
    for idx, fam in ((SIMPLE_MODULE_LOAD, "module"), (SIMPLE_BPF, "bpf")):
        rank, rule = verdict(best_fam.get(fam))
        simple.append((U32.pack(idx), SIMPLE_VERDICT.pack_fields(rule_id=rule, decision=rank)))
    return {
        "cap_verdicts": MapData("array", 4, SIMPLE_VERDICT.size, abi.POLICYC_N_CAPS, tuple(caps)),
        "simple_verdicts": MapData("array", 4, SIMPLE_VERDICT.size, abi.POLICYC_N_SIMPLE, tuple(simple)),
    }


def task_maps(policy: Policy) -> tuple[dict[str, MapData], list[dict]]:
    """Signal and ptrace rules in precedence order, and the cgroup ids to fill at load. Send
    and receive rules share the array (each scan skips the other side's): a `to` rule's target
    and a `from` rule's sender are read alike."""
    from ..ir.vocab import SIGNALS

    bits = {r.id: i for i, r in enumerate(target_rules(policy))}
    rules = list(task_rules(policy))
    # `from all` rules last: the receive side's default, they decide what no rule naming the
    # sender matched (each scan stops at its first match)
    rules.sort(key=lambda r: (r.receive and r.target.kind == "all", -RANK[r.decision], r.id))
    entries, fixups = [], []
    for i, r in enumerate(rules):
        mask = 0
        if r.family == "signal":
            for name in r.ops:
                mask |= 1 << (SIGNALS[name] - 1)
        kind = TARGET_ANY
        if r.target is not None and r.target.kind != "all":   # `from all`: any sender
            kind = TARGET_EXE if r.target.kind == "exe" else TARGET_CGROUP
        if kind == TARGET_CGROUP:
            fixups.append({"map": "task_rules", "index": i, "offset": TASK_RULE.offset("target_cgroup"),
                           "cgroup": r.target.cgroup})
        entries.append((U32.pack(i), TASK_RULE.pack_fields(
            sig_mask=mask, rule_id=r.id, target_bit=bits.get(r.id, 0),
            kind=TASK_SIGNAL if r.family == "signal" else TASK_PTRACE, decision=RANK[r.decision],
            target_kind=kind, receive=int(r.receive))))
    return {"task_rules": MapData("array", 4, TASK_RULE.size, max(1, len(entries)), tuple(entries))}, fixups


def default_limit(policy: Policy):
    """`default deny limit N/UNIT` (a default allow sends no events: nothing to limit)."""
    return policy.default_limit if policy.default != "allow" else None


def limit_map(policy: Policy) -> dict[str, MapData]:
    """`rule_limits`, indexed by rule id: each limited rule's events per window; index 0 is
    the default decision's (failed-closed decisions also carry rule id 0 but are never limited)."""
    limited = [(r.id, r.limit) for r in limited_rules(policy)]
    if default_limit(policy):
        limited.insert(0, (0, policy.default_limit))
    entries = tuple((U32.pack(rid), RULE_LIMIT.pack_fields(per_window=lim.count,
                                                           window_ns=lim.window_s * 1_000_000_000))
                    for rid, lim in limited)
    size = max([rid for rid, _ in limited], default=0) + 1
    return {"rule_limits": MapData("array", 4, RULE_LIMIT.size, size, entries)}


def transition_map(policy: Policy) -> dict[str, MapData]:
    """`exec_transitions`, by rule id: each `allow exec ... as` rule's transition. The policy
    an `as policy NAME` enters is known by policy_id(NAME), as the loader registers it."""
    entries = []
    for r in policy.rules:
        t = r.transition
        if t is None:
            continue
        if t.kind == "policy":
            value = abi.EXEC_TRANSITION.pack_fields(policy_id=abi.policy_id(t.policy), kind=abi.TRANSITION_POLICY)
        else:
            value = abi.EXEC_TRANSITION.pack_fields(kind=abi.TRANSITION_UNCONFINED)
        entries.append((U32.pack(r.id), value))
    return {"exec_transitions": MapData("hash", 4, abi.EXEC_TRANSITION.size, max(1, len(entries)),
                                        tuple(entries))}


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
    if any(r.transition is not None for r in policy.rules):
        flags |= abi.CFG_TRANSITIONS
    if receive_rules(policy, "signal"):
        flags |= abi.CFG_RECEIVE_SIGNAL
    if receive_rules(policy, "ptrace"):
        flags |= abi.CFG_RECEIVE_PTRACE
    n_task_rules = len(task_rules(policy))
    value = CONFIG.pack_fields(flags=flags, cgroup_levels=CGROUP_LEVELS, task_rules=n_task_rules,
                               default_decision=RANK[policy.default])
    return MapData("array", 4, CONFIG.size, 1, ((U32.pack(0), value),))
