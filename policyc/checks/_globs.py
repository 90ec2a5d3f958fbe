"""Glob language inclusion: does every path one glob matches also match another?

Exact, by a product of the two globs' automata: the automaton of policyc/ir/glob.py, the
one the evaluator walks and the kernel's DFA is built from, so "included" here means included
for the kernel too. The product is explored over a finite alphabet of bytes: the bytes the two
globs name, and per byte class (`/`, UTF-8 continuation, other) one byte neither names (all
such bytes behave alike in both globs). Used by the shadowing checks, which must never claim
falsely.

>>> from policyc.span import NO_SPAN
>>> from policyc.diagnostics import Diagnostics
>>> g = lambda t: parse_glob(t, NO_SPAN, Diagnostics())
>>> includes(g("/srv/**"), g("/srv/www/index.html"))
True
>>> includes(g("/srv/*"), g("/srv/www/index.html"))
False
>>> includes(g("/usr/bin/{curl,wget}"), g("/usr/bin/curl"))
True
>>> includes(g("/a/*.log"), g("/a/{x,y*}.log"))
True
>>> includes(g("/a/**"), g("/a"))
False
>>> includes(g("/a/?"), g("/a/*"))
False

Paths are bytes: `*` matches a lone continuation byte (a path that is not UTF-8), `?` does
not, so a `*` is no `?` followed by a `*`, nor nothing:

>>> includes(g("/a/{?*,}"), g("/a/*")), includes(g("/a/{?*,}"), g("/a/{é,}"))
(False, True)
"""

from __future__ import annotations

import functools

from ..ir.glob import CLASS_OF, matcher, parse_glob, path_bytes  # noqa: F401  (parse_glob: doctest)
from ..ir.model import Alt, DoubleStar, Glob, Lit

MAX_PAIRS = 20000     # product states explored before giving up (then: "not included")


def literal_prefix(parts) -> str:
    """The text every match starts with (the literal before the first wildcard or brace)."""
    return parts[0].text if parts and isinstance(parts[0], Lit) else ""


def _literal_suffix(parts) -> str:
    return parts[-1].text if parts and isinstance(parts[-1], Lit) else ""


def first_branch(parts) -> tuple:
    """The glob with every `{...}` replaced by its first alternative (merged): one brace-free
    glob whose matches the glob's matches include (for indexes that want a literal prefix)."""
    out: list = []
    for p in parts:
        for q in first_branch(p.options[0]) if isinstance(p, Alt) else (p,):
            if out and isinstance(q, Lit) and isinstance(out[-1], Lit):
                out[-1] = Lit(out[-1].text + q.text)
            else:
                out.append(q)
    return tuple(out)


@functools.lru_cache(maxsize=65536)
def _samples(parts) -> tuple[bytes, ...]:
    """Two paths the glob matches, read off its automaton (the first alternative of each
    `{...}`; each `*`/`**` empty, then `x`; each `?` an `x`): a cheap necessary test before
    the exact one."""
    m = matcher(parts)
    return m.nfa.sample(m.entry), m.nfa.sample(m.entry, b"x")


def sample_path(parts) -> bytes:
    """One path the glob matches (its first sample)."""
    return _samples(parts)[0]


@functools.lru_cache(maxsize=65536)
def _named(parts) -> frozenset[int]:
    return frozenset(matcher(parts).nfa.named_bytes())


def _alphabet(named: frozenset[int]) -> list[int]:
    """The named bytes, and a byte no glob names for each class that has one left."""
    out = sorted(named)
    for cls in range(3):
        rep = next((b for b in range(256) if CLASS_OF[b] == cls and b not in named), None)
        if rep is not None:
            out.append(rep)
    return out


def includes(big: Glob, small: Glob) -> bool:
    """True when every path `small` matches, `big` matches too (exact; False when unsure)."""
    return parts_include(big.parts, small.parts)


@functools.lru_cache(maxsize=262144)
def parts_include(big, small) -> bool:
    if big == small:
        return True
    if all(isinstance(p, Lit) for p in small):
        return matcher(big).matches(path_bytes("".join(p.text for p in small)))
    if all(isinstance(p, Lit) for p in big):
        return False   # a wildcard glob matches more than one path (or, for `{a}`, was merged)
    # Cheap necessary conditions first.
    bp, sp = literal_prefix(big), literal_prefix(small)
    if not sp.startswith(bp) and not any(isinstance(p, Alt) for p in small):
        return False
    bs, ss = _literal_suffix(big), _literal_suffix(small)
    if not ss.endswith(bs) and not any(isinstance(p, Alt) for p in small):
        return False
    mb = matcher(big)
    if not all(mb.matches(s) for s in _samples(small)):
        return False
    return _product_includes(big, small)


def _product_includes(big, small) -> bool:
    """L(small) ⊆ L(big): no reachable pair of states where `small` accepts and `big` does
    not. States are the matchers' lazily made deterministic states (ints)."""
    mb, ms = matcher(big), matcher(small)
    mb.fresh()
    ms.fresh()
    alphabet = _alphabet(_named(big) | _named(small))
    acc_b, acc_s = mb.accepting, ms.accepting   # grow as states are made; never replaced here
    step_b, step_s = mb.step, ms.step
    seen = {(1, 1)}
    stack = [(1, 1)]
    while stack:
        s, b = stack.pop()
        if acc_s[s] and not acc_b[b]:
            return False
        for ch in alphabet:
            s2 = step_s(s, ch)
            if not s2:
                continue
            b2 = step_b(b, ch)
            if not b2:
                return False   # every live state of a glob's automaton can still accept
            pair = (s2, b2)
            if pair not in seen:
                if len(seen) > MAX_PAIRS:
                    return False
                seen.add(pair)
                stack.append(pair)
    return True


def equivalent(a: Glob, b: Glob) -> bool:
    return includes(a, b) and includes(b, a)


def matches_everything(g: Glob) -> bool:
    """Every absolute path matches (`/**`, `/{**}`, `**`...)."""
    return parts_include(g.parts, (Lit("/"), DoubleStar()))


__all__ = ["includes", "parts_include", "equivalent", "literal_prefix", "first_branch",
           "matches_everything", "sample_path"]
