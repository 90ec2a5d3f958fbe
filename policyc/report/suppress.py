"""Inline suppression: `# policyc: ignore[W103] reason` in a comment.

    allow file write "/etc/motd"    # policyc: ignore[W103] the deny is narrowed at deploy time
    allow file read "/a", "/b"      # policyc: ignore[W101,W102] generated; kept in step with x

A marker suppresses the warnings it names whose span starts or ends on its line, or whose
enclosing rule starts or ends on its line (so one marker after a rule written over several
lines covers a diagnostic on any of its paths). A reason is required; errors cannot be
suppressed. Bad markers are warnings themselves (W111) and suppress nothing of what is wrong
with them:

- no reason (`ignore[W103]` alone): nothing on the line is suppressed;
- an error code (`ignore[P012] ...`), an unknown code, or W111 itself: that code is reported,
  the marker's other codes still apply;
- `policyc: ignore` not followed by `[CODE,...]`.

Comments are found by reading the source lines (the parser drops them): a `#` outside a
string literal starts one; string literals never span lines (grammar/policy.lark).
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from dataclasses import dataclass

from ..diagnostics import CODES, Diagnostic, Severity, did_you_mean, is_warning_code
from ..ir.model import Program
from ..span import Span, comment_start
from .sources import Sources

MARKER = "policyc:"
_DIRECTIVE = re.compile(r"policyc:\s*ignore\b")
_CODES = re.compile(r"\s*\[([^\]]*)\]")
_REASON_LEAD = " \t:-\u2013\u2014"     # `ignore[W103]: reason`, `ignore[W103] -- reason`
NOT_INLINE = frozenset({"W111"})     # reported about markers: disable it in policyc.toml instead


@dataclass(frozen=True)
class Marker:
    line: int
    codes: frozenset[str]     # the codes it suppresses (empty when it has no reason)
    reason: str


def scan(path: str, text: str) -> tuple[dict[int, Marker], list[Diagnostic]]:
    """The markers of one file by line, and a W111 for each thing wrong with them."""
    markers: dict[int, Marker] = {}
    bad: list[Diagnostic] = []
    if MARKER not in text:
        return markers, bad
    for lineno, line in enumerate(text.split("\n"), 1):
        if MARKER not in line:
            continue
        line = line.rstrip("\r")
        start = comment_start(line)
        if start is None:
            continue
        m = _DIRECTIVE.search(line, start)
        if m is None:
            continue
        col = m.start() + 1
        where = Span(path, lineno, col, lineno, len(line) + 1)

        def w111(message: str, hints=()) -> None:
            bad.append(Diagnostic("W111", Severity.WARNING, where, message, tuple(hints)))

        b = _CODES.match(line, m.end())
        if b is None:
            w111("`policyc: ignore` must name the codes it suppresses: `# policyc: ignore[W103] reason`")
            continue
        reason = line[b.end():].lstrip(_REASON_LEAD).strip()
        names = [c.strip().upper() for c in b.group(1).split(",") if c.strip()]
        if not names:
            w111("`policyc: ignore[]` names no code", hints=("write `# policyc: ignore[W103] reason`",))
            continue
        codes = set()
        for c in names:
            if c not in CODES:
                w111(f"`policyc: ignore` names unknown code `{c}`", hints=did_you_mean(c, CODES))
            elif not is_warning_code(c):
                w111(f"`{c}` is an error: errors cannot be suppressed",
                     hints=("fix the error; only warnings can be suppressed",))
            elif c in NOT_INLINE:
                w111(f"`{c}` cannot be suppressed inline",
                     hints=('fix the marker, or add it to `disable = [...]` in policyc.toml',))
            else:
                codes.add(c)
        if not reason:
            w111(f"`policyc: ignore[{', '.join(names)}]` needs a reason; it suppresses nothing without one",
                 hints=(f"say why: `# policyc: ignore[{','.join(names)}] <why this is intended>`",))
            codes = set()
        markers[lineno] = Marker(lineno, frozenset(codes), reason)
    return markers, bad


class _RuleLines:
    """For a position in a file: the first and last line of the rule written there."""

    def __init__(self, spans: list[Span]):
        self.spans = sorted(set(spans))
        self.starts = [(s.line, s.col) for s in self.spans]

    def around(self, line: int, col: int) -> tuple[int, int] | None:
        i = bisect.bisect_right(self.starts, (line, col)) - 1
        if i < 0:
            return None
        s = self.spans[i]
        if (s.end_line, s.end_col) >= (line, col):
            return s.line, s.end_line
        return None


def apply_suppressions(diags: list[Diagnostic], program: Program | None,
                       sources: Sources) -> list[Diagnostic]:
    """`diags` with the warnings a marker suppresses marked (`suppressed` = its reason), and a
    W111 for each bad marker, sorted by location."""
    files = set(program.sources) if program is not None else set()
    files |= {d.span.file for d in diags if d.span is not None and d.span.line > 0}
    by_file: dict[str, dict[int, Marker]] = {}
    extra: list[Diagnostic] = []
    for f in sorted(files):
        text = program.sources.get(f) if program is not None else None
        if text is None:
            text = sources.text(f)
        if text is None:
            continue
        markers, bad = scan(f, text)
        extra += bad
        if markers:
            by_file[f] = markers
    if by_file:
        rules = _rule_lines(program, set(by_file))
        diags = [_suppress(d, by_file, rules) for d in diags]
    out = list(diags) + extra
    out.sort(key=lambda d: (d.span.file, d.span.line, d.span.col) if d.span else ("", 0, 0))
    return out


def _rule_lines(program: Program | None, files: set[str]) -> dict[str, _RuleLines]:
    spans: dict[str, list[Span]] = {f: [] for f in files}
    if program is not None:
        for p in program.policies:
            for r in p.rules:
                if r.span.file in spans:
                    spans[r.span.file].append(r.span)
    return {f: _RuleLines(s) for f, s in spans.items()}


def _suppress(d: Diagnostic, by_file: dict[str, dict[int, Marker]], rules: dict[str, _RuleLines]) -> Diagnostic:
    s = d.span
    if d.severity is not Severity.WARNING or s is None or s.line <= 0 or s.file not in by_file:
        return d
    markers = by_file[s.file]
    lines = [s.line, s.end_line]
    around = rules[s.file].around(s.line, s.col)
    if around is not None:
        lines += around
    for ln in lines:
        m = markers.get(ln)
        if m is not None and d.code in m.codes:
            return dataclasses.replace(d, suppressed=m.reason)
    return d


__all__ = ["Marker", "apply_suppressions", "comment_start", "scan"]
