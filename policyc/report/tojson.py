"""`--format json`: a list of `Diagnostic.to_dict()`, sorted by location (kept as it is:
scripts read it).

`--format json-v2`: the same items in a versioned object (`JSON_V2_VERSION`),

    {"version": 2, "policyc_version": "0.1.0", "files": [...], "diagnostics": [...],
     "summary": {"errors": n, "warnings": n, "notes": n, "suppressed": n}}

`diagnostics` is exactly the json format's list (suppressed warnings in it, marked); the
summary counts the diagnostics not suppressed by severity, and the suppressed ones apart.
`version` is 2 because the list is the first shape; it changes only when a key changes
meaning or goes away (new keys may appear without a change).
"""

from __future__ import annotations

import json
from typing import Iterable, TextIO

from ..diagnostics import Diagnostic, Severity

JSON_V2_VERSION = 2


def render_json(diags: list[Diagnostic], out: TextIO) -> None:
    json.dump([d.to_dict() for d in diags], out, indent=2)
    out.write("\n")


def to_json_v2(diags: list[Diagnostic], files: Iterable[str]) -> dict:
    from .. import __version__

    shown = [d for d in diags if d.suppressed is None]
    return {
        "version": JSON_V2_VERSION,
        "policyc_version": __version__,
        "files": sorted(set(files)),
        "diagnostics": [d.to_dict() for d in diags],
        "summary": {
            "errors": sum(d.severity is Severity.ERROR for d in shown),
            "warnings": sum(d.severity is Severity.WARNING for d in shown),
            "notes": sum(d.severity is Severity.NOTE for d in shown),
            "suppressed": len(diags) - len(shown),
        },
    }


def render_json_v2(diags: list[Diagnostic], out: TextIO, files: Iterable[str]) -> None:
    json.dump(to_json_v2(diags, files), out, indent=2)
    out.write("\n")
