"""`--format json`: a list of `Diagnostic.to_dict()`, sorted by location."""

from __future__ import annotations

import json
from typing import TextIO

from ..diagnostics import Diagnostic


def render_json(diags: list[Diagnostic], out: TextIO) -> None:
    json.dump([d.to_dict() for d in diags], out, indent=2)
    out.write("\n")
