"""`--format sarif`: SARIF 2.1.0, as GitHub code scanning reads it.

One run of `tool.driver` policyc (name, version, informationUri) whose rules are the
diagnostic codes that occur. Each rule carries what docs/diagnostics.md says of its code
(diagnostic_help.py, generated from the doc): `shortDescription` (the one line of
policyc/diagnostics.py CODES), `fullDescription` (the section's first paragraph), `help`
(text and markdown: the section, its anti-pattern and best practice), `helpUri` (the
section on GitHub), `defaultConfiguration.level`, `properties.tags` and, on security
findings, `properties["security-severity"]`.

Each diagnostic is a result with `ruleId`, `ruleIndex`, `level`, a message (with its hints,
and its notes that have no place), exactly one location (a diagnostic about a whole file,
or with no place at all, points at the file, at line 1), notes with a place as
`relatedLocations`, and `partialFingerprints` that survive lines moving: a hash of the code,
the file, the text of the first line (its comment dropped, spaces collapsed) and the text the
diagnostic points at, with the occurrence of that hash in the file. A warning suppressed by an
inline `# policyc: ignore[CODE] reason` is still a result, carrying
`suppressions: [{"kind": "inSource", "justification": reason}]`.

Paths are relative to `%SRCROOT%` (`originalUriBaseIds`), the base directory: `check
--base-dir`, by default the git top-level of the first input, else the working directory. A
file outside it is an absolute `file://` URI. `automationDetails.id` is `policyc/check/`;
`invocations[0].executionSuccessful` says whether the check ran. When it could not (an
unreadable configuration, a kernel's facts, an internal error) the document has no `results`
(absent results mean the tool did not run to completion, so code scanning does not take the
run as "nothing found" and close alerts) and a `toolExecutionNotifications` entry saying why.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterable, TextIO
from urllib.parse import quote

from .. import __version__
from ..diagnostics import CODES, WARNING_P_CODES, Diagnostic, Severity, is_warning_code
from ..span import Span, comment_start
from .diagnostic_help import DOC_URL, HELP
from .sources import Sources, default_base_dir  # noqa: F401 - default_base_dir: sarif's, kept here too

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/policyc/policyc"
AUTOMATION_ID = "policyc/check/"
SRCROOT = "%SRCROOT%"
FINGERPRINT = "policyc/v1"
MAX_DESCRIPTION = 1024          # code scanning's limit on short and full descriptions
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "note"}

# Security findings: a policy that would not protect what it says it does, or would break
# the host it protects. The number is code scanning's security-severity (CVSS-like: 7.0+ is
# high, 4.0-6.9 medium, below 4.0 low); other codes are correctness (what the author means
# is not what happens, or the input cannot be used) or maintainability (it changes nothing).
SECURITY_SEVERITY: dict[str, str] = {
    "P030": "7.5",   # loading it denies what every process needs: the host breaks
    "P054": "7.5",   # a path-scoped `deny mount` the new mount API gets around: it silently allows
    "W107": "5.0",   # allow rules in a `default allow` policy read as an allowlist; all is allowed
    "W109": "2.0",   # a needless `acknowledge host-wide-deny` would hide the next P030
}
MAINTAINABILITY = frozenset({"W101", "W102", "W104", "W105", "W108"})


def tags(code: str) -> list[str]:
    if code in SECURITY_SEVERITY:
        return ["security"]
    return ["maintainability"] if code in MAINTAINABILITY else ["correctness"]


def render_sarif(diags: list[Diagnostic], out: TextIO, sources: Sources | None = None, *,
                 base_dir: str | os.PathLike | None = None, inputs: Iterable[str] = ()) -> None:
    # built whole before a byte is written: a failure on the way leaves stdout empty, for
    # the internal-error document (policyc/cli/common.py guarded)
    out.write(json.dumps(to_sarif(diags, sources, base_dir=base_dir, inputs=inputs), indent=2) + "\n")


def render_sarif_failure(out: TextIO, message: str, *, exception: BaseException | None = None,
                         base_dir: str | os.PathLike | None = None) -> None:
    out.write(json.dumps(sarif_failure(message, exception=exception, base_dir=base_dir), indent=2) + "\n")


def to_sarif(diags: list[Diagnostic], sources: Sources | None = None, *,
             base_dir: str | os.PathLike | None = None, inputs: Iterable[str] = ()) -> dict:
    base = Path(os.path.abspath(base_dir)) if base_dir is not None else Path.cwd()
    sources = sources or Sources()
    inputs = list(inputs)
    codes = sorted({d.code for d in diags})
    index = {c: i for i, c in enumerate(codes)}
    seen: dict[str, int] = {}
    results = []
    for d in diags:
        r: dict = {
            "ruleId": d.code,
            "ruleIndex": index[d.code],
            "level": _LEVEL[d.severity],
            "message": {"text": _message(d)},
        }
        has_place = d.span is not None and d.span.line > 0
        if has_place:
            loc = _location(d.span, base)
        else:
            loc = {"physicalLocation": {"artifactLocation": _artifact(_file_of(d, inputs), base),
                                        "region": {"startLine": 1}}}
        r["locations"] = [loc]
        related = []
        for i, n in enumerate(d.notes):
            if n.span is not None and n.span.line > 0:
                note = _location(n.span, base)
                note["id"] = i
                note["message"] = {"text": n.message}
                related.append(note)
        if related:
            r["relatedLocations"] = related
        r["partialFingerprints"] = {FINGERPRINT: _fingerprint(d, loc, sources, seen)}
        if d.suppressed is not None:
            r["suppressions"] = [{"kind": "inSource", "justification": d.suppressed}]
        results.append(r)
    log = _log([rule(c) for c in codes], base, successful=True)
    log["runs"][0]["results"] = results
    return log


def sarif_failure(message: str, *, exception: BaseException | None = None,
                  base_dir: str | os.PathLike | None = None) -> dict:
    """A run that did not complete: no results, and why."""
    base = Path(os.path.abspath(base_dir)) if base_dir is not None else Path.cwd()
    note: dict = {"level": "error", "message": {"text": message}}
    if exception is not None:
        note["exception"] = {"kind": type(exception).__name__, "message": str(exception)}
    log = _log([], base, successful=False)
    log["runs"][0]["invocations"][0]["toolExecutionNotifications"] = [note]
    return log


def _log(rules: list[dict], base: Path, *, successful: bool) -> dict:
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "policyc",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }},
            "automationDetails": {"id": AUTOMATION_ID},
            "invocations": [{"executionSuccessful": successful}],
            "originalUriBaseIds": {SRCROOT: {
                "uri": _dir_uri(base),
                "description": {"text": "the base directory: --base-dir, by default the git "
                                        "top-level of the first input, else the working directory"},
            }},
            "columnKind": "unicodeCodePoints",
        }],
    }


def rule(code: str) -> dict:
    """The reportingDescriptor of a code."""
    name, short = CODES.get(code, (code.lower(), code))
    h = HELP.get(code)
    level = "warning" if is_warning_code(code) else "error"
    out: dict = {
        "id": code,
        "name": _camel(name),
        "shortDescription": {"text": _cap(short)},
    }
    if h is not None:
        out["fullDescription"] = {"text": _cap(_first_paragraph(h.text))}
        out["helpUri"] = h.uri
        out["help"] = {"text": _help_text(code, name, h), "markdown": _help_markdown(code, name, h)}
    else:
        out["helpUri"] = DOC_URL
        out["help"] = {"text": f"see docs/diagnostics.md, {code}"}
    out["defaultConfiguration"] = {"level": level}
    props: dict = {"tags": tags(code)}
    if code in SECURITY_SEVERITY:
        props["security-severity"] = SECURITY_SEVERITY[code]
    out["properties"] = props
    return out


def _help_markdown(code: str, name: str, h) -> str:
    return "\n\n".join([
        h.text,
        _labelled("**Anti-pattern:**", h.anti_pattern),
        _labelled("**Best practice:**", h.best_practice),
        f"[docs/diagnostics.md: {code} `{name}`]({h.uri})",
    ]) + "\n"


def _help_text(code: str, name: str, h) -> str:
    return "\n\n".join([
        _plain(h.text),
        _labelled("Anti-pattern:", _plain(h.anti_pattern)),
        _labelled("Best practice:", _plain(h.best_practice)),
        f"docs/diagnostics.md, {code} `{name}`: {h.uri}",
    ]) + "\n"


def _labelled(label: str, body: str) -> str:
    """`label body`, or the label on a line of its own before a block (a code block)."""
    if body.startswith(("```", "    ")):
        return f"{label}\n\n{body}"
    return f"{label} {body}"


def _plain(md: str) -> str:
    """Markdown as plain text: fenced code indented four spaces, its fences dropped; no
    `**bold**` stars outside code."""
    out, fenced = [], False
    for line in md.split("\n"):
        if re.match(r"^\s*(```|~~~)", line):
            fenced = not fenced
            continue
        out.append(("    " + line if line else line) if fenced else _unbold(line))
    return "\n".join(out)


def _unbold(line: str) -> str:
    """`**` dropped outside `code` spans (where it is a glob)."""
    parts = re.split(r"(`[^`]*`)", line)
    return "".join(p if i % 2 else p.replace("**", "") for i, p in enumerate(parts))


def _first_paragraph(md: str) -> str:
    return " ".join(_plain(md.split("\n\n")[0]).split())


def _cap(text: str) -> str:
    if len(text) <= MAX_DESCRIPTION:
        return text
    cut = text[:MAX_DESCRIPTION - 1].rsplit(" ", 1)[0]
    return cut + "\u2026"


def _message(d: Diagnostic) -> str:
    lines = [d.message, *(f"help: {h}" for h in d.hints)]
    lines += [f"note: {n.message}" for n in d.notes if n.span is None or n.span.line <= 0]
    return "\n".join(lines)


def _location(span: Span, base: Path) -> dict:
    region = {"startLine": span.line, "startColumn": max(span.col, 1)}
    if span.end_line >= span.line:
        region["endLine"] = span.end_line
        if span.end_col > 0 and (span.end_line > span.line or span.end_col > span.col):
            region["endColumn"] = span.end_col
    return {"physicalLocation": {"artifactLocation": _artifact(span.file, base), "region": region}}


_BACKTICKED = re.compile(r"`([^`]+)`")


def _file_of(d: Diagnostic, inputs: list[str]) -> str:
    """The file a diagnostic without a place is about: its span's file, else the path its
    message names (`cannot read \\`x.policy\\``) that is an input or under one, else the
    first input, else the base directory itself."""
    if d.span is not None and d.span.file and not d.span.file.startswith("<"):
        return d.span.file
    named = _BACKTICKED.findall(d.message)
    for p in named:
        for i in inputs:
            if p == i or p.startswith(i.rstrip("/") + "/"):
                return p
    return inputs[0] if inputs else "."


def _artifact(path: str, base: Path) -> dict:
    p = Path(os.path.abspath(path))
    if p == base:
        return {"uri": "./", "uriBaseId": SRCROOT}
    if p.is_relative_to(base):
        return {"uri": quote(p.relative_to(base).as_posix(), safe="/"), "uriBaseId": SRCROOT}
    return {"uri": p.as_uri()}


def _dir_uri(p: Path) -> str:
    uri = p.as_uri()
    return uri if uri.endswith("/") else uri + "/"


def _fingerprint(d: Diagnostic, loc: dict, sources: Sources, seen: dict[str, int]) -> str:
    """Stable across line shifts: no line number, only text; the occurrence of the same text
    in the file tells identical lines apart."""
    art = loc["physicalLocation"]["artifactLocation"]
    line_text = pointed = ""
    s = d.span
    if s is not None and s.line > 0:
        line = sources.line(s.file, s.line) or ""
        cut = comment_start(line)
        line_text = " ".join((line[:cut] if cut is not None else line).split())
        end = s.end_col if s.end_line == s.line and s.end_col > s.col else len(line) + 1
        pointed = " ".join(line[max(s.col, 1) - 1:end - 1].split())
    key = "\0".join([d.code, art.get("uriBaseId", ""), art["uri"], line_text, pointed])
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    seen[digest] = seen.get(digest, 0) + 1
    return f"{digest}:{seen[digest]}"


def _camel(name: str) -> str:
    return "".join(w.capitalize() for w in name.split("-"))


__all__ = ["SECURITY_SEVERITY", "WARNING_P_CODES", "default_base_dir", "render_sarif",
           "render_sarif_failure", "rule", "sarif_failure", "tags", "to_sarif"]
