"""One renderer for diagnostics: `text` (people), `json` (scripts), `sarif` (code scanning).

    render(diagnostics, fmt, out, sources=None, color=None)

Every format is built from `Diagnostic.to_dict()` data or the same fields; passes never
format their own messages for output.
"""

from __future__ import annotations

import os
from typing import Iterable, TextIO

from ..diagnostics import Diagnostic, Severity
from .sarif import render_sarif
from .sources import Sources
from .text import render_text
from .tojson import render_json

FORMATS = ("text", "json", "sarif")


def use_color(out: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def render(diags: Iterable[Diagnostic], fmt: str, out: TextIO, sources: Sources | None = None,
           color: bool | None = None) -> None:
    diags = list(diags)
    if fmt == "json":
        render_json(diags, out)
    elif fmt == "sarif":
        render_sarif(diags, out)
    else:
        render_text(diags, out, sources or Sources(), use_color(out) if color is None else color)


def summary(diags: Iterable[Diagnostic]) -> str:
    """`2 errors, 1 warning` (empty when there is nothing)."""
    diags = list(diags)
    errors = sum(d.severity is Severity.ERROR for d in diags)
    warnings = sum(d.severity is Severity.WARNING for d in diags)
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts)


__all__ = ["FORMATS", "Sources", "render", "render_json", "render_sarif", "render_text", "summary", "use_color"]
