"""What the lowering passes after the first three share: the diagnostics, the files read,
the names declared and the variables resolved."""

from __future__ import annotations

from dataclasses import dataclass

from ..diagnostics import Diagnostics
from .lets import Variables
from .names import Names
from .sources import Sources


@dataclass
class Context:
    diags: Diagnostics
    sources: Sources
    names: Names
    vars: Variables
