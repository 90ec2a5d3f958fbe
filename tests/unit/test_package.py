"""policyc as a package (issue #15): the data inside the `policyc` namespace found through
importlib.resources, the runtime as `policyc.runtime` (in a checkout and installed), no
top-level `runtime`, one version, optional dependencies that are optional.

scripts/test_wheel.sh checks a real wheel end to end (pip wheel, clean venv, another
directory); these tests check the same contract from the checkout, and on an installed layout
laid out here from pyproject.toml."""

from __future__ import annotations

import importlib.resources
import io
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import policyc
from policyc.resources import NAMES, resource_dir

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
TOP_LEVEL_RUNTIME = re.compile(r"^[ \t]*(import[ \t]+runtime\b|from[ \t]+runtime\b)", re.M)


def run_python(code: str, cwd: Path, pythonpath: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


# ---- resources ----------------------------------------------------------------------------

def test_resources_are_found_through_importlib_resources():
    pkg = importlib.resources.files("policyc")
    assert resource_dir("kernels") == pkg / "kernels"
    assert sorted(p.stem for p in resource_dir("kernels").glob("*.json")) == ["6.1", "6.12", "7.2"]
    assert (resource_dir("grammar") / "policy.lark").is_file()
    assert (resource_dir("templates") / "policy.bpf.c.j2").is_file()
    assert (resource_dir("templates") / "common" / "abi.h").is_file()


def test_the_stages_read_their_data_through_resources():
    from policyc import codegen, kernel_facts, parse

    assert parse.GRAMMAR == resource_dir("grammar") / "policy.lark"
    assert codegen.TEMPLATES == resource_dir("templates")
    assert kernel_facts.SHIPPED == resource_dir("kernels")


# ---- the runtime inside the namespace -------------------------------------------------------

def test_policyc_runtime_is_importable_and_is_the_repositorys_runtime():
    import policyc.runtime as rt
    from policyc.runtime import _libbpf, loader

    assert rt.__name__ == "policyc.runtime" and callable(rt.load) and issubclass(rt.BpfError, Exception)
    assert Path(rt.__file__).resolve() == ROOT / "runtime" / "__init__.py"
    assert loader.__name__ == "policyc.runtime.loader" and _libbpf.__name__ == "policyc.runtime._libbpf"


def test_no_top_level_runtime_is_imported_anywhere():
    """Every module imports `policyc.runtime`; a plain `import runtime` would only work from a
    checkout (and load the runtime twice)."""
    offenders = []
    for d in ("policyc", "tests", "bench", "scripts"):
        for f in (ROOT / d).rglob("*.py"):
            for m in TOP_LEVEL_RUNTIME.finditer(f.read_text()):
                offenders.append(f"{f.relative_to(ROOT)}: {m.group(0).strip()}")
    assert offenders == []


def test_policyc_needs_no_top_level_runtime_module():
    """With `import runtime` made impossible, the CLI and every module that uses the runtime
    still import; `runtime` never appears in sys.modules."""
    code = """
import sys
class NoTopLevelRuntime:
    def find_spec(self, name, path=None, target=None):
        if name == "runtime" or name.startswith("runtime."):
            raise ImportError("top-level `runtime` is not policyc's")
sys.meta_path.insert(0, NoTopLevelRuntime())
import policyc.cli.main, policyc.deploy, policyc.execute, policyc.load_test, policyc.audit.reader
import policyc.cli.check, policyc.runtime
assert not [m for m in sys.modules if m == "runtime" or m.startswith("runtime.")]
assert policyc.deploy.runtime is policyc.runtime is policyc.execute.runtime
"""
    r = run_python(code, ROOT, os.environ.get("PYTHONPATH"))
    assert r.returncode == 0, r.stderr


def test_runtime_imports_nothing_of_policyc():
    """runtime/ stays a library of its own: its modules import each other relatively, and
    besides the standard library only cffi."""
    for f in sorted((ROOT / "runtime").glob("*.py")):
        text = f.read_text()
        assert not re.search(r"^[ \t]*(import|from)[ \t]+policyc\b", text, re.M), f.name
        for m in re.finditer(r"^[ \t]*from[ \t]+([\w.]+)[ \t]+import|^[ \t]*import[ \t]+([\w.]+)", text, re.M):
            name = m.group(1) or m.group(2)
            if name.startswith("."):
                continue   # one of runtime's own modules
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top in ("__future__", "cffi"), (f.name, m.group(0))


def test_the_checkout_search_path_is_only_for_a_checkout():
    """policyc/__init__.py adds the repository root to the package's path only in a source
    checkout (no policyc/runtime of its own, a runtime/ and pyproject.toml beside it)."""
    assert policyc.__path__[0] == str(ROOT / "policyc")
    assert policyc.__path__[1:] == [str(ROOT)]


# ---- an installed layout ----------------------------------------------------------------------

def lay_out_wheel(site: Path) -> None:
    """What `pip install` of the wheel puts in site-packages, from pyproject.toml's packages,
    package-dir and package-data (as setuptools maps them; scripts/test_wheel.sh builds the
    real one)."""
    package_dir = SETUPTOOLS.get("package-dir", {})
    for pkg in SETUPTOOLS["packages"]:
        src = ROOT / package_dir.get(pkg, pkg.replace(".", "/"))
        dest = site / pkg.replace(".", "/")
        dest.mkdir(parents=True, exist_ok=True)
        files = list(src.glob("*.py"))
        for pattern in SETUPTOOLS.get("package-data", {}).get(pkg, []):
            files += src.glob(pattern)
        for f in files:
            (dest / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest / f.relative_to(src))


def test_an_installed_layout_works_from_another_directory(tmp_path):
    site, work = tmp_path / "site-packages", tmp_path / "work"
    lay_out_wheel(site)
    work.mkdir()
    shutil.copy(ROOT / "policies" / "sshd.policy", work)
    shutil.copy(ROOT / "policies" / "sshd.policy.test", work)
    code = f"""
import sys
from pathlib import Path
import policyc, policyc.runtime
from policyc.resources import NAMES, resource_dir
site = Path({str(site)!r})
assert policyc.__path__ == [str(site / "policyc")], policyc.__path__   # no checkout search path
assert Path(policyc.runtime.__file__) == site / "policyc/runtime/__init__.py"
for name in NAMES:
    assert resource_dir(name) == site / "policyc" / name, (name, resource_dir(name))
from policyc.cli.main import main
for argv in (["check", "sshd.policy"], ["fmt", "--check", "sshd.policy"], ["test", "sshd.policy"]):
    sys.argv = ["policyc", *argv]
    try:
        main()
    except SystemExit as e:
        assert not e.code, (argv, e.code)
"""
    r = run_python(code, work, str(site))
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_package_and_data_file_is_in_pyproject():
    """`packages` is a list (package-dir needs one): a new subpackage or data file of
    policyc/ must be named there, or the wheel would lack it."""
    listed = set(SETUPTOOLS["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "policyc").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert on_disk <= listed, sorted(on_disk - listed)
    assert {"policyc.runtime", "policyc.grammar", "policyc.templates"} <= listed
    assert "runtime" not in listed   # no top-level runtime package
    for pkg, src in SETUPTOOLS["package-dir"].items():
        assert pkg.startswith("policyc.") and (ROOT / src).is_dir(), pkg
    data = {p for p in (ROOT / "policyc").rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
            and "__pycache__" not in p.parts}
    package_dir = SETUPTOOLS["package-dir"]
    covered = {f for pkg, patterns in SETUPTOOLS["package-data"].items() for pattern in patterns
               for f in (ROOT / package_dir.get(pkg, pkg.replace(".", "/"))).glob(pattern)}
    assert data <= covered, sorted(str(p) for p in data - covered)


# ---- the version --------------------------------------------------------------------------------

def test_version_has_one_source():
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert SETUPTOOLS["dynamic"]["version"] == {"attr": "policyc.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", policyc.__version__)


def test_dash_dash_version_prints_policyc_and_the_version(tmp_path):
    from typer.testing import CliRunner

    from policyc.cli.main import app

    r = CliRunner().invoke(app, ["--version"], prog_name="policyc")
    assert r.exit_code == 0 and r.output == f"policyc {policyc.__version__}\n"
    r = subprocess.run([sys.executable, "-m", "policyc", "--version"], cwd=tmp_path, capture_output=True,
                       text=True, env=os.environ.copy())
    assert r.returncode == 0 and r.stdout == f"policyc {policyc.__version__}\n", r.stderr


def test_build_manifest_carries_the_version():
    from policyc import codegen

    text = Path(codegen.__file__).read_text()
    assert '"policyc_version": __version__' in text


# ---- dependencies -------------------------------------------------------------------------------

def test_journald_is_an_extra_and_setup_installs_it():
    deps = " ".join(PYPROJECT["project"]["dependencies"])
    assert "cysystemd" not in deps
    assert any(d.startswith("cysystemd") for d in PYPROJECT["project"]["optional-dependencies"]["journald"])
    assert "[test,vm,journald]" in (ROOT / "scripts" / "setup.sh").read_text()


def test_cysystemd_is_imported_only_for_the_journal():
    code = "import sys, policyc.cli.main, policyc.audit.sinks; assert 'cysystemd' not in sys.modules"
    r = run_python(code, ROOT, os.environ.get("PYTHONPATH"))
    assert r.returncode == 0, r.stderr


def test_journal_without_the_extra_says_how_to_install_it(monkeypatch):
    from policyc import deploy
    from policyc.audit.sinks import JournalSink
    from policyc.cli.audit_cmd import run_audit

    monkeypatch.setitem(sys.modules, "cysystemd", None)   # `import cysystemd` fails
    with pytest.raises(ImportError, match=re.escape("pip install 'policyc[journald]'")):
        JournalSink()
    monkeypatch.setattr(deploy, "loaded_names", lambda: [])
    err = io.StringIO()
    assert run_audit(False, None, "json", True, 0, 0, io.StringIO(), err) == 2
    assert "pip install 'policyc[journald]'" in err.getvalue()


def test_project_urls_point_at_the_repository():
    urls = PYPROJECT["project"]["urls"]
    assert set(urls) >= {"Homepage", "Documentation", "Issues"}
    assert all(u.startswith("https://github.com/policyc/policyc") for u in urls.values())
    assert urls["Documentation"].endswith("/docs")
