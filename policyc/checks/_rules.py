"""What several checks need to compare rules: keys, ranks, coverage of the non-path parts."""

from __future__ import annotations

from .. import abi
from ..ir.model import NetSpec, Rule, Target
from ._globs import includes

RANK = abi.DECISION.index   # a decision's ABI value is its precedence (deny > audit > allow)


def net_key(net: NetSpec | None):
    if net is None:
        return None
    return (net.proto, frozenset((int(n.network_address), n.prefixlen) for n in net.nets), frozenset(net.ports))


def target_key(t: Target | None):
    if t is None:
        return None
    # the direction first: a `to` and a `from` rule never name the same events
    return (t.direction, t.kind, t.exe.text if t.exe is not None else None, t.cgroup)


def objects_key(r: Rule):
    """What a rule applies to, ops aside: two rules with equal keys name the same objects. An
    `owner` rule names only the files the process owns: not the objects of the same rule
    without `owner` (not its duplicate, nor its contradiction)."""
    return (r.family, frozenset(g.text for g in r.paths), net_key(r.net), target_key(r.target), r.owner)


def rule_key(r: Rule):
    return (r.decision, frozenset(r.ops), objects_key(r))


class Keys:
    """`objects_key` and `rule_key` of every rule of a policy, computed once."""

    _cache: dict = {}

    def __init__(self, policy):
        self.objects = {r.id: objects_key(r) for r in policy.rules}
        # the transition too: `allow exec "/x"` and `allow exec "/x" as policy p` differ
        # (W114 says which of them decides)
        self.rules = {r.id: (r.decision, frozenset(r.ops), self.objects[r.id], r.transition and
                             (r.transition.kind, r.transition.policy)) for r in policy.rules}

    @classmethod
    def of(cls, policy) -> "Keys":
        hit = cls._cache.get(id(policy))
        if hit is not None and hit[0] is policy:
            return hit[1]
        if len(cls._cache) > 64:
            cls._cache.clear()
        keys = cls(policy)
        cls._cache[id(policy)] = (policy, keys)
        return keys


def from_ruleset(r: Rule) -> bool:
    return bool(r.used_from)


def what(r: Rule, ops=None) -> str:
    """`file read, write` / `exec` / `capability sys_admin`: for messages."""
    ops = r.ops if ops is None else ops
    if r.all_ops and ops == r.ops:
        return f"{r.family} (all operations)"
    return f"{r.family} {', '.join(ops)}".strip()


def _cgroup_within(inner: str, outer: str) -> bool:
    return outer == "/" or inner == outer or inner.startswith(outer + "/")


def target_covers(a: Target | None, b: Target | None) -> bool:
    """Every target `b` names, `a` names too (`None`: any target). Rules of the two sides
    (`to`, `from`) never cover each other; `from all` covers only `from all`: it is the
    receive side's default, deciding only what no rule naming the sender matches, so it
    neither covers nor is covered by a `from exe`/`from cgroup` rule."""
    a_receive = a is not None and a.direction == "from"
    b_receive = b is not None and b.direction == "from"
    if a_receive != b_receive:
        return False
    if a is None:
        return True
    if b is None or a.kind != b.kind:
        return False
    if a.kind == "exe":
        return includes(a.exe, b.exe)
    if a.kind == "all":
        return True
    return _cgroup_within(b.cgroup, a.cgroup)


def _ranges_cover(outer, inner) -> bool:
    if not outer:
        return True
    if not inner:
        return False
    merged: list[list[int]] = []
    for lo, hi in sorted(outer):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return all(any(m[0] <= lo and hi <= m[1] for m in merged) for lo, hi in inner)


def net_covers(a: NetSpec | None, b: NetSpec | None) -> bool:
    """Every connection `b` matches, `a` matches too."""
    if a is None:
        return True
    if b is None:
        return False
    if a.proto != "any" and a.proto != b.proto:
        return False
    if a.nets:
        if not b.nets:
            return False
        if not all(any(n.subnet_of(m) for m in a.nets) for n in b.nets):
            return False
    return _ranges_cover(a.ports, b.ports)
