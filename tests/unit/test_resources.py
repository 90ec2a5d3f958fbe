"""The grammar, templates and kernel facts are found in a checkout and in an installed wheel
(policyc/resources.py), and the wheel carries every one of their files."""

import tomllib
from pathlib import Path

import pytest

import policyc.resources as resources

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_a_checkout_finds_its_top_level_folders_and_the_package_kernels():
    assert resources.resource_dir("grammar") == ROOT / "grammar"
    assert resources.resource_dir("templates") == ROOT / "templates"
    assert resources.resource_dir("kernels") == ROOT / "policyc" / "kernels"


def test_package_data_comes_first(tmp_path, monkeypatch):
    """An installed wheel: policyc/grammar inside the package wins over any folder beside it."""
    (tmp_path / "grammar").mkdir()
    monkeypatch.setattr(resources, "files", lambda package: tmp_path)
    assert resources.resource_dir("grammar") == tmp_path / "grammar"
    assert resources.resource_dir("templates") == ROOT / "templates"   # not packaged here


def test_without_package_data_or_checkout_it_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "files", lambda package: tmp_path)
    monkeypatch.setattr(resources, "_CHECKOUT", tmp_path / "site-packages")
    with pytest.raises(FileNotFoundError, match="reinstall policyc"):
        resources.resource_dir("templates")
    with pytest.raises(ValueError, match="unknown resource"):
        resources.resource_dir("docs")


def test_a_folder_beside_an_installed_package_is_not_a_checkout(tmp_path, monkeypatch):
    """site-packages/templates of some other distribution is never taken for ours."""
    site = tmp_path / "site-packages"
    (site / "templates").mkdir(parents=True)
    monkeypatch.setattr(resources, "files", lambda package: site / "policyc")
    monkeypatch.setattr(resources, "_CHECKOUT", site)
    with pytest.raises(FileNotFoundError):
        resources.resource_dir("templates")


def shipped_files() -> dict[Path, str]:
    """Repository file -> its path in the wheel, as pyproject.toml's package-dir and
    package-data say (the Python modules of each package and its data globs)."""
    st = PYPROJECT["tool"]["setuptools"]
    package_dir = st.get("package-dir", {})
    out = {}
    for pkg in st["packages"]:
        src = ROOT / package_dir.get(pkg, pkg.replace(".", "/"))
        dest = pkg.replace(".", "/")
        for f in src.glob("*.py"):
            out[f] = f"{dest}/{f.name}"
        for pattern in st.get("package-data", {}).get(pkg, []):
            for f in src.glob(pattern):
                out[f] = f"{dest}/{f.relative_to(src).as_posix()}"
    return out


def test_the_wheel_carries_every_grammar_template_and_kernel_file():
    shipped = shipped_files()
    needed = {p for d in ("grammar", "templates", "policyc/kernels") for p in (ROOT / d).rglob("*")
              if p.is_file() and "__pycache__" not in p.parts}
    assert needed <= shipped.keys(), sorted(str(p) for p in needed - shipped.keys())
    assert shipped[ROOT / "grammar" / "policy.lark"] == "policyc/grammar/policy.lark"
    assert shipped[ROOT / "templates" / "common" / "abi.h"] == "policyc/templates/common/abi.h"
    assert shipped[ROOT / "policyc" / "kernels" / "6.1.json"] == "policyc/kernels/6.1.json"
    assert shipped[ROOT / "runtime" / "loader.py"] == "policyc/runtime/loader.py"
    assert all(w.startswith("policyc/") for w in shipped.values())   # nothing outside the namespace
    assert "data-files" not in PYPROJECT["tool"]["setuptools"]      # no more share/policyc
