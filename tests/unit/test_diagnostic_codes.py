"""Codes are stable and documented: every code the source emits is in CODES and in
docs/diagnostics.md, with its anti-pattern and best practice."""

from __future__ import annotations

import re

from policyc.diagnostics import CODES

from _policyc_helpers import ROOT

DOC = (ROOT / "docs" / "diagnostics.md").read_text()


def emitted_codes() -> set[str]:
    found = set()
    for path in (ROOT / "policyc").rglob("*.py"):
        found |= set(re.findall(r'"([PW]\d{3})"', path.read_text()))
    return found


def test_every_emitted_code_is_registered():
    assert emitted_codes() <= set(CODES)


def test_every_code_is_documented():
    for code, (name, _) in CODES.items():
        m = re.search(rf"^### {code} `{re.escape(name)}`$(.*?)(?=^### |\Z)", DOC, re.M | re.S)
        assert m, f"{code} is not in docs/diagnostics.md"
        section = m.group(1)
        assert "Anti-pattern" in section and "Best practice" in section, code


def test_documented_codes_exist():
    assert set(re.findall(r"^### ([PW]\d{3}) ", DOC, re.M)) == set(CODES)


def test_severity_follows_the_letter():
    from policyc.checks import PIPELINE
    assert PIPELINE   # P codes are errors, W codes warnings: see policyc/report/sarif.py
    assert all(c[0] in "PW" for c in CODES)
