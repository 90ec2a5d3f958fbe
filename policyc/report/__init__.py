"""One renderer for diagnostics: `text` (people), `json` (scripts: a list), `json-v2` (scripts:
the list in a versioned object with the files and a summary, tojson.py), `sarif` (code
scanning), `github` (GitHub Actions annotations).

    render(diagnostics, fmt, out, sources=None, color=None)

Every format is built from `Diagnostic.to_dict()` data or the same fields; passes never
format their own messages for output. Suppressed diagnostics (`Diagnostic.suppressed`, see
suppress.py) are left out of `text` and `github`, and kept, marked, in `json`, `json-v2` and
`sarif`.

The renderers are imported when first used (`render` imports the one it needs; the other
names on first access), so reading FORMATS (policyc/config.py) or checking in text format
does not import the SARIF and JSON writers.
"""

from __future__ import annotations

import os
from typing import Iterable, TextIO

from ..diagnostics import Diagnostic, Severity
from .sources import Sources, default_base_dir

FORMATS = ("text", "json", "json-v2", "sarif", "github")

# name -> the module of this package it comes from, imported on first access
_LAZY = {"render_github": "github", "render_sarif": "sarif",
         "render_sarif_failure": "sarif", "apply_suppressions": "suppress", "render_text": "text",
         "JSON_V2_VERSION": "tojson", "render_json": "tojson", "render_json_v2": "tojson", "to_json_v2": "tojson"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def use_color(out: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def render(diags: Iterable[Diagnostic], fmt: str, out: TextIO, sources: Sources | None = None,
           color: bool | None = None, *, base_dir: str | os.PathLike | None = None,
           inputs: Iterable[str] = (), files: Iterable[str] | None = None) -> None:
    """`base_dir` and `inputs` are for sarif: paths are relative to `base_dir` (default: the
    working directory), and a diagnostic with no place points at the input it names.
    `files` is json-v2's list of the files checked (default: `inputs` and every file a
    diagnostic names)."""
    diags = list(diags)
    if fmt == "json":
        from .tojson import render_json

        render_json(diags, out)
    elif fmt == "json-v2":
        from .tojson import render_json_v2

        if files is None:
            files = {*inputs, *(d.span.file for d in diags if d.span is not None)}
        render_json_v2(diags, out, files)
    elif fmt == "sarif":
        from .sarif import render_sarif

        render_sarif(diags, out, sources, base_dir=base_dir, inputs=inputs)
    elif fmt == "github":
        from .github import render_github

        render_github(diags, out)
    else:
        from .text import render_text

        shown = [d for d in diags if d.suppressed is None]
        render_text(shown, out, sources or Sources(), use_color(out) if color is None else color)


def summary(diags: Iterable[Diagnostic]) -> str:
    """`2 errors, 1 warning` (empty when nothing is reported), `, 3 suppressed` when some are."""
    diags = list(diags)
    shown = [d for d in diags if d.suppressed is None]
    errors = sum(d.severity is Severity.ERROR for d in shown)
    warnings = sum(d.severity is Severity.WARNING for d in shown)
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    if parts and len(shown) < len(diags):
        parts.append(f"{len(diags) - len(shown)} suppressed")
    return ", ".join(parts)


__all__ = ["FORMATS", "JSON_V2_VERSION", "Sources", "apply_suppressions", "default_base_dir", "render", "render_github",
           "render_json", "render_json_v2", "render_sarif", "render_sarif_failure", "render_text", "summary",
           "to_json_v2", "use_color"]
