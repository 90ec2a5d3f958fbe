"""`--format text`: `file:line:col: error[P012]: message`, the source line, a `^~~` caret.

    policies/nginx.policy:16:22: error[P012]: unknown capability `net_bind_servic`
       |
    16 |     allow capability net_bind_servic
       |                      ^~~~~~~~~~~~~~~
      = help: did you mean `net_bind_service`?
    policies/nginx.policy:3:5: note: first defined here
       ...
"""

from __future__ import annotations

import unicodedata
from typing import TextIO

from ..diagnostics import Diagnostic, Severity
from ..span import Span
from .sources import Sources

MAX_WIDTH = 120          # longer source lines are shown as a window around the span

_COLORS = {"error": "\x1b[1;31m", "warning": "\x1b[1;33m", "note": "\x1b[1;36m", "help": "\x1b[1;32m",
           "bold": "\x1b[1m", "dim": "\x1b[34m"}
_RESET = "\x1b[0m"


def render_text(diags: list[Diagnostic], out: TextIO, sources: Sources, color: bool = False) -> None:
    for d in diags:
        out.write(format_diagnostic(d, sources, color))


def format_diagnostic(d: Diagnostic, sources: Sources, color: bool = False) -> str:
    paint = _painter(color)
    sev = d.severity.value
    lines = [f"{paint('bold', _where(d.span))}{paint(sev, f'{sev}[{d.code}]')}: {paint('bold', clean(d.message))}"]
    lines += _snippet(d.span, sources, paint, sev)
    for h in d.hints:
        lines.append(f"  = {paint('help', 'help')}: {clean(h)}")
    for n in d.notes:
        if n.span is None:
            lines.append(f"  = {paint('note', 'note')}: {clean(n.message)}")
        else:
            lines.append(f"{paint('bold', _where(n.span))}{paint('note', 'note')}: {clean(n.message)}")
            lines += _snippet(n.span, sources, paint, "note")
    return "\n".join(lines) + "\n"


def _where(span: Span | None) -> str:
    """`file:line:col: `, or `policyc: ` for a diagnostic with no place in a file (a file
    that cannot be read, a bad command-line value): `policyc: error[P006]: ...`, as every
    error policyc prints begins `policyc: error` (docs/cli.md, Errors)."""
    return f"{clean(str(span))}: " if span is not None and span.line > 0 else "policyc: "


def _painter(color: bool):
    if not color:
        return lambda _style, text: text
    return lambda style, text: f"{_COLORS[style]}{text}{_RESET}"


def clean(text: str) -> str:
    """User text made safe for a terminal: control characters shown as `\\xNN`."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == "\t":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def _display(line: str) -> str:
    """One column per character, so the caret lines up: tabs and control characters become
    a single placeholder."""
    if line.isprintable():
        return line
    return "".join(" " if ch == "\t" else ("\ufffd" if not ch.isprintable() else ch) for ch in line)


def _snippet(span: Span | None, sources: Sources, paint, sev: str) -> list[str]:
    if span is None or span.line <= 0:
        return []
    text = sources.line(span.file, span.line)
    if text is None:
        return []
    text = _display(text)
    start = max(span.col - 1, 0)
    if span.end_line == span.line and span.end_col > span.col:
        end = span.end_col - 1
    else:
        end = max(len(text), start + 1)     # a span over several lines: to the end of this one
    start = min(start, len(text))
    end = max(min(end, len(text) + 1), start + 1)
    # A window around the span for very long lines (a 10 MB line of junk, say).
    offset = 0
    prefix = suffix = ""
    if len(text) > MAX_WIDTH:
        offset = max(0, min(start - MAX_WIDTH // 3, len(text) - MAX_WIDTH))
        prefix = "..." if offset > 0 else ""
        suffix = "..." if offset + MAX_WIDTH < len(text) else ""
        text = text[offset: offset + MAX_WIDTH]
        start -= offset
        end = min(end - offset, len(text) + 1)
    gutter = str(span.line)
    pad = " " * len(gutter)
    caret = " " * (start + len(prefix)) + "^" + "~" * max(end - start - 1, 0)
    return [
        f"{pad} {paint('dim', '|')}",
        f"{paint('dim', gutter + ' |')} {prefix}{text}{suffix}",
        f"{pad} {paint('dim', '|')} {paint(sev, caret)}",
    ]


__all__ = ["render_text", "format_diagnostic", "clean"]
