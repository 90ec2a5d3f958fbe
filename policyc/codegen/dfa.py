"""Path globs to one byte-level DFA per policy, in the compressed form the kernel walks.

Why a DFA: the kernel's cost per event must not grow with the number of rules. Every path
pattern of a policy (file, exec, subject, mount) goes into one automaton; after the last byte
of a path, the state's verdict vector says, per operation, which rule wins (or the default).

What a glob means is policyc/ir/glob.py's: every pattern's positions go into one
`policyc.ir.glob.Nfa` (the automaton the evaluator walks and the checks compare), and this
module is its subset construction. `*` any bytes but `/`; `**` any bytes; `?` one UTF-8
character other than `/`; `{a,b}` either alternative, an empty move into each (never expanded).

Compression (the kernel side is templates/common/policy.h dfa_step/dfa_walk):
  * each state has three default successors, by byte class: `/`, UTF-8 continuation bytes
    (0x80-0xBF), and every other byte; no pattern atom distinguishes bytes within a class
    unless it names the byte literally;
  * a hash map holds only the (state, byte) edges that differ from their class default.
State 0 is the dead state (nothing can match any more); state 1 is the start.

>>> from policyc.ir.model import Lit, Star
>>> (atoms,) = glob_atoms((Lit("/a/"), Star()))
>>> d = build_dfa([Pattern(atoms, 1 << 0, rule_id=1, rank=2)], n_ops=2, defaults=[(0, 0)] * 2)
>>> d.match(b"/a/x")[0]
(2, 1)
>>> d.match(b"/a/x/y")[0]
(0, 0)
"""

from __future__ import annotations

import gc
from collections import deque
from dataclasses import dataclass, field

from ..ir.glob import ACCEPT, CLASS_OF, CONT, OTHER, SLASH, Nfa

MAX_STATES = 1 << 24   # the state number lives in the top 24 bits of an edge key

__all__ = ["Dfa", "DfaTooLarge", "Pattern", "build_dfa", "byte_class", "glob_atoms",
           "SLASH", "CONT", "OTHER", "MAX_STATES"]


class DfaTooLarge(Exception):
    pass


def byte_class(b: int) -> int:
    return CLASS_OF[b]


def glob_atoms(parts) -> list[tuple]:
    """What a Pattern holds for a glob: its parts, which build_dfa adds to the shared
    automaton. A list of one, for the callers that add a Pattern each (the name and the shape
    outlive the atom sequences this once made)."""
    return [tuple(parts)]


@dataclass(frozen=True)
class Pattern:
    atoms: tuple           # the glob's parts (glob_atoms)
    ops_mask: int        # which operations this pattern's rule covers
    rule_id: int
    rank: int            # 0 allow, 1 audit, 2 deny
    protects: bool = False   # a deny rule: renaming/linking what it covers is refused
    target_bit: int = -1     # a `to exe` target pattern: sets this bit of the verdict's mask


@dataclass
class Dfa:
    n_ops: int
    # per state: (next_slash, next_cont, next_other, verdict index, protect rule id)
    states: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    edges: dict[int, int] = field(default_factory=dict)          # state << 8 | byte -> next
    # per op (rank, rule), then the target-pattern bit mask as the last element
    verdicts: list[tuple] = field(default_factory=list)

    def step(self, state: int, b: int) -> int:
        nxt = self.edges.get(state << 8 | b)
        if nxt is not None:
            return nxt
        return self.states[state][CLASS_OF[b]]

    def walk(self, data: bytes) -> int:
        s = 1
        for b in data:
            s = self.step(s, b)
            if s == 0:
                break
        return s

    def match(self, data: bytes):
        """The verdict vector for a path (what the kernel computes), for tests."""
        return self.verdicts[self.states[self.walk(data)][3]]

    def protect_rule(self, data: bytes) -> int:
        return self.states[self.walk(data)][4]


def build_dfa(patterns: list[Pattern], n_ops: int, defaults: list[tuple[int, int]]) -> Dfa:
    """Subset construction over the patterns' shared automaton. `defaults[op]` is the
    (rank, rule id) when no pattern for `op` accepts."""
    # The cyclic garbage collector paused: the construction allocates hundreds of thousands
    # of acyclic sets, and the collections they trigger took ~45% of a 10,000-rule build.
    # Reference counting still frees everything.
    was = gc.isenabled()
    gc.disable()
    try:
        return _build_dfa(patterns, n_ops, defaults)
    finally:
        if was:
            gc.enable()


def _build_dfa(patterns: list[Pattern], n_ops: int, defaults: list[tuple[int, int]]) -> Dfa:
    nfa = Nfa()
    owner: dict[int, int] = {}     # ACCEPT position -> pattern index
    start: set[int] = set()
    for pi, pat in enumerate(patterns):
        entry, accept = nfa.add(pat.atoms)
        owner[accept] = pi
        start |= nfa.closure(entry)
    successors = nfa.successors

    # --- subset construction -----------------------------------------------------------------
    ids: dict[frozenset[int], int] = {frozenset(): 0}
    sets: list[frozenset[int]] = [frozenset()]
    start_fs = frozenset(start)
    ids[start_fs] = 1
    sets.append(start_fs)
    trans: list[tuple[int, int, int]] = [(0, 0, 0), (0, 0, 0)]
    edges: dict[int, int] = {}
    queue = deque([1])

    def intern(fs: frozenset[int]) -> int:
        i = ids.get(fs)
        if i is None:
            i = len(sets)
            if i >= MAX_STATES:
                raise DfaTooLarge(f"the path patterns need more than {MAX_STATES} DFA states")
            ids[fs] = i
            sets.append(fs)
            trans.append((0, 0, 0))
            queue.append(i)
        return i

    while queue:
        sid = queue.popleft()
        cls_moves, explicit = successors(sets[sid])
        d_ids = (intern(frozenset(cls_moves[0])), intern(frozenset(cls_moves[1])),
                 intern(frozenset(cls_moves[2])))
        trans[sid] = d_ids
        base = sid << 8
        for b, moves in explicit.items():
            tid = intern(frozenset(moves))
            if tid != d_ids[CLASS_OF[b]]:
                edges[base | b] = tid

    # --- verdicts ----------------------------------------------------------------------------
    kind = nfa.kind
    default_vec = tuple(defaults) + (0,)
    verdict_ids: dict[tuple, int] = {default_vec: 0}
    verdicts: list[tuple] = [default_vec]
    deny_here: list[int] = []
    state_verdict: list[int] = []
    for S in sets:
        best = list(defaults)
        found = [False] * n_ops
        deny_min = 0
        targets = 0
        for p in S:
            if kind[p] != ACCEPT:
                continue
            pat = patterns[owner[p]]
            if pat.target_bit >= 0:
                targets |= 1 << pat.target_bit
            if pat.protects and (deny_min == 0 or pat.rule_id < deny_min):
                deny_min = pat.rule_id
            m = pat.ops_mask
            op = 0
            while m:
                if m & 1:
                    cand = (pat.rank, pat.rule_id)
                    cur = best[op]
                    if not found[op] or cand[0] > cur[0] or (cand[0] == cur[0] and cand[1] < cur[1]):
                        best[op] = cand
                        found[op] = True
                m >>= 1
                op += 1
        vec = tuple(best) + (targets,)
        vi = verdict_ids.get(vec)
        if vi is None:
            vi = len(verdicts)
            verdict_ids[vec] = vi
            verdicts.append(vec)
        state_verdict.append(vi)
        deny_here.append(deny_min)

    # --- protection: the lowest deny rule reachable from a state (what a rename would move) --
    n = len(sets)
    succ: list[set[int]] = [set() for _ in range(n)]
    for sid in range(n):
        succ[sid].update(trans[sid])
    for key, tid in edges.items():
        succ[key >> 8].add(tid)
    preds: list[list[int]] = [[] for _ in range(n)]
    for sid in range(n):
        for t in succ[sid]:
            preds[t].append(sid)
    reach = list(deny_here)
    work = deque(i for i in range(n) if reach[i])
    while work:
        t = work.popleft()
        for s in preds[t]:
            if reach[t] and (reach[s] == 0 or reach[t] < reach[s]):
                reach[s] = reach[t]
                work.append(s)

    dfa = Dfa(n_ops=n_ops, edges=edges, verdicts=verdicts)
    for sid in range(n):
        after_slash = edges.get(sid << 8 | 0x2F, trans[sid][SLASH])
        here, below = deny_here[sid], reach[after_slash]
        protect = min(x for x in (here, below) if x) if (here or below) else 0
        dfa.states.append((trans[sid][0], trans[sid][1], trans[sid][2], state_verdict[sid], protect))
    return dfa
