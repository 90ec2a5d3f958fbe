"""The man pages and shell completion scripts ship in the wheel: scripts/gen_docs.py --package
writes them into policyc/share (checked in, package data in pyproject.toml). Here: they are
what the generator makes now, a real `pip wheel .` carries them byte for byte, and
policyc/install.py can put them where the system looks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from policyc import install as I

ROOT = Path(__file__).resolve().parents[2]
SHARE = ROOT / "policyc" / "share"
SHIPPED = ["man/man1/policyc.1", "man/man5/policyc.policy.5",
           "completion/policyc.bash", "completion/_policyc", "completion/policyc.fish"]


def gen_docs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), *args],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "51"})


def test_the_checked_in_pages_and_scripts_are_current():
    """A stale copy fails here: after changing a command or docs/language.md run
    `python scripts/gen_docs.py --package` (COLUMNS is odd on purpose: the pages do not
    depend on the terminal)."""
    r = gen_docs("--package", "--check")
    assert r.returncode == 0, r.stderr
    assert sorted(p.relative_to(SHARE).as_posix() for p in SHARE.rglob("*") if p.is_file()) == sorted(SHIPPED)


def test_check_names_a_stale_file_and_rewriting_keeps_an_unchanged_date(tmp_path):
    out = tmp_path / "share"
    shutil.copytree(SHARE, out)
    page = out / "man" / "man1" / "policyc.1"
    dated = re.sub(r'^(\.TH POLICYC 1 )"[^"]*"', r'\1"2001-01-01"', page.read_text(), count=1, flags=re.M)
    assert '.TH POLICYC 1 "2001-01-01"' in dated
    page.write_text(dated)                                  # only the date differs: current
    assert gen_docs("-o", str(out), "--check").returncode == 0
    assert gen_docs("-o", str(out)).returncode == 0 and page.read_text() == dated   # left as it was
    (out / "completion" / "_policyc").write_text("#compdef policyc\n")
    r = gen_docs("-o", str(out), "--check")
    assert r.returncode == 1 and "_policyc" in r.stderr and "policyc.1" not in r.stderr


def test_the_shipped_completions_are_what_policyc_completion_prints():
    from policyc.cli.main import completion_script

    for shell, name in (("bash", "policyc.bash"), ("zsh", "_policyc"), ("fish", "policyc.fish")):
        assert (SHARE / "completion" / name).read_text() == completion_script(shell), shell


def _source_tree(dest: Path) -> None:
    """The tracked and new (not ignored) files, as scripts/test_wheel.sh builds from: no
    build/ or egg-info of the checkout reaches the wheel."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True).stdout.split(b"\0")
    for rel in filter(None, (f.decode() for f in files)):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src, dist = work / "src", work / "dist"
    src.mkdir()
    _source_tree(src)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(dist)],
                       cwd=src, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (whl,) = dist.glob("policyc-*.whl")
    return whl


def test_the_wheel_carries_the_man_pages_and_completions(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for rel in SHIPPED:
            assert f"policyc/share/{rel}" in names, rel
            assert z.read(f"policyc/share/{rel}") == (SHARE / rel).read_bytes(), rel
        assert "policyc/grammar/policy.lark" in names   # and the rest of the data still


def test_install_docs_puts_them_where_the_system_looks(tmp_path):
    layout = I.Layout(tmp_path)
    written = I.install_docs(layout)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [d.lstrip("/") for d in I.DOCS.values()]
    assert (tmp_path / "usr/share/man/man1/policyc.1").read_bytes() == (SHARE / SHIPPED[0]).read_bytes()
    bash = tmp_path / "usr/share/bash-completion/completions/policyc"
    assert bash.read_text().startswith("_policyc_completion()") and oct(bash.stat().st_mode & 0o777) == "0o644"
    assert I.install_docs(layout) == written   # again: replaced, no error
