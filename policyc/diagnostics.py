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
    # The reason of an inline `# policyc: ignore[CODE] reason` that suppresses this warning
    # (policyc/report/suppress.py); None when it is reported.
    suppressed: str | None = None

    def to_dict(self) -> dict:
        d = {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "location": _span_dict(self.span),
            "hints": list(self.hints),
            "notes": [{"message": n.message, "location": _span_dict(n.span)} for n in self.notes],
        }
        if self.suppressed is not None:
            d["suppressed"] = {"reason": self.suppressed}
        return d


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


# Every code any pass may emit: code -> (name, one-line description). docs/diagnostics.md
# explains each with an anti-pattern and the best practice; a unit test keeps the two in step.
# P0xx are errors (P001-P024 from the parser and lowering, P030+ from checks), except P054, a
# warning about what the supported kernels cannot enforce; W1xx are warnings.
CODES: dict[str, tuple[str, str]] = {
    "P001": ("syntax-error", "the text does not follow the grammar"),
    "P004": ("include-not-found", "an included file does not exist"),
    "P005": ("cycle", "an include or ruleset cycle, or nesting too deep"),
    "P006": ("unreadable-input", "a file cannot be read as UTF-8 policy text"),
    "P010": ("unknown-family", "an unknown rule family"),
    "P011": ("unknown-operation", "an unknown operation, or one the family does not take"),
    "P012": ("unknown-capability", "an unknown capability name"),
    "P013": ("unknown-signal", "an unknown signal name"),
    "P014": ("undefined-variable", "a `${name}` that no `let` defines"),
    "P015": ("defined-twice", "a policy, ruleset, variable or setting defined twice"),
    "P016": ("missing-subject", "a policy without `subject`"),
    "P017": ("bad-setting", "a bad `mode`, `default`, `acknowledge` or `protect` value, or `protect` in a ruleset"),
    "P018": ("bad-path", "a path or glob that is not absolute or not well formed"),
    "P019": ("bad-object", "an object the rule's family does not take, or a bad address"),
    "P020": ("bad-port", "a port outside 0-65535 or a reversed range"),
    "P021": ("unknown-ruleset", "`use` of a ruleset that does not exist"),
    "P022": ("test-of-unknown-policy", "a test block names a policy that does not exist"),
    "P023": ("test-needs-exe", "a test of a policy with a pattern subject names no program"),
    "P024": ("bad-expectation", "an expectation that does not name exactly one event"),
    "P025": ("bad-limit", "a `limit` that is not a positive count per s, min or h"),
    "P026": ("owner-not-file", "`owner` on a rule (or expectation) that is not a `file` one"),
    "P029": ("bad-transition", "`as policy`/`as unconfined` on a rule that is not an allowed exec of named programs, "
                               "or naming the rule's own policy"),
    "P030": ("host-wide-deny", "a `subject all` policy in enforce mode denies what every system needs"),
    "P040": ("not-enforced", "`policyc build`: a rule family the kernel backend does not enforce yet"),
    "P041": ("over-kernel-limit", "more rules of a kind than the kernel object's tables hold"),
    "P050": ("kernel-lacks-hook", "`--kernel`: the target kernel lacks a hook or helper a rule needs"),
    "P051": ("verifier-refuses-program", "`--load-test`: the running kernel's verifier refuses a program a rule needs"),
    "P054": ("mount-api-without-hook", "a path-scoped `deny mount` that the new mount API (no LSM hook) gets around"),
    "P090": ("fmt-failed", "the formatter could not keep a file's meaning (a policyc bug)"),
    "W101": ("duplicate-rule", "a rule written twice"),
    "W102": ("shadowed-rule", "a rule (or one of its paths) already covered by a broader rule of the same decision"),
    "W103": ("overridden-rule", "a rule (or one of its paths) fully covered by a more severe rule: it never decides"),
    "W104": ("unused-let", "a variable that is defined but never used"),
    "W105": ("listed-twice", "a name listed twice in one rule"),
    "W106": ("contradictory-rules", "allow and deny (or audit) of the same operation on the same object"),
    "W107": ("redundant-allow", "an `allow` rule in a `default allow` policy: it changes nothing"),
    "W108": ("subject-matches-everything", "a subject pattern that matches every program"),
    "W109": ("needless-acknowledgement", "`acknowledge host-wide-deny` where nothing needs it"),
    "W110": ("limit-without-events", "a `limit` on an `allow` rule or `default allow`, which send no events"),
    "W112": ("denies-policyc", "a policy that governs and denies policyc's own loader, or systemd its units' cgroups"),
    "W113": ("transition-to-unknown-policy", "`as policy NAME` where the program checked has no policy NAME"),
    "W114": ("transition-overtaken", "an `as` exec rule that an earlier rule of the same decision decides for some program"),
    "W111": ("bad-suppression", "a `# policyc: ignore[...]` without a reason, or naming an error or unknown code"),
}

# The codes that are warnings: every W code, and the P codes listed here. Only these may be
# suppressed inline or disabled in policyc.toml; errors never can.
WARNING_P_CODES = frozenset({"P054"})


def is_warning_code(code: str) -> bool:
    return code.startswith("W") or code in WARNING_P_CODES
