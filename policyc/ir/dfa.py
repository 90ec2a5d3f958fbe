"""Path globs to one byte-level DFA per policy, in the compressed form the kernel walks.

Why a DFA: the kernel's cost per event must not grow with the number of rules. Every path
pattern of a policy (file, exec, subject, mount) goes into one automaton; after the last byte
of a path, the state's verdict vector says, per operation, which rule wins (or the default).

Here, not in policyc/codegen, because both sides need it: `policyc check` builds a policy's
automaton to report one past the state cap (P041, policyc/checks/kernel_limits.py) and the
code generator turns the same automaton into map data (policyc/codegen/tables.py).
`policy_dfa` builds it once per policy object and process, whichever asks first; this module
imports only the standard library, policyc.abi and policyc.ir (`check` must stay light).

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
import weakref
from collections import deque
from dataclasses import dataclass, field

from .. import abi
from .glob import ACCEPT, BYTE, CLASS_OF, CONT, DSTAR, OTHER, SLASH, SPLIT, Nfa, path_bytes
from .limits import target_rules
from .model import DoubleStar, Lit, Policy, Rule

# The state number lives in the top 24 bits of an edge key, so 1 << 24 is the format's limit;
# the build stops far below it: 250,000 states are 5 MB of dfa_states and a few hundred MB of
# position sets while building, and a policy that needs more has a pattern whose automaton
# grows exponentially (`/**/x*/*/*/...`), which more memory would not cure.
MAX_STATES = 250_000

__all__ = ["Dfa", "DfaTooLarge", "Pattern", "build_dfa", "byte_class", "glob_atoms", "path_patterns",
           "policy_dfa", "too_large_message", "TOO_LARGE_HINT", "PATH_FAMILIES",
           "SLASH", "CONT", "OTHER", "MAX_STATES"]


class DfaTooLarge(Exception):
    """The patterns need more than `max_states` states; `source` names the rule (or subject)
    whose own automaton is the largest, `span` where it is written (the Pattern's, None when
    the patterns had none), and `states` how many it needs alone (at least that many when
    `states_capped`: alone, it too stopped at a quarter of the cap)."""

    def __init__(self, message: str, source: str = "", states: int = 0, span=None,
                 max_states: int = MAX_STATES, states_capped: bool = False):
        super().__init__(message)
        self.source = source
        self.states = states
        self.span = span
        self.max_states = max_states
        self.states_capped = states_capped


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
    source: str = ""         # where it is written (`file:line:col: text`), for DfaTooLarge
    owner: bool = False      # an `owner` rule's: left out of the not-owner verdicts
    # the rule's (or subject's) span, for DfaTooLarge: no part of a Pattern's identity
    span: object = field(default=None, compare=False)


@dataclass
class Dfa:
    n_ops: int
    # per state: (next_slash, next_cont, next_other, verdict index, protect rule id)
    states: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    edges: dict[int, int] = field(default_factory=dict)          # state << 8 | byte -> next
    # per op (rank, rule), then the target-pattern bit mask as the last element
    verdicts: list[tuple] = field(default_factory=list)
    # When some pattern is an `owner` rule's: beside each verdict, the same index, the verdict
    # with the owner rules left out (what a process that does not own the file gets); else
    # None, and the verdicts are all there is.
    not_owner: list[tuple] | None = None

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

    def match(self, data: bytes, owner: bool = True):
        """The verdict vector for a path (what the kernel computes), for tests; `owner=False`:
        for a process that does not own the file."""
        vi = self.states[self.walk(data)][3]
        return self.verdicts[vi] if owner or self.not_owner is None else self.not_owner[vi]

    def protect_rule(self, data: bytes) -> int:
        return self.states[self.walk(data)][4]


def build_dfa(patterns: list[Pattern], n_ops: int, defaults: list[tuple[int, int]],
              max_states: int = MAX_STATES) -> Dfa:
    """Subset construction over the patterns' shared automaton. `defaults[op]` is the
    (rank, rule id) when no pattern for `op` accepts. More than `max_states` states raise
    DfaTooLarge naming the rule that grows most on its own."""
    try:
        return _paused(patterns, n_ops, defaults, max_states)
    except DfaTooLarge:
        pass
    # Which rule: each rule's patterns alone, under a smaller cap (only on this failure path).
    by_source: dict[str, list[Pattern]] = {}
    for pat in patterns:
        by_source.setdefault(pat.source, []).append(pat)
    worst, worst_states, capped = "", 0, False
    for source, pats in by_source.items():
        try:
            n, over = len(_paused(pats, n_ops, defaults, max_states // 4).states), False
        except DfaTooLarge:
            n, over = max_states // 4, True
        if n > worst_states:
            worst, worst_states, capped = source, n, over
    message = f"the path patterns need more than {max_states:,} automaton states (the cap)"
    if worst_states * 100 < max_states:
        # no rule is large alone: rules that wait for a name after a `**` grow it together
        # (the automaton must remember which name it saw last, and how far into the next)
        mid = sum(1 for pats in by_source.values()
                  if any(isinstance(a, DoubleStar) for pat in pats for a in pat.atoms[:-1]))
        message += (f" together: no rule needs more than {worst_states:,} alone, but {mid:,} rules have a `**` "
                    "followed by more of the path, and the automaton must tell apart every pair of the "
                    "names they wait for" if mid > 1 else " together, no rule being large alone")
    raise DfaTooLarge(message, worst, worst_states, span=by_source[worst][0].span if worst in by_source else None,
                      max_states=max_states, states_capped=capped)


def _paused(patterns, n_ops, defaults, max_states) -> Dfa:
    # The cyclic garbage collector paused: the construction allocates hundreds of thousands
    # of acyclic sets, and the collections they trigger took ~45% of a 10,000-rule build.
    # Reference counting still frees everything.
    was = gc.isenabled()
    gc.disable()
    try:
        return _build_dfa(patterns, n_ops, defaults, max_states)
    finally:
        if was:
            gc.enable()


# Off only in tests/unit/test_dfa_shapes.py, which holds the pruned automaton to the full one.
PRUNE_ABSORBED = True


def _shared_prefix_nfa(patterns: list[Pattern]):
    """One automaton for all patterns, their common prefixes shared (a tree of atoms whose
    branches are SPLIT positions): 1,000 rules `/**/wN/*` keep one `/**/` position in each
    state, not 1,000, so states are small and fewer. The same languages as one automaton per
    pattern: a shared prefix reads the same bytes whichever pattern it leads to. Returns the
    automaton, ACCEPT position -> pattern index, position -> pattern index (-1: shared by
    several), and the entry position."""
    nfa = Nfa()
    # the tree: node = [children: dict key -> node, patterns ending here, patterns below]
    root: list = [{}, [], 0]
    for pi, pat in enumerate(patterns):
        node = root
        node[2] += 1
        for part in pat.atoms:
            # the atoms a prefix tree shares: a literal byte by byte (`/srv/d1` and `/srv/d2`
            # share `/srv/d`; the byte, an int, is the key), every other part whole (the part
            # is the key). This loop runs once per byte of every pattern.
            for key in (path_bytes(part.text) if type(part) is Lit else (part,)):
                child = node[0].get(key)
                if child is None:
                    child = node[0][key] = [{}, [], 0, pi]
                node = child
                node[2] += 1
        node[1].append(pi)
    owner: dict[int, int] = {}
    pattern_of: list[int] = []

    def own(upto: int, who: int) -> None:
        pattern_of.extend([who] * (upto - len(pattern_of)))

    # back to front (a position knows its successor), without recursion: a path may be
    # thousands of atoms deep. A node's entry position is kept as its fifth element.
    kinds, args, nxts = nfa.kind, nfa.arg, nfa.nxt
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if not done:
            stack.append((node, True))
            stack.extend([(child, False) for child in node[0].values()])
            continue
        who = node[3] if node is not root and node[2] == 1 else -1
        entries = []
        for pi in node[1]:
            acc = nfa._emit(ACCEPT, -1, -1)
            owner[acc] = pi
            own(len(kinds), pi)
            entries.append(acc)
        for key, child in node[0].items():
            after = child.pop()
            child_who = child[3] if child[2] == 1 else -1
            if type(key) is int:   # a literal byte: one position (inlined Nfa._emit)
                kinds.append(BYTE)
                args.append(key)
                nxts.append(after)
                pattern_of.append(child_who)
                entries.append(len(kinds) - 1)
                continue
            e = nfa._seq((key,), after)
            own(len(kinds), child_who)
            entries.append(e)
        if len(entries) == 1:
            entry = entries[0]
        else:
            entry = nfa._emit(SPLIT, -1, -1)
            nfa.split[entry] = tuple(entries)
            own(len(kinds), who)
        node.append(entry)
    return nfa, owner, pattern_of, root.pop()


def _dominates(a: Pattern, b: Pattern) -> bool:
    """Once `a` matches every extension of a path, `b` can no longer change any verdict of
    it: every column `b` speaks for, `a` speaks for with a decision that wins (more severe,
    or as severe and an earlier rule); `b` protects nothing `a` does not protect first; `b`
    sets no target bit."""
    if b.target_bit >= 0 or b.ops_mask & ~a.ops_mask:
        return False
    if a.owner and not b.owner:
        return False   # for a file the process does not own, `a` is not there and `b` decides
    if b.ops_mask and not (a.rank > b.rank or (a.rank == b.rank and a.rule_id <= b.rule_id)):
        return False
    return not b.protects or (a.protects and a.rule_id <= b.rule_id)


def _columns(pats, defaults, n_ops) -> list:
    """Per op, the (rank, rule) that wins among `pats`: the most severe decision, then the
    earliest rule; the default where none speaks for the op."""
    best = list(defaults)
    found = [False] * n_ops
    for pat in pats:
        m = pat.ops_mask
        op = 0
        cand = (pat.rank, pat.rule_id)
        while m:
            if m & 1:
                cur = best[op]
                if not found[op] or cand[0] > cur[0] or (cand[0] == cur[0] and cand[1] < cur[1]):
                    best[op] = cand
                    found[op] = True
            m >>= 1
            op += 1
    return best


def _verdict(acc, patterns, owner, defaults, n_ops, verdict_ids, verdicts,
             not_owner: list | None = None) -> tuple[int, int]:
    """(verdict index, lowest protecting deny rule) of a state whose accepting positions are
    `acc`: per op, the most severe decision, then the earliest rule; the target bits. With
    `not_owner` (the policy has `owner` rules), the same index also holds there the columns
    the non-owner patterns alone decide; the two together are one verdict."""
    pats = [patterns[owner[p]] for p in acc]
    deny_min = 0
    targets = 0
    for pat in pats:
        if pat.target_bit >= 0:
            targets |= 1 << pat.target_bit
        # an `owner` deny rule protects its paths from every process: a rename moves what is
        # below a path too, whose owners the kernel does not see at the rename
        if pat.protects and (deny_min == 0 or pat.rule_id < deny_min):
            deny_min = pat.rule_id
    vec = tuple(_columns(pats, defaults, n_ops)) + (targets,)
    if not_owner is None:
        key = vec
    else:
        nvec = tuple(_columns([p for p in pats if not p.owner], defaults, n_ops)) + (targets,)
        key = (vec, nvec)
    vi = verdict_ids.get(key)
    if vi is None:
        vi = len(verdicts)
        verdict_ids[key] = vi
        verdicts.append(vec)
        if not_owner is not None:
            not_owner.append(nvec)
    return vi, deny_min


def _build_dfa(patterns: list[Pattern], n_ops: int, defaults: list[tuple[int, int]],
               max_states: int = MAX_STATES) -> Dfa:
    nfa, owner, pattern_of, root = _shared_prefix_nfa(patterns)
    start: set[int] = set(nfa.closure(root))
    # A trailing `**` (`dir/**`): once a path reaches it, the pattern matches the path and
    # everything below it, for good. Position -> its pattern's index.
    absorbing: dict[int, int] = {}
    kind, nxt = nfa.kind, nfa.nxt
    for p, k in enumerate(kind):
        if k == DSTAR and kind[nxt[p]] == ACCEPT and pattern_of[p] >= 0:
            absorbing[p] = pattern_of[p]
    absorbing_set = frozenset(absorbing)
    successors = nfa.successors
    dominated: dict[tuple[int, int], bool] = {}

    def canonical(S) -> frozenset[int]:
        """The state's positions without those that can no longer change a verdict: where a
        pattern is absorbed, its other positions (they could only make it match again) and
        the positions of patterns it dominates. Without this, `/**/{.ssh,.aws,...}/**` keeps
        apart every set of names seen so far and the states grow as 2^names (#12); with it,
        they grow with the names. The verdicts and protect rules are the same."""
        hit = absorbing_set.intersection(S) if PRUNE_ABSORBED else None
        if not hit:
            return frozenset(S)
        def dom(a: int, b: int) -> bool:
            key = (a, b)
            d = dominated.get(key)
            if d is None:
                d = dominated[key] = _dominates(patterns[a], patterns[b])
            return d

        absorbed = {absorbing[p] for p in hit}
        if len(absorbed) > 1:
            # an absorbed pattern another absorbed one dominates goes too (of two that
            # dominate each other, the later one), or states would count the sets of them
            absorbed = {b for b in absorbed
                        if not any(a != b and dom(a, b) and (a < b or not dom(b, a)) for a in absorbed)}
        keep = []
        for p in S:
            b = pattern_of[p]
            if b < 0:              # a prefix several patterns share: kept
                keep.append(p)
            elif b in absorbed:
                if p in hit or kind[p] == ACCEPT:
                    keep.append(p)
            elif not any(dom(a, b) for a in absorbed):
                keep.append(p)
        return frozenset(keep)

    # --- subset construction -----------------------------------------------------------------
    ids: dict[frozenset[int], int] = {frozenset(): 0}
    sets: list[frozenset[int]] = [frozenset()]
    start_fs = canonical(start)
    ids[start_fs] = 1
    sets.append(start_fs)
    trans: list[tuple[int, int, int]] = [(0, 0, 0), (0, 0, 0)]
    edges: dict[int, int] = {}
    queue = deque([1])

    def intern(fs: frozenset[int]) -> int:
        i = ids.get(fs)
        if i is None:
            i = len(sets)
            if i >= max_states:
                raise DfaTooLarge(f"the path patterns need more than {max_states:,} automaton states")
            ids[fs] = i
            sets.append(fs)
            trans.append((0, 0, 0))
            queue.append(i)
        return i

    # Most states of a large policy are one literal byte of one path (`/srv/app12/fi`): their
    # one move is that byte's, every class goes to the dead state. Those skip the general step.
    closure = nfa.closure
    arg = nfa.arg
    while queue:
        sid = queue.popleft()
        S = sets[sid]
        if len(S) == 1:
            (p,) = S
            if kind[p] == BYTE:
                b = arg[p]
                tid = intern(canonical(closure(nxt[p])))
                # trans[sid] stays (0, 0, 0): every other byte leads to the dead state
                if tid:
                    edges[sid << 8 | b] = tid
                continue
        cls_moves, explicit = successors(S)
        d_ids = (intern(canonical(cls_moves[0])) if cls_moves[0] else 0,
                 intern(canonical(cls_moves[1])) if cls_moves[1] else 0,
                 intern(canonical(cls_moves[2])) if cls_moves[2] else 0)
        trans[sid] = d_ids
        base = sid << 8
        # in byte order: the numbering of states then depends on the patterns alone, not on
        # the iteration order of the position sets
        for b in sorted(explicit):
            tid = intern(canonical(explicit[b]))
            if tid != d_ids[CLASS_OF[b]]:
                edges[base | b] = tid

    # --- verdicts ----------------------------------------------------------------------------
    kind = nfa.kind
    default_vec = tuple(defaults) + (0,)
    has_owner = any(p.owner for p in patterns)
    verdict_ids: dict[tuple, int] = {(default_vec, default_vec) if has_owner else default_vec: 0}
    verdicts: list[tuple] = [default_vec]
    not_owner: list[tuple] | None = [default_vec] if has_owner else None
    deny_here: list[int] = []
    state_verdict: list[int] = []
    accepts = frozenset(p for p, k in enumerate(kind) if k == ACCEPT)
    by_accepts: dict[frozenset[int], tuple[int, int]] = {}
    for S in sets:
        acc = accepts.intersection(S)
        known = by_accepts.get(acc)
        if known is None:
            known = by_accepts[acc] = _verdict(acc, patterns, owner, defaults, n_ops, verdict_ids, verdicts,
                                               not_owner)
        state_verdict.append(known[0])
        deny_here.append(known[1])

    # --- protection: the lowest deny rule reachable from a state (what a rename would move) --
    n = len(sets)
    preds: list[list[int]] = []
    if any(deny_here):
        succ: list[set[int]] = [set(t) for t in trans]
        for key, tid in edges.items():
            succ[key >> 8].add(tid)
        preds = [[] for _ in range(n)]
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

    dfa = Dfa(n_ops=n_ops, edges=edges, verdicts=verdicts, not_owner=not_owner)
    for sid in range(n):
        after_slash = edges.get(sid << 8 | 0x2F, trans[sid][SLASH])
        here, below = deny_here[sid], reach[after_slash]
        protect = min(x for x in (here, below) if x) if (here or below) else 0
        dfa.states.append((trans[sid][0], trans[sid][1], trans[sid][2], state_verdict[sid], protect))
    return dfa


# --- a policy's patterns --------------------------------------------------------------------

def _file_columns(rule: Rule) -> int:
    mask = 0
    for op in rule.ops:
        mask |= 1 << abi.OP.index[op]
        if op == "write":
            mask |= 1 << abi.OP_APPEND  # write covers append
    return mask


# Per rule family whose paths the automaton decides: (the verdict columns a rule speaks for,
# whether a deny rule protects its paths from rename/link: dfa_state.protect_rule). The code
# generator's registry (policyc/codegen/families.py FAMILIES, `columns` and `protects`) takes
# them from here: `check` builds the automaton and must not import the code generator.
PATH_FAMILIES: dict[str, tuple] = {
    "file": (_file_columns, True),
    "exec": (lambda r: (1 << abi.OP_EXEC) | (1 << abi.OP_EXEC_MAP), True),
    "mount": (lambda r: 1 << abi.OP_MOUNT, False),
}
RANK = abi.DECISION.index   # a decision's value is its precedence


def path_patterns(policy: Policy) -> list[Pattern]:
    """Every path pattern of a policy, with the verdict columns it speaks for."""
    pats: list[Pattern] = []
    for rule in policy.rules:
        fam = PATH_FAMILIES.get(rule.family)
        if fam is None:
            continue   # not decided in the DFA
        columns, fam_protects = fam
        mask = columns(rule)
        protects = rule.decision == "deny" and fam_protects
        globs = [g.parts for g in rule.paths] or [(DoubleStar(),)]
        for parts in globs:
            for atoms in glob_atoms(parts):
                pats.append(Pattern(atoms, mask, rule.id, RANK[rule.decision], protects,
                                    source=f"{rule.span}: {rule.text}", span=rule.span, owner=rule.owner))
    for i, subj in enumerate(policy.subjects):
        if subj.kind == "exe":
            for atoms in glob_atoms(subj.exe.parts):
                pats.append(Pattern(atoms, 1 << abi.OP_SUBJECT, i + 1, 1, source=f"{subj.span}: subject",
                                    span=subj.span))
    for bit, rule in enumerate(target_rules(policy)):
        for atoms in glob_atoms(rule.target.exe.parts):
            pats.append(Pattern(atoms, 0, rule.id, 0, target_bit=bit, source=f"{rule.span}: {rule.text}",
                                span=rule.span))
    for i, exc in enumerate(policy.exceptions):
        if exc.kind == "exe":
            for atoms in glob_atoms(exc.exe.parts):
                pats.append(Pattern(atoms, 1 << abi.OP_EXCEPT, i + 1, 1, source=f"{exc.span}: except",
                                    span=exc.span))
    return pats


# --- one automaton per policy and process ---------------------------------------------------

# id(policy) -> (a weak reference to it, its Dfa or, past the cap, its DfaTooLarge's fields).
# `policyc build` runs the checks, which build every policy's automaton (P041), then the code
# generator, which needs the same automaton: it asks here and gets the checks' (a 10,000-rule
# policy's takes over a second). A Policy is frozen, so its identity stands for its content;
# the entry goes when the policy does (the weak reference's callback), so a later object
# given the same id never finds it.
_BUILT: dict[int, tuple] = {}


def _forget(key: int, ref: weakref.ref) -> None:
    got = _BUILT.get(key)
    if got is not None and got[0] is ref:
        del _BUILT[key]


def policy_dfa(policy: Policy) -> Dfa:
    """The policy's automaton (every path pattern; the default decision where none accepts).
    Raises DfaTooLarge past MAX_STATES. Built once per policy object: asked again, the same
    Dfa (or an equal DfaTooLarge) without building."""
    key = id(policy)
    got = _BUILT.get(key)
    if got is None or got[0]() is not policy:
        default = (RANK[policy.default], 0)
        defaults = [default] * abi.POLICYC_N_OPS
        defaults[abi.OP_SUBJECT] = defaults[abi.OP_EXCEPT] = (0, 0)
        try:
            result = build_dfa(path_patterns(policy), abi.POLICYC_N_OPS, defaults, MAX_STATES)
        except DfaTooLarge as e:
            # kept as its fields: an exception kept would keep its traceback, whose frames
            # hold the policy (which then never goes, nor its entry)
            result = (str(e), e.source, e.states, e.span, e.max_states, e.states_capped)
        try:
            got = _BUILT[key] = (weakref.ref(policy, lambda r, key=key: _forget(key, r)), result)
        except TypeError:   # an object without weak references: not kept
            got = (None, result)
    if type(got[1]) is tuple:
        message, *fields = got[1]
        raise DfaTooLarge(message, *fields)
    return got[1]


TOO_LARGE_HINT = ("a pattern whose automaton grows with every path component after a `**` "
                  "(`/**/x*/*/*/...`), or many mid-path `**` in one policy: anchor it (`/home/*/.ssh/**`), "
                  "split it into shorter patterns, or split the policy")


def too_large_message(policy: Policy, e: DfaTooLarge, at_rule: bool = False) -> str:
    """What `check` (P041, reported at the rule named: `at_rule`) and `build` say of a policy
    whose automaton passes the cap: the cap, and how many states the rule named needs alone."""
    alone = f"{'at least ' if e.states_capped else ''}{e.states:,} states"
    if not e.source:
        culprit = ""
    elif at_rule:
        what = ("subject" if e.source.endswith(": subject") else "exception" if e.source.endswith(": except")
                else "rule")
        culprit = f"; this {what} alone needs {alone}"
    else:
        culprit = f"; the largest alone is {e.source} ({alone})"
    return f"policy `{policy.name}`: {e}{culprit}"
