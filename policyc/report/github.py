"""`--format github`: GitHub Actions workflow commands, one annotation per diagnostic.

    ::error file=policies/nginx.policy,line=16,col=22::P012: unknown capability `net_bind_servic`%0Ahelp: ...
    ::warning file=policies/nginx.policy,line=5,col=9::W104: variable `logdir` is never used

Escaped as the runner unescapes them: in the message `%` -> `%25`, CR -> `%0D`, LF -> `%0A`;
in a property value also `:` -> `%3A` and `,` -> `%2C`. Paths are relative to the working
directory when inside it (what the runner resolves against the checkout). Suppressed
diagnostics are not printed; a diagnostic without a location has no properties.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

from ..diagnostics import Diagnostic, Severity

_KIND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "notice"}


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(kind: str, message: str, file: str | None = None, line: int | None = None,
                     col: int | None = None) -> str:
    """`::KIND file=F,line=L,col=C::MESSAGE` (properties only for what is known), no newline."""
    props = []
    if file is not None:
        props.append(f"file={escape_property(relative(file))}")
        if line is not None and line > 0:
            props.append(f"line={line}")
            if col is not None:
                props.append(f"col={max(col, 1)}")
    head = f"::{kind} {','.join(props)}" if props else f"::{kind}"
    return f"{head}::{escape_data(message)}"


def relative(path: str) -> str:
    """`path` relative to the working directory when it is inside it, else as given."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        cwd = Path.cwd()
        return Path(os.path.relpath(p, cwd)).as_posix() if p.is_relative_to(cwd) else path
    except (OSError, ValueError):
        return path


def render_github(diags: list[Diagnostic], out: TextIO) -> None:
    for d in diags:
        if d.suppressed is not None:
            continue
        out.write(annotation(d) + "\n")


def annotation(d: Diagnostic) -> str:
    lines = [f"{d.code}: {d.message}", *(f"help: {h}" for h in d.hints)]
    for n in d.notes:
        where = f"{n.span}: " if n.span is not None and n.span.line > 0 else ""
        lines.append(f"note: {where}{n.message}")
    s = d.span
    has_loc = s is not None and s.line > 0
    return workflow_command(_KIND[d.severity], "\n".join(lines), s.file if has_loc else None,
                            s.line if has_loc else None, s.col if has_loc else None)


__all__ = ["annotation", "escape_data", "escape_property", "relative", "render_github", "workflow_command"]
