"""Glob text to a structure: `*`, `**`, `?`, `{a,b}` (nested). Doctested.

>>> from policyc.span import Span
>>> from policyc.diagnostics import Diagnostics
>>> g = parse_glob("/usr/bin/{curl,wget}", Span("f", 1, 1, 1, 1), Diagnostics())
>>> g.parts
(Lit(text='/usr/bin/'), Alt(options=((Lit(text='curl'),), (Lit(text='wget'),))))
>>> parse_glob("/a/**/b?", Span("f", 1, 1, 1, 1), Diagnostics()).parts
(Lit(text='/a/'), DoubleStar(), Lit(text='/b'), AnyChar())
"""

from __future__ import annotations

import re

from ..diagnostics import Diagnostics
from ..ir.model import Alt, AnyChar, DoubleStar, Glob, Lit, Star
from ..span import Span

MAX_ALT_DEPTH = 16
_SPECIAL = re.compile(r"[*?{},]")
MAX_EXPANSIONS = 4096


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


def expansions(parts, limit: int = MAX_EXPANSIONS):
    """The brace-free globs a glob stands for (`{a,b}c` -> `ac`, `bc`), at most `limit`."""
    results: list[tuple] = [()]
    for p in parts:
        if isinstance(p, Alt):
            opts = []
            for o in p.options:
                opts.extend(expansions(o, limit))
            results = [r + o for r in results for o in opts][:limit]
        else:
            results = [r + (p,) for r in results]
    return [_merge(r) for r in results]


def to_regex(parts) -> str:
    """The glob as a Python regex (the reference meaning; codegen builds its own DFA)."""
    import re

    out = []
    for p in parts:
        if isinstance(p, Lit):
            out.append(re.escape(p.text))
        elif isinstance(p, Star):
            out.append("[^/]*")
        elif isinstance(p, DoubleStar):
            out.append(".*")
        elif isinstance(p, AnyChar):
            out.append("[^/]")
        else:
            out.append("(?:" + "|".join(to_regex(o) for o in p.options) + ")")
    return "".join(out)


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
