"""Diagnostics: what every pass reports. Rendering lives in policyc/report.

Codes are stable (docs/diagnostics.md lists them); tests assert codes and spans, not text.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from enum import Enum

from .span import Span


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Note:
    span: Span | None
    message: str


@dataclass(frozen=True)
class Diagnostic:
    code: str
    severity: Severity
    span: Span | None
    message: str
    hints: tuple[str, ...] = ()
    notes: tuple[Note, ...] = ()

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "location": _span_dict(self.span),
            "hints": list(self.hints),
            "notes": [{"message": n.message, "location": _span_dict(n.span)} for n in self.notes],
        }


def _span_dict(span: Span | None) -> dict | None:
    if span is None:
        return None
    return {
        "file": span.file,
        "line": span.line,
        "col": span.col,
        "end_line": span.end_line,
        "end_col": span.end_col,
    }


@dataclass
class Diagnostics:
    """A collector passed through the pipeline; passes add, nobody removes."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, code, span, message, hints=(), notes=()) -> None:
        self.items.append(Diagnostic(code, Severity.ERROR, span, message, tuple(hints), tuple(notes)))

    def warning(self, code, span, message, hints=(), notes=()) -> None:
        self.items.append(Diagnostic(code, Severity.WARNING, span, message, tuple(hints), tuple(notes)))

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        def key(d: Diagnostic):
            s = d.span
            return (s.file, s.line, s.col) if s else ("", 0, 0)

        return sorted(self.items, key=key)


def did_you_mean(name: str, candidates) -> tuple[str, ...]:
    """A "did you mean" hint for an unknown name, or nothing."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return (f"did you mean `{close[0]}`?",) if close else ()
