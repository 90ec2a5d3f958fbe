"""Which rules (or paths of rules) other rules already cover, for W102 and W103.

Rule B (or one path of it) is covered when, for each of its operations, some other rule A of
the same family matches everything B matches there, and A's decision is at least as severe
(deny > audit > allow). Then B never changes a decision. Covering is decided exactly (glob
inclusion by automata, CIDR and port containment) or not claimed.

Not reported here: exact duplicates (W101) and allow/deny pairs on the same objects (W106);
a rule spliced from a ruleset covered by a rule outside that ruleset (overriding a shared
ruleset is what policies do); of rules equal on a path, the one `_survivor` keeps; a rule
`protect policyc` added (the user cannot remove one of them, and a written `deny bpf` beside
it is no mistake), and a rule covered by one of those of the same decision. A rule those
override (an `allow bpf`) is reported: it never takes effect.

Fast on 10,000 rules: candidates come from an index by operation and by the directory part
of each glob's literal prefix (a glob can only cover paths that start with its own prefix;
literal globs by their text), then by the longest literal each glob holds past its prefix
(which the covered glob's sample path must contain); networks by (prefix length, address),
any-address rules by port; only candidates get the exact test.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..ir.model import Glob, Lit, Policy, Rule
from ..ir.glob import path_bytes
from ._globs import first_branch, includes, literal_prefix, sample_path
from ._rules import RANK, Keys, net_covers, target_covers


@dataclass(frozen=True)
class Covered:
    rule: Rule                 # the covered rule
    item: Glob | None          # the covered path; None: the whole rule
    by: tuple[Rule, ...]       # the covering rules (one per operation, deduplicated)
    overridden: bool           # every covering rule is more severe: `rule` never decides here


_cache: dict[int, tuple[Policy, list[Covered]]] = {}


def covered(policy: Policy) -> list[Covered]:
    """All findings for one policy (computed once per policy object)."""
    hit = _cache.get(id(policy))
    if hit is not None and hit[0] is policy:
        return hit[1]
    result = _analyse(policy)
    if len(_cache) > 64:
        _cache.clear()
    _cache[id(policy)] = (policy, result)
    return result


def _dir_prefix(prefix: str) -> str:
    return prefix[: prefix.rfind("/") + 1]


class _Index:
    def __init__(self, rules: tuple[Rule, ...]):
        # (family, op) -> directory prefix -> [(rule, glob, literal prefix)]
        self.paths: dict = defaultdict(lambda: defaultdict(list))
        self.literal: dict = defaultdict(lambda: defaultdict(list))   # (fam, op) -> text -> [(rule, glob)]
        self.anypath: dict = defaultdict(list)      # (family, op) -> rules without paths
        self.nets: dict = defaultdict(lambda: defaultdict(list))   # (fam, op) -> (len, int) -> rules
        self.netlens: dict = defaultdict(set)
        # (fam, op) -> rules for any address: with no ports, by port (narrow ranges), wide ranges
        self.anyport: dict = defaultdict(list)
        self.byport: dict = defaultdict(lambda: defaultdict(list))
        self.wideports: dict = defaultdict(list)
        for r in rules:
            for op in r.ops or (None,):
                key = (r.family, op)
                if r.paths:
                    for g in r.paths:
                        if g.is_literal:
                            self.literal[key][g.text].append((r, g))
                            continue
                        p = literal_prefix(g.parts)
                        self.paths[key][_dir_prefix(p)].append((r, g, p, _needed_literal(g.parts)))
                elif r.net is not None and r.net.nets:
                    for n in r.net.nets:
                        self.nets[key][(n.prefixlen, int(n.network_address))].append(r)
                        self.netlens[key].add(n.prefixlen)
                elif r.net is not None:
                    if not r.net.ports:
                        self.anyport[key].append(r)
                    elif sum(hi - lo + 1 for lo, hi in r.net.ports) <= 256:
                        for lo, hi in r.net.ports:
                            for port in range(lo, hi + 1):
                                self.byport[key][port].append(r)
                    else:
                        self.wideports[key].append(r)
                else:
                    self.anypath[key].append(r)

    def candidates(self, b: Rule, item: Glob | None, op):
        """(rule, glob or None) pairs that might cover `item` of `b` for `op`."""
        key = (b.family, op)
        for a in self.anypath.get(key, ()):
            yield a, None
        if item is not None:
            first = first_branch(item.parts)
            p = literal_prefix(first)
            if len(first) == 1 and isinstance(first[0], Lit):
                # A literal glob covers only itself.
                for a, g in self.literal.get(key, {}).get(p, ()):
                    yield a, g
            by_dir = self.paths.get(key)
            if by_dir:
                sample = None
                i = p.find("/")
                while i >= 0:
                    for a, g, ap, need in by_dir.get(p[: i + 1], ()):
                        if p.startswith(ap):
                            if need:
                                if sample is None:
                                    sample = sample_path(item.parts)
                                if need not in sample:
                                    continue   # `a` does not match a path `item` matches
                            yield a, g
                    i = p.find("/", i + 1)
        elif b.net is not None:
            # A rule for any address covers `b` only if it has no ports or contains b's first.
            for a in self.anyport.get(key, ()):
                yield a, None
            if b.net.ports:
                lo = b.net.ports[0][0]
                for a in self.byport.get(key, {}).get(lo, ()):
                    yield a, None
                for a in self.wideports.get(key, ()):
                    yield a, None
            if b.net.nets:
                n = b.net.nets[0]
                table = self.nets.get(key, {})
                for length in self.netlens.get(key, ()):
                    if length <= n.prefixlen:
                        sup = n.supernet(new_prefix=length)
                        for a in table.get((length, int(sup.network_address)), ()):
                            yield a, None


def _needed_literal(parts) -> bytes:
    """The longest literal of the glob outside braces, after its prefix: every path the glob
    matches holds it, so a glob whose sample path lacks it is not covered by this one (1,000
    rules `/home/*/pN/**` share the directory prefix `/home/`: without this test each was
    held against all the others by automaton, 11 s of `check`)."""
    lits = [p.text for p in parts[1:] if isinstance(p, Lit)]
    return path_bytes(max(lits, key=len)) if lits else b""


def _analyse(policy: Policy) -> list[Covered]:
    rules = policy.rules
    index = _Index(rules)
    keys = Keys.of(policy)
    first_of_key: dict = {}
    duplicates: set[int] = set()
    for r in rules:
        k = keys.rules[r.id]
        if k in first_of_key:
            duplicates.add(r.id)
        else:
            first_of_key[k] = r
    out: list[Covered] = []
    for b in rules:
        if b.id in duplicates or b.protect:
            continue
        items = b.paths or (None,)
        found: list[tuple[Glob | None, list[Rule]]] = []
        for item in items:
            chosen = []
            for op in b.ops or (None,):
                a = _best(index, keys, b, item, op, duplicates)
                if a is None:
                    break
                chosen.append(a)
            else:
                found.append((item, chosen))
        if not found:
            continue
        if len(found) == len(items):
            by = _unique(a for _, chosen in found for a in chosen)
            out.append(Covered(b, None, by, all(RANK[a.decision] > RANK[b.decision] for a in by)))
        else:
            for item, chosen in found:
                by = _unique(chosen)
                out.append(Covered(b, item, by, all(RANK[a.decision] > RANK[b.decision] for a in by)))
    return out


def _unique(rules) -> tuple[Rule, ...]:
    seen: dict[int, Rule] = {}
    for r in rules:
        seen.setdefault(r.id, r)
    return tuple(seen.values())


def _best(index: _Index, keys: Keys, b: Rule, item: Glob | None, op, duplicates=frozenset()) -> Rule | None:
    """A rule covering `item` of `b` for `op`: a more severe one if any, else one of the same
    decision. A W101 duplicate covers nothing: it is reported for removal itself."""
    same = None
    rb = RANK[b.decision]
    bkey = keys.objects[b.id]
    for a, g in index.candidates(b, item, op):
        ra = RANK[a.decision]
        if a.id == b.id or ra < rb or a.id in duplicates:
            continue
        if ra > rb and keys.objects[a.id] == bkey:
            continue   # W106 says it
        if ra == rb and (same is not None or a.protect):
            continue
        if b.used_from and a.used_from != b.used_from:
            continue
        if not _covers(a, g, b, item):
            continue
        if ra == rb:
            if keys.rules[a.id] == keys.rules[b.id]:
                continue   # a duplicate: W101 says it
            if _survivor(b) > _survivor(a) and _covers(b, item, a, g):
                continue   # equal here: one of the two must stay (see _survivor)
            same = a
        else:
            return a
    return same


def _survivor(r: Rule):
    """Among rules that cover each other on some path, the one with the largest key stays
    and the others are reported: the rule with more operations, then more paths, then the
    earlier one. Any total order keeps the findings consistent (removing every reported rule
    or path at once changes no decision); this one keeps the broader rule."""
    return (len(r.ops), len(r.paths), -r.id)


def _covers(a: Rule, ag: Glob | None, b: Rule, bg: Glob | None) -> bool:
    """`a` (through its path `ag`, or all paths when None and `a` has none) matches all that
    `b` (through `bg`) matches, ops aside. An `owner` rule matches only the files the process
    owns, so it covers only another `owner` rule; a rule without `owner` covers either."""
    if a.owner and not b.owner:
        return False
    if ag is None:
        if a.paths:
            return False
    elif bg is None or not includes(ag, bg):
        return False
    return target_covers(a.target, b.target) and net_covers(a.net, b.net)
