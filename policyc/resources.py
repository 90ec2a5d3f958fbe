"""Where the grammar and the C templates are: beside the package in a checkout (and an
editable install), under `<prefix>/share/policyc` in an installed wheel (pyproject.toml's
data-files)."""

from __future__ import annotations

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[1]


def resource_dir(name: str) -> Path:
    """`grammar` or `templates`: the checkout's when it has one, else the installed copy."""
    here = _CHECKOUT / name
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "policyc" / name
