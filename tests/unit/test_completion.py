"""Shell completion (`policyc completion bash|zsh|fish`, typer's machinery) exercised by
sourcing the script in a real shell, the man pages scripts/gen_docs.py writes, and shellcheck
over the bash completion script and the repository's shell scripts.

bash, zsh, fish and shellcheck are required, never skipped: scripts/setup.sh installs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policyc.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bindir(tmp_path) -> Path:
    """A `policyc` on PATH that runs this checkout with this Python."""
    d = tmp_path / "bin"
    d.mkdir()
    exe = d / "policyc"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m policyc \"$@\"\n")
    exe.chmod(0o755)
    return d


def _env(bindir: Path) -> dict:
    return {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("words,cword,expected", [
    (["policyc", "ch"], 1, {"check"}),
    (["policyc", ""], 1, {"check", "fmt", "explain", "test", "lsp", "completion", "vm"}),
    (["policyc", "check", "--wer"], 2, {"--werror"}),
    (["policyc", "explain", "x.policy", "--fail"], 3, {"--fail-on"}),
])
def test_bash_completion_script(bindir, tmp_path, words, cword, expected):
    script = tmp_path / "policyc.bash"
    r = subprocess.run([str(bindir / "policyc"), "completion", "bash"], capture_output=True, text=True,
                       env=_env(bindir))
    assert r.returncode == 0, r.stderr
    script.write_text(r.stdout)
    words_sh = " ".join(f"'{w}'" for w in words)
    probe = (f"source {script}\n"
             "complete -p policyc\n"
             f"COMP_WORDS=({words_sh}); COMP_CWORD={cword}\n"
             "_policyc_completion policyc\n"
             "printf 'reply:%s\\n' \"${COMPREPLY[@]}\"\n")
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], capture_output=True, text=True,
                       env=_env(bindir), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "-F _policyc_completion policyc" in r.stdout
    got = {line[len("reply:"):] for line in r.stdout.splitlines() if line.startswith("reply:")}
    assert expected <= got, (got, r.stderr)


@pytest.mark.parametrize("shell,marker", [("zsh", "#compdef policyc"), ("fish", "complete --command policyc")])
def test_zsh_and_fish_scripts(shell, marker):
    r = CliRunner().invoke(app, ["completion", shell], prog_name="policyc")
    assert r.exit_code == 0 and marker in r.output and "_POLICYC_COMPLETE" in r.output


def test_zsh_parses_its_script(tmp_path):
    script = tmp_path / "_policyc"
    script.write_text(CliRunner().invoke(app, ["completion", "zsh"], prog_name="policyc").output)
    r = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_unknown_shell_is_a_usage_error():
    r = CliRunner().invoke(app, ["completion", "tcsh"], prog_name="policyc")
    assert r.exit_code == 64


def test_completion_answers_for_zsh_and_fish(bindir):
    env = {**_env(bindir), "_POLICYC_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "policyc ex"}
    r = subprocess.run([str(bindir / "policyc")], capture_output=True, text=True, env=env, timeout=60)
    assert "explain" in r.stdout and "exec" in r.stdout, r.stdout + r.stderr
    env = {**_env(bindir), "_POLICYC_COMPLETE": "complete_fish", "_TYPER_COMPLETE_ARGS": "policyc fm",
           "_TYPER_COMPLETE_FISH_ACTION": "get-args"}
    r = subprocess.run([str(bindir / "policyc")], capture_output=True, text=True, env=env, timeout=60)
    assert "fmt" in r.stdout, r.stdout + r.stderr


def test_man_pages(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "-o", str(tmp_path)],
                       capture_output=True, text=True, env={**os.environ, "SOURCE_DATE_EPOCH": "1767225600"})
    assert r.returncode == 0, r.stderr
    page1 = (tmp_path / "man" / "man1" / "policyc.1").read_text()
    page5 = (tmp_path / "man" / "man5" / "policyc.policy.5").read_text()
    assert page1.startswith('.\\" Generated') and '.TH POLICYC 1 "2026-01-01"' in page1
    for name in ("check", "fmt", "explain", "test", "build", "lsp", "completion"):
        assert f".SS policyc {name}" in page1
    assert "EX_USAGE" in page1 and "\\-\\-fail\\-on" in page1
    check = page1[page1.index(".SS policyc check"):page1.index(".SS policyc fmt")]
    assert "\\-\\-werror" in check and "\\-\\-stdin\\-filename" in check and "\u2500" not in page1
    assert "Usage: policyc check [OPTIONS]" in check and "policyc policyc" not in page1
    assert ".SH GRAMMAR" in page5 and ".SH PATHS AND GLOBS" in page5 and "policy nginx {" in page5
    assert (tmp_path / "completion" / "policyc.bash").read_text().startswith("_policyc_completion()")
    if shutil.which("groff"):
        for page in (tmp_path / "man" / "man1" / "policyc.1", tmp_path / "man" / "man5" / "policyc.policy.5"):
            g = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True)
            assert g.returncode == 0 and not g.stderr.strip(), (page.name, g.stderr[:2000])


def test_fish_completes_through_its_script(bindir, tmp_path):
    script = tmp_path / "policyc.fish"
    script.write_text(CliRunner().invoke(app, ["completion", "fish"], prog_name="policyc").output)
    r = subprocess.run(["fish", "--no-config", "-c", f"source {script}; complete -C 'policyc ex'"],
                       capture_output=True, text=True, env={**_env(bindir), "HOME": str(tmp_path)}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert {"explain", "exec"} <= {line.split("\t")[0] for line in r.stdout.splitlines()}, r.stdout


# ---- shellcheck --------------------------------------------------------------------------------

# The bash completion script is typer's, generated (policyc/cli/main.py completion_script):
# SC2207 is its `COMPREPLY=( $(...) )` under `local IFS=$'\n'`, one candidate per line, as
# intended; SC2086 is `$COMP_CWORD` (an integer) and `$1` (the command word bash passes, the
# program name), both unquoted by typer. Everything else must be clean.
TYPER_BASH_EXCLUDES = "SC2207,SC2086"


def test_shellcheck_the_bash_completion_script(tmp_path):
    script = tmp_path / "policyc.bash"
    script.write_text(CliRunner().invoke(app, ["completion", "bash"], prog_name="policyc").output)
    r = subprocess.run(["shellcheck", "--shell=bash", f"--exclude={TYPER_BASH_EXCLUDES}", str(script)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def repo_shell_scripts() -> list[Path]:
    """Every shell script under scripts/ and .ci/: a `.sh` file or one whose first line runs
    a shell."""
    out = []
    for d in ("scripts", ".ci"):
        for f in sorted((ROOT / d).rglob("*")):
            if not f.is_file():
                continue
            with f.open("rb") as fh:
                first = fh.readline()
            if f.suffix == ".sh" or (first.startswith(b"#!") and
                                     any(sh in first for sh in (b"bash", b"/sh", b" sh", b"dash"))):
                out.append(f)
    return out


def test_shellcheck_the_repositorys_shell_scripts():
    scripts = repo_shell_scripts()
    names = {f.relative_to(ROOT).as_posix() for f in scripts}
    assert {"scripts/setup.sh", "scripts/test.sh", "scripts/test_wheel.sh", ".ci/run"} <= names, names
    r = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_man_pages_rule_for_dash_p_is_what_the_commands_do():
    """policyc(1) NOTES: `-p POLICY` is one option, a policy by name or by file, in build,
    load and exec (each also has the long `--policy NAME` and `--policy-file PATH` it stands
    for); `--policy` is a policy's name wherever it exists. A new `-p` or `--policy` must keep
    to the rule (or the page must change with it)."""
    import typer

    from policyc.cli.main import COMMANDS

    group = typer.main.get_command(app)
    ctx = typer.Context(group, info_name="policyc")
    dash_p, policy = {}, set()
    for name in [*COMMANDS, "vm"]:
        for param in group.get_command(ctx, name).params:
            opts = set(getattr(param, "opts", ())) | set(getattr(param, "secondary_opts", ()))
            if "-p" in opts:
                dash_p[name] = sorted(o for p in group.get_command(ctx, name).params
                                      for o in getattr(p, "opts", ()) if o.startswith("--policy"))
            if "--policy" in opts:
                assert param.metavar == "NAME", name
                policy.add(name)
    assert dash_p == {c: ["--policy", "--policy-file"] for c in ("build", "load", "exec")}
    assert {"build", "load", "exec", "suggest"} <= policy
    page = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--package", "--check"],
                          capture_output=True, text=True)
    assert page.returncode == 0, page.stderr
    notes = (ROOT / "policyc" / "share" / "man" / "man1" / "policyc.1").read_text().split(".SH NOTES")[1]
    assert "The short \\fB\\-p POLICY\\fR is a policy by name or by file" in notes
