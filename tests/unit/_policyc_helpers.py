"""Shared by the policyc front-end tests: load text, run checks, compare models."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from policyc.checks import run_checks
from policyc.diagnostics import Diagnostics
from policyc.lower import load_program

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
FIXTURES = ROOT / "tests" / "fixtures"


def write(tmp_path: Path, files: dict[str, str]) -> list[str]:
    out = []
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        out.append(str(p))
    return out


def load(tmp_path: Path, text: str, name: str = "t.policy", extra: dict[str, str] | None = None):
    """(program or None, diagnostics) for one policy file (plus `extra` files beside it)."""
    write(tmp_path, extra or {})
    (path,) = write(tmp_path, {name: text})
    diags = Diagnostics()
    return load_program([path], diags), diags


def check(tmp_path: Path, text: str, **kw):
    """Diagnostics after lowering and every check."""
    program, diags = load(tmp_path, text, **kw)
    if program is not None:
        run_checks(program, diags)
    return diags


def found(diags, codes=None) -> list[tuple[str, int, int]]:
    """(code, line, col) of each diagnostic, sorted; only `codes` when given."""
    return sorted((d.code, d.span.line if d.span else 0, d.span.col if d.span else 0)
                  for d in diags.items if codes is None or d.code in codes)


def codes(diags) -> list[str]:
    return sorted(d.code for d in diags.items)


def expected_in(path: Path) -> list[tuple[str, int, int]]:
    """`# expect CODE LINE:COL` lines at the top of a fixture."""
    out = []
    for m in re.finditer(r"^# expect (\w+) (\d+):(\d+)$", path.read_text(), re.M):
        out.append((m.group(1), int(m.group(2)), int(m.group(3))))
    return sorted(out)


def shape(obj):
    """A model object without spans, source texts and ids: what formatting must preserve."""
    if dataclasses.is_dataclass(obj):
        skip = {"span", "mode_span", "default_span", "acknowledge_span", "protect_span", "text", "used_from", "sources",
                "files"}
        return (type(obj).__name__,) + tuple(
            (f.name, shape(getattr(obj, f.name))) for f in dataclasses.fields(obj) if f.name not in skip)
    if isinstance(obj, (tuple, list)):
        return tuple(shape(x) for x in obj)
    if isinstance(obj, frozenset):
        return tuple(sorted(shape(x) for x in obj))
    if isinstance(obj, dict):
        return tuple(sorted((k, shape(v)) for k, v in obj.items()))
    return obj
