"""Path globs to one byte-level DFA per policy, in the compressed form the kernel walks.

Why a DFA: the kernel's cost per event must not grow with the number of rules. Every path
pattern of a policy (file, exec, subject, mount) goes into one automaton; after the last byte
of a path, the state's verdict vector says, per operation, which rule wins (or the default).

Glob meaning (the same as policyc.evaluate, which is the specification):
    `*`   any bytes but `/`, possibly none      `**`  any bytes, possibly none
    `?`   one UTF-8 character other than `/`     `{a,b}` either alternative

Compression (the kernel side is templates/common/dfa.h):
  * each state has three default successors, by byte class: `/`, UTF-8 continuation bytes
    (0x80-0xBF), and every other byte; no pattern atom distinguishes bytes within a class
    unless it names the byte literally;
  * a hash map holds only the (state, byte) edges that differ from their class default.
State 0 is the dead state (nothing can match any more); state 1 is the start.

>>> d = build_dfa([Pattern(glob_atoms("/a/*"), 1 << 0, rule_id=1, rank=2)], n_ops=2, defaults=[(0, 0)] * 2)
>>> d.match(b"/a/x")[0]
(2, 1)
>>> d.match(b"/a/x/y")[0]
(0, 0)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..ir.model import Alt, AnyChar, DoubleStar, Lit, Star

# Atom kinds, as negative numbers beside literal bytes 0..255.
STAR, DSTAR, ANY = -1, -2, -3
# Position kinds (_SPLIT: an empty move to each alternative of a `{a,b}`).
_BYTE, _STAR, _DSTAR, _ANY, _TAIL, _ACCEPT, _SPLIT = range(7)

SLASH, CONT, OTHER = 0, 1, 2

MAX_STATES = 1 << 24   # the state number lives in the top 24 bits of an edge key


class DfaTooLarge(Exception):
    pass


def byte_class(b: int) -> int:
    if b == 0x2F:
        return SLASH
    if 0x80 <= b <= 0xBF:
        return CONT
    return OTHER


def glob_atoms(parts) -> list[tuple]:
    """The glob as one atom sequence: bytes 0..255, STAR, DSTAR, ANY, and for `{a,b}` a tuple
    of alternative atom sequences (nested as the braces are). Braces are never expanded, so
    no count of alternatives can be cut short (an expansion cap once made the kernel allow
    what the evaluator denied). A list of one, for the callers that add a Pattern each."""
    return [_atoms(parts)]


def _atoms(parts) -> tuple:
    atoms: list = []
    for p in parts:
        if isinstance(p, Lit):
            atoms.extend(p.text.encode("utf-8", "surrogateescape"))
        elif isinstance(p, Star):
            atoms.append(STAR)
        elif isinstance(p, DoubleStar):
            atoms.append(DSTAR)
        elif isinstance(p, AnyChar):
            atoms.append(ANY)
        elif isinstance(p, Alt):
            atoms.append(tuple(_atoms(o) for o in p.options))
        else:  # pragma: no cover - the glob parser makes nothing else
            raise AssertionError(p)
    return tuple(atoms)


@dataclass(frozen=True)
class Pattern:
    atoms: tuple[int, ...] | list
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
        return self.states[state][byte_class(b)]

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
    """Subset construction over glob positions. `defaults[op]` is the (rank, rule id) when
    no pattern for `op` accepts."""
    # --- positions ---------------------------------------------------------------------------
    kind: list[int] = []
    lit: list[int] = []
    nxt: list[int] = []
    owner: list[int] = []          # pattern index of each position
    starts: list[int] = []
    split: dict[int, tuple[int, ...]] = {}   # _SPLIT position -> the alternatives' entries

    def emit(k: int, literal: int, after: int, pi: int) -> int:
        kind.append(k)
        lit.append(literal)
        nxt.append(after)
        owner.append(pi)
        return len(kind) - 1

    def compile_seq(atoms, after: int, pi: int) -> int:
        """Positions for `atoms` followed by position `after`; returns the entry position.
        Built back to front so every position knows its successor."""
        entry = after
        for a in reversed(atoms):
            if isinstance(a, tuple):     # `{...}`: each alternative continues at `entry`
                entries = tuple(compile_seq(opt, entry, pi) for opt in a)
                entry = emit(_SPLIT, -1, -1, pi)
                split[entry] = entries
            elif a >= 0:
                entry = emit(_BYTE, a, entry, pi)
            elif a == ANY:
                # a lead byte moves to the tail, which eats continuation bytes, then goes on
                tail = emit(_TAIL, -1, entry, pi)
                entry = emit(_ANY, tail, -1, pi)
            else:
                entry = emit(_STAR if a == STAR else _DSTAR, -1, entry, pi)
        return entry

    for pi, pat in enumerate(patterns):
        accept = emit(_ACCEPT, -1, -1, pi)
        starts.append(compile_seq(pat.atoms, accept, pi))
    n_pos = len(kind)

    closure_cache: dict[int, frozenset[int]] = {}

    def closure(p: int) -> frozenset[int]:
        c = closure_cache.get(p)
        if c is not None:
            return c
        out = []
        stack = [p]
        seen = set()
        while stack:
            q = stack.pop()
            if q in seen:
                continue
            seen.add(q)
            out.append(q)
            k = kind[q]
            if k in (_STAR, _DSTAR, _TAIL):
                stack.append(nxt[q])
            elif k == _SPLIT:
                stack.extend(split[q])
        c = frozenset(out)
        closure_cache[p] = c
        return c

    # --- subset construction -----------------------------------------------------------------
    ids: dict[frozenset[int], int] = {frozenset(): 0}
    sets: list[frozenset[int]] = [frozenset()]
    start: set[int] = set()
    for s in starts:
        start |= closure(s)
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
        S = sets[sid]
        cls_moves: list[set[int]] = [set(), set(), set()]
        explicit: dict[int, set[int]] = {}
        for p in S:
            k = kind[p]
            if k == _BYTE:
                explicit.setdefault(lit[p], set()).update(closure(nxt[p]))
            elif k == _STAR:
                c = closure(p)
                cls_moves[CONT].update(c)
                cls_moves[OTHER].update(c)
            elif k == _DSTAR:
                c = closure(p)
                cls_moves[SLASH].update(c)
                cls_moves[CONT].update(c)
                cls_moves[OTHER].update(c)
            elif k == _ANY:
                cls_moves[OTHER].update(closure(lit[p]))
            elif k == _TAIL:
                cls_moves[CONT].update(closure(p))
        defaults_fs = [frozenset(m) for m in cls_moves]
        d_ids = tuple(intern(fs) for fs in defaults_fs)
        trans[sid] = d_ids
        for b, moves in explicit.items():
            c = byte_class(b)
            target = frozenset(moves | cls_moves[c])
            tid = intern(target)
            if tid != d_ids[c]:
                edges[sid << 8 | b] = tid

    # --- verdicts ----------------------------------------------------------------------------
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
            if kind[p] != _ACCEPT:
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
