"""Globs: their text to a structure (`parse_glob`), and the one automaton that says what a
glob matches (`Nfa`). The reference evaluator walks it (`Matcher`), the kernel's DFA is its
subset construction (policyc/ir/dfa.py) and the checks' inclusion test is a product of
two of them (policyc/checks/_globs.py): one meaning, written once.

A glob is matched against the bytes of a path: its UTF-8 encoding, or for a path that is not
UTF-8 its raw bytes (Python keeps those as surrogateescape characters). The kernel sees bytes,
and its DFA must stay small, so the meaning is stated in bytes:

    `*`      any bytes but `/`, possibly none        `**`  any bytes, possibly none
    `?`      one character other than `/`: a byte that is neither `/` nor a UTF-8
             continuation byte (0x80-0xBF), then any continuation bytes
    `{a,b}`  either alternative (nested, possibly empty): an empty move into each, never an
             expansion, so no count of alternatives is ever cut short
    anything else: its own UTF-8 bytes

On UTF-8 text `?` is exactly one character. On other bytes it is what the kernel can afford to
test with three byte classes (`/`, continuation, other): a lone continuation byte is no
character, and a lead byte takes every continuation byte after it.

This module imports the model only (no parser), so the evaluator stays free of it.

>>> from policyc.span import Span
>>> from policyc.diagnostics import Diagnostics
>>> g = parse_glob("/usr/bin/{curl,wget}", Span("f", 1, 1, 1, 1), Diagnostics())
>>> g.parts
(Lit(text='/usr/bin/'), Alt(options=((Lit(text='curl'),), (Lit(text='wget'),))))
>>> parse_glob("/a/**/b?", Span("f", 1, 1, 1, 1), Diagnostics()).parts
(Lit(text='/a/'), DoubleStar(), Lit(text='/b'), AnyChar())
>>> m = matcher(g.parts)
>>> m.matches(b"/usr/bin/wget"), m.matches(b"/usr/bin/wge"), m.viable(b"/usr/bin/wge")
(True, False, True)
"""

from __future__ import annotations

import codecs
import functools
import re

from ..diagnostics import Diagnostics
from ..span import Span
from .model import Alt, AnyChar, DoubleStar, Glob, Lit, Star

MAX_ALT_DEPTH = 16
_SPECIAL = re.compile(r"[*?{},]")


# --- text to structure -------------------------------------------------------------------------
class _GlobError(Exception):
    def __init__(self, offset: int, message: str, hint: str = ""):
        self.offset, self.message, self.hint = offset, message, hint


def parse_glob(text: str, span: Span, diags: Diagnostics, offset_map=None) -> Glob | None:
    """Parse `text` (already interpolated). `span` is the string literal's span; errors point
    inside it (offset_map maps text offsets back to columns when interpolation moved them)."""
    try:
        parts, end = _seq(text, 0, 0)
        if end != len(text):  # a stray `}` or `,` at the top level
            raise _GlobError(end, f"unexpected `{text[end]}` outside `{{...}}`",
                             "a literal `,` or `}` is only allowed outside braces when not paired")
    except _GlobError as e:
        col = (offset_map(e.offset) if offset_map else e.offset) + 1  # +1: the opening quote
        diags.error("P018", span.at_offset(col), e.message, hints=(e.hint,) if e.hint else ())
        return None
    return Glob(text, _merge(parts), span)


def _seq(text: str, i: int, depth: int, in_alt: bool = False):
    parts: list = []
    lit: list[str] = []

    def flush():
        if lit:
            parts.append(Lit("".join(lit)))
            lit.clear()

    while i < len(text):
        ch = text[i]
        if ch == "*":
            flush()
            if text.startswith("**", i):
                parts.append(DoubleStar())
                i += 2
                while i < len(text) and text[i] == "*":
                    i += 1
            else:
                parts.append(Star())
                i += 1
        elif ch == "?":
            flush()
            parts.append(AnyChar())
            i += 1
        elif ch == "{":
            if depth >= MAX_ALT_DEPTH:
                raise _GlobError(i, f"`{{...}}` nested deeper than {MAX_ALT_DEPTH}")
            flush()
            start = i
            options = []
            i += 1
            while True:
                opt, i = _seq(text, i, depth + 1, in_alt=True)
                options.append(tuple(_merge(opt)))
                if i >= len(text):
                    raise _GlobError(start, "unclosed `{`", "close it with `}`")
                if text[i] == ",":
                    i += 1
                    continue
                i += 1  # the `}`
                break
            parts.append(Alt(tuple(options)))
        elif ch in ",}" and in_alt:
            break
        elif ch == "}" and not in_alt:
            raise _GlobError(i, "unmatched `}`")
        else:
            # A run of plain characters at once (a `,` is plain outside braces).
            m = _SPECIAL.search(text, i + 1)
            j = m.start() if m else len(text)
            while not in_alt and j < len(text) and text[j] == ",":
                m = _SPECIAL.search(text, j + 1)
                j = m.start() if m else len(text)
            lit.append(text[i:j])
            i = j
    flush()
    return parts, i


def _merge(parts) -> tuple:
    """Adjacent literals become one."""
    out: list = []
    for p in parts:
        if out and isinstance(p, Lit) and isinstance(out[-1], Lit):
            out[-1] = Lit(out[-1].text + p.text)
        else:
            out.append(p)
    return tuple(out)


def is_absolute(parts) -> bool:
    """Every path the glob matches starts with `/` (a leading `{...}` counts when each of
    its alternatives does).

    >>> from policyc.span import Span
    >>> from policyc.diagnostics import Diagnostics
    >>> absolute = lambda t: is_absolute(parse_glob(t, Span("f", 1, 1, 1, 1), Diagnostics()).parts)
    >>> absolute("{/tmp,/var/tmp}/**"), absolute("{/tmp,tmp}/**"), absolute("{,/a}/b"), absolute("**")
    (True, False, True, False)
    """
    if not parts:
        return False
    first, rest = parts[0], tuple(parts[1:])
    if isinstance(first, Lit):
        return first.text.startswith("/")
    if isinstance(first, Alt):
        return all(is_absolute(tuple(opt) + rest) for opt in first.options)
    return False


def to_text(parts) -> str:
    out = []
    for p in parts:
        if isinstance(p, Lit):
            out.append(p.text)
        elif isinstance(p, Star):
            out.append("*")
        elif isinstance(p, DoubleStar):
            out.append("**")
        elif isinstance(p, AnyChar):
            out.append("?")
        else:
            out.append("{" + ",".join(to_text(o) for o in p.options) + "}")
    return "".join(out)


# --- paths as bytes ----------------------------------------------------------------------------
def _path_errors(e: UnicodeEncodeError):
    # surrogateescape for the bytes a non-UTF-8 path was decoded from (U+DC80..U+DCFF), and
    # any other lone surrogate as its own three bytes: the evaluator is total over any str.
    bad = e.object[e.start:e.end]
    out = bytearray()
    for ch in bad:
        o = ord(ch)
        out += bytes([o - 0xDC00]) if 0xDC80 <= o <= 0xDCFF else ch.encode("utf-8", "surrogatepass")
    return bytes(out), e.end


codecs.register_error("policyc.path", _path_errors)


def path_bytes(text: str) -> bytes:
    """The bytes a path (or glob literal) stands for, as the kernel sees them."""
    return text.encode("utf-8", "policyc.path")


# --- the automaton -----------------------------------------------------------------------------
# Byte classes: no glob tells bytes within a class apart unless it names the byte literally.
SLASH, CONT, OTHER = 0, 1, 2
CLASS_OF = bytes(SLASH if b == 0x2F else CONT if 0x80 <= b <= 0xBF else OTHER for b in range(256))

# Position kinds. BYTE: one literal byte; STAR, DSTAR, TAIL: a loop on their classes with an
# empty move on; ANY: a lead byte (class OTHER) into its TAIL, which eats continuation bytes;
# SPLIT: an empty move into each alternative of a `{a,b}`; ACCEPT: the glob's end.
BYTE, STAR, DSTAR, ANY, TAIL, ACCEPT, SPLIT = range(7)


class Nfa:
    """The positions of one or more globs (`add` each), in flat lists: `kind[p]`, `arg[p]` (the
    byte of a BYTE, the TAIL of an ANY), `nxt[p]` (where a position goes on), `split[p]` (the
    alternatives' entries). Built back to front, so every position knows its successor and
    the graph without loops is acyclic. Every position can still reach its ACCEPT, so a
    non-empty set of positions always has a matching continuation."""

    __slots__ = ("kind", "arg", "nxt", "split", "_closure")

    def __init__(self):
        self.kind: list[int] = []
        self.arg: list[int] = []
        self.nxt: list[int] = []
        self.split: dict[int, tuple[int, ...]] = {}
        self._closure: dict[int, frozenset[int]] = {}

    def _emit(self, k: int, arg: int, after: int) -> int:
        self.kind.append(k)
        self.arg.append(arg)
        self.nxt.append(after)
        return len(self.kind) - 1

    def add(self, parts) -> tuple[int, int]:
        """Positions for one glob; returns (entry, accept)."""
        accept = self._emit(ACCEPT, -1, -1)
        return self._seq(parts, accept), accept

    def _seq(self, parts, after: int) -> int:
        emit = self._emit
        entry = after
        for p in reversed(parts):
            if isinstance(p, Lit):
                for b in reversed(path_bytes(p.text)):
                    entry = emit(BYTE, b, entry)
            elif isinstance(p, Star):
                entry = emit(STAR, -1, entry)
            elif isinstance(p, DoubleStar):
                entry = emit(DSTAR, -1, entry)
            elif isinstance(p, AnyChar):
                tail = emit(TAIL, -1, entry)
                entry = emit(ANY, tail, -1)
            elif isinstance(p, Alt):   # each alternative continues at `entry`
                entries = tuple(self._seq(opt, entry) for opt in p.options)
                entry = emit(SPLIT, -1, -1)
                self.split[entry] = entries
            else:  # pragma: no cover - the glob parser makes nothing else
                raise AssertionError(p)
        return entry

    def closure(self, p: int) -> frozenset[int]:
        """`p` and every position its empty moves reach."""
        c = self._closure.get(p)
        if c is not None:
            return c
        kind, nxt, split = self.kind, self.nxt, self.split
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
            if k == STAR or k == DSTAR or k == TAIL:
                stack.append(nxt[q])
            elif k == SPLIT:
                stack.extend(split[q])
        c = frozenset(out)
        self._closure[p] = c
        return c

    def successors(self, S) -> tuple[list[set[int]], dict[int, set[int]]]:
        """One step from the position set `S`: per byte class, the positions any byte of that
        class not named below leads to; per byte a position of `S` names, where that byte
        leads (its class's positions included). Sets, for the caller to freeze or extend.
        The one place a byte's meaning is decided (subset construction, lazy walks, products)."""
        kind, arg, nxt, closure = self.kind, self.arg, self.nxt, self.closure
        cached = self._closure.get     # inlined cache look-up: this loop is most of a build
        cls_moves: list[set[int]] = [set(), set(), set()]
        explicit: dict[int, set[int]] = {}
        for p in S:
            k = kind[p]
            if k == BYTE:
                b = arg[p]
                q = nxt[p]
                c = cached(q) or closure(q)
                e = explicit.get(b)
                if e is None:
                    explicit[b] = set(c)
                else:
                    e.update(c)
            elif k == STAR:
                c = cached(p) or closure(p)
                cls_moves[CONT].update(c)
                cls_moves[OTHER].update(c)
            elif k == DSTAR:
                c = cached(p) or closure(p)
                cls_moves[SLASH].update(c)
                cls_moves[CONT].update(c)
                cls_moves[OTHER].update(c)
            elif k == ANY:
                q = arg[p]
                cls_moves[OTHER].update(cached(q) or closure(q))
            elif k == TAIL:
                cls_moves[CONT].update(cached(p) or closure(p))
        for b, e in explicit.items():
            e |= cls_moves[CLASS_OF[b]]
        return cls_moves, explicit

    def named_bytes(self) -> set[int]:
        """The bytes some glob of this automaton names literally."""
        return {a for k, a in zip(self.kind, self.arg) if k == BYTE}

    def sample(self, p: int, fill: bytes = b"") -> bytes:
        """A path the glob from entry `p` matches: the first alternative of every `{...}`,
        `fill` for each `*` and `**`, `x` for each `?` (`fill` must suit `*`)."""
        kind, arg, nxt, split = self.kind, self.arg, self.nxt, self.split
        out = bytearray()
        while True:
            k = kind[p]
            if k == ACCEPT:
                return bytes(out)
            if k == BYTE:
                out.append(arg[p])
                p = nxt[p]
            elif k == SPLIT:
                p = split[p][0]
            elif k == ANY:
                out += b"x"
                p = arg[p]
            else:   # STAR, DSTAR, TAIL
                if k != TAIL:
                    out += fill
                p = nxt[p]


_DEAD_ROW = (0, 0, 0, {})
MAX_LAZY_STATES = 20000   # a Matcher forgets its states past this many (a walk starts anew)


class Matcher:
    """One glob's automaton, made deterministic lazily as paths walk it: state 0 is dead (no
    continuation matches), state 1 the start. Each state's row is computed on its first step:
    (after `/`, after a continuation byte, after another byte, {named byte: state})."""

    __slots__ = ("nfa", "entry", "accept", "_ids", "_sets", "_rows", "accepting")

    def __init__(self, parts):
        self.nfa = Nfa()
        self.entry, self.accept = self.nfa.add(parts)
        self._reset()

    def _reset(self) -> None:
        start = self.nfa.closure(self.entry)
        self._ids: dict[frozenset[int], int] = {frozenset(): 0, start: 1}
        self._sets: list[frozenset[int]] = [frozenset(), start]
        self._rows: list = [_DEAD_ROW, None]
        self.accepting: list[bool] = [False, self.accept in start]

    def fresh(self) -> None:
        """Bound the memory a long-lived matcher holds (called before a walk starts)."""
        if len(self._sets) > MAX_LAZY_STATES:
            self._reset()

    def _intern(self, fs: frozenset[int]) -> int:
        i = self._ids.get(fs)
        if i is None:
            i = len(self._sets)
            self._ids[fs] = i
            self._sets.append(fs)
            self._rows.append(None)
            self.accepting.append(self.accept in fs)
        return i

    def row(self, s: int) -> tuple:
        r = self._rows[s]
        if r is None:
            cls_moves, explicit = self.nfa.successors(self._sets[s])
            intern = self._intern
            r = (intern(frozenset(cls_moves[0])), intern(frozenset(cls_moves[1])),
                 intern(frozenset(cls_moves[2])),
                 {b: intern(frozenset(e)) for b, e in explicit.items()})
            self._rows[s] = r
        return r

    def step(self, s: int, b: int) -> int:
        r = self._rows[s] or self.row(s)
        t = r[3].get(b)
        return r[CLASS_OF[b]] if t is None else t

    def walk(self, data: bytes, s: int = 1) -> int:
        rows = self._rows
        for b in data:
            r = rows[s] or self.row(s)
            t = r[3].get(b)
            s = r[CLASS_OF[b]] if t is None else t
            if not s:
                return 0
        return s

    def matches(self, data: bytes) -> bool:
        if len(self._sets) > MAX_LAZY_STATES:
            self._reset()
        return self.accepting[self.walk(data)]

    def viable(self, data: bytes) -> bool:
        """Some path that starts with `data` matches (every live state can still accept)."""
        if len(self._sets) > MAX_LAZY_STATES:
            self._reset()
        return self.walk(data) != 0


@functools.lru_cache(maxsize=65536)
def _matcher(parts) -> Matcher:
    return Matcher(parts)


_by_identity: dict[int, tuple[tuple, Matcher]] = {}


def matcher(parts) -> Matcher:
    """The (shared, cached) matcher of a glob's parts. Looked up by the parts tuple's identity
    first: hashing the parts (dataclasses, hashed in Python) cost more than a short walk, and
    the evaluator asks again and again for the same Glob's. The entry holds the tuple, so its
    id cannot be reused while the entry lives."""
    hit = _by_identity.get(id(parts))
    if hit is not None and hit[0] is parts:
        return hit[1]
    m = _matcher(parts)
    if len(_by_identity) >= 65536:
        _by_identity.clear()
    _by_identity[id(parts)] = (parts, m)
    return m


__all__ = ["parse_glob", "is_absolute", "to_text", "path_bytes", "Nfa", "Matcher", "matcher",
           "SLASH", "CONT", "OTHER", "CLASS_OF", "MAX_ALT_DEPTH"]
