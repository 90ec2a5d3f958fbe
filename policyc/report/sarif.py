"""`--format sarif`: SARIF 2.1.0, the format GitHub code scanning reads.

One run; the tool's rules are the diagnostic codes that occur (id = code, name, description,
default level); each diagnostic is a result with a physicalLocation region (1-based lines and
columns, columns counted in Unicode code points); notes become relatedLocations. A warning
suppressed by an inline `# policyc: ignore[CODE] reason` is still a result, carrying
`suppressions: [{"kind": "inSource", "justification": reason}]`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TextIO

from .. import __version__
from ..diagnostics import CODES, WARNING_P_CODES, Diagnostic, Severity, is_warning_code
from ..span import Span

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "note"}


def render_sarif(diags: list[Diagnostic], out: TextIO) -> None:
    json.dump(to_sarif(diags), out, indent=2)
    out.write("\n")


def to_sarif(diags: list[Diagnostic]) -> dict:
    codes = sorted({d.code for d in diags})
    index = {c: i for i, c in enumerate(codes)}
    rules = []
    for c in codes:
        name, desc = CODES.get(c, (c.lower(), c))
        level = "warning" if is_warning_code(c) else "error"
        rules.append({
            "id": c,
            "name": _camel(name),
            "shortDescription": {"text": desc},
            "help": {"text": f"see docs/diagnostics.md, {c}"},
            "defaultConfiguration": {"level": level},
        })
    results = []
    for d in diags:
        r: dict = {
            "ruleId": d.code,
            "ruleIndex": index[d.code],
            "level": _LEVEL[d.severity],
            "message": {"text": _message(d)},
        }
        if d.span is not None and d.span.line > 0:
            r["locations"] = [_location(d.span)]
        related = []
        for i, n in enumerate(d.notes):
            if n.span is not None and n.span.line > 0:
                loc = _location(n.span)
                loc["id"] = i
                loc["message"] = {"text": n.message}
                related.append(loc)
        if related:
            r["relatedLocations"] = related
        if d.suppressed is not None:
            r["suppressions"] = [{"kind": "inSource", "justification": d.suppressed}]
        results.append(r)
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "policyc",
                "version": __version__,
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }


def _message(d: Diagnostic) -> str:
    return "\n".join([d.message, *(f"help: {h}" for h in d.hints)])


def _location(span: Span) -> dict:
    region = {"startLine": span.line, "startColumn": max(span.col, 1)}
    if span.end_line >= span.line:
        region["endLine"] = span.end_line
        if span.end_col > 0 and (span.end_line > span.line or span.end_col > span.col):
            region["endColumn"] = span.end_col
    return {"physicalLocation": {"artifactLocation": {"uri": _uri(span.file)}, "region": region}}


def _uri(path: str) -> str:
    """A path relative to the working directory (what code scanning resolves against the
    repository root) when it is inside it, else a file:// URI."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return Path(os.path.relpath(p, Path.cwd())).as_posix() if p.is_relative_to(Path.cwd()) else p.as_uri()
    except ValueError:
        return p.as_uri()


def _camel(name: str) -> str:
    return "".join(w.capitalize() for w in name.split("-"))


__all__ = ["WARNING_P_CODES", "render_sarif", "to_sarif"]
