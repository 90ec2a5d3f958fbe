"""The grammar and templates are found in a checkout and in an installed wheel."""

import sys
import tomllib
from pathlib import Path

import policyc.resources as resources

ROOT = Path(__file__).resolve().parents[2]


def test_checkout_first_then_the_installed_copy(tmp_path, monkeypatch):
    assert resources.resource_dir("templates") == ROOT / "templates"
    monkeypatch.setattr(resources, "_CHECKOUT", tmp_path)   # an installed wheel: no checkout
    assert resources.resource_dir("grammar") == Path(sys.prefix) / "share" / "policyc" / "grammar"


def test_the_wheel_carries_every_grammar_and_template_file():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    shipped = {p for globs in data.values() for g in globs for p in ROOT.glob(g)}
    needed = {p for d in ("grammar", "templates") for p in (ROOT / d).rglob("*") if p.is_file()}
    assert needed <= shipped, sorted(str(p) for p in needed - shipped)
