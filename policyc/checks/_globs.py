"""Glob language inclusion: does every path one glob matches also match another?

Exact, by a product of the two globs' automata explored over a finite alphabet: the
characters the two globs name, `/`, and one stand-in for every other character (they all
behave alike in both globs). Used by the shadowing checks, which must never claim falsely.

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
"""

from __future__ import annotations

import functools
import re

from ..ir.model import Alt, AnyChar, DoubleStar, Glob, Lit, Star
from ..lower.globs import expansions, parse_glob, to_regex  # noqa: F401  (parse_glob: doctest)

_NOT_SLASH = "^/"     # a transition label: any character but `/`
_ANY = "*"            # any character
_OTHER = "\0"         # stands for every character no glob names (NUL never occurs in a path)
MAX_PAIRS = 20000     # product states explored before giving up (then: "not included")


class _Nfa:
    """States are ints; `edges[s]` is a list of (label, target) where label is one
    character, _NOT_SLASH or _ANY; `eps[s]` the epsilon targets."""

    def __init__(self):
        self.edges: list[list[tuple[str, int]]] = []
        self.eps: list[list[int]] = []
        self.chars: set[str] = set()

    def new(self) -> int:
        self.edges.append([])
        self.eps.append([])
        return len(self.edges) - 1

    def build(self, parts, cur: int) -> int:
        for p in parts:
            if isinstance(p, Lit):
                for ch in p.text:
                    nxt = self.new()
                    self.edges[cur].append((ch, nxt))
                    self.chars.add(ch)
                    cur = nxt
            elif isinstance(p, (Star, DoubleStar)):
                loop = self.new()
                self.eps[cur].append(loop)
                self.edges[loop].append((_NOT_SLASH if isinstance(p, Star) else _ANY, loop))
                cur = loop
            elif isinstance(p, AnyChar):
                nxt = self.new()
                self.edges[cur].append((_NOT_SLASH, nxt))
                cur = nxt
            else:  # Alt
                end = self.new()
                for opt in p.options:
                    start = self.new()
                    self.eps[cur].append(start)
                    self.eps[self.build(opt, start)].append(end)
                cur = end
        return cur

    def closure(self, states) -> frozenset[int]:
        seen = set(states)
        stack = list(states)
        while stack:
            s = stack.pop()
            for t in self.eps[s]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return frozenset(seen)

    def step(self, states: frozenset[int], ch: str) -> frozenset[int]:
        out = set()
        for s in states:
            for label, t in self.edges[s]:
                if label == ch or label == _ANY or (label == _NOT_SLASH and ch != "/"):
                    out.add(t)
        return self.closure(out) if out else frozenset()


@functools.lru_cache(maxsize=16384)
def _nfa(parts) -> tuple[_Nfa, frozenset[int], int]:
    n = _Nfa()
    start = n.new()
    accept = n.build(parts, start)
    return n, n.closure([start]), accept


@functools.lru_cache(maxsize=65536)
def _regex(parts) -> re.Pattern:
    return re.compile(to_regex(parts), re.DOTALL)


def literal_prefix(parts) -> str:
    """The text every match starts with (the literal before the first wildcard or brace)."""
    return parts[0].text if parts and isinstance(parts[0], Lit) else ""


def _literal_suffix(parts) -> str:
    return parts[-1].text if parts and isinstance(parts[-1], Lit) else ""


def _samples(parts) -> tuple[str, ...]:
    """A few strings the glob matches (for a cheap necessary test before the exact one)."""
    out = []
    for fill_star, fill_any in (("", "x"), ("x", "x")):
        text = []
        for p in expansions(parts, 1)[0]:
            if isinstance(p, Lit):
                text.append(p.text)
            elif isinstance(p, (Star, DoubleStar)):
                text.append(fill_star)
            elif isinstance(p, AnyChar):
                text.append(fill_any)
        out.append("".join(text))
    return tuple(out)


def includes(big: Glob, small: Glob) -> bool:
    """True when every path `small` matches, `big` matches too (exact; False when unsure)."""
    return parts_include(big.parts, small.parts)


@functools.lru_cache(maxsize=262144)
def parts_include(big, small) -> bool:
    if big == small:
        return True
    if all(isinstance(p, Lit) for p in small):
        return _regex(big).fullmatch("".join(p.text for p in small)) is not None
    if all(isinstance(p, Lit) for p in big):
        return False   # a wildcard glob matches more than one path (or, for `{a}`, was merged)
    # Cheap necessary conditions first.
    bp, sp = literal_prefix(big), literal_prefix(small)
    if not sp.startswith(bp) and not any(isinstance(p, Alt) for p in small):
        return False
    bs, ss = _literal_suffix(big), _literal_suffix(small)
    if not ss.endswith(bs) and not any(isinstance(p, Alt) for p in small):
        return False
    rx = _regex(big)
    if any(rx.fullmatch(s) is None for s in _samples(small)):
        return False
    return _product_includes(big, small)


def _product_includes(big, small) -> bool:
    """L(small) ⊆ L(big): no reachable pair where `small` accepts and `big` does not."""
    nb, startb, accb = _nfa(big)
    ns, starts, accs = _nfa(small)
    alphabet = sorted(nb.chars | ns.chars | {"/", _OTHER})
    seen = {(starts, startb)}
    stack = [(starts, startb)]
    while stack:
        s, b = stack.pop()
        if accs in s and accb not in b:
            return False
        for ch in alphabet:
            s2 = ns.step(s, ch)
            if not s2:
                continue
            b2 = nb.step(b, ch)
            if not b2:
                return False   # every state of a glob's automaton can still reach acceptance
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


__all__ = ["includes", "parts_include", "equivalent", "literal_prefix", "matches_everything"]
