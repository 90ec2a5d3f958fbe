"""Start-up: policyc/cli/main.py imports command modules lazily. `policyc --help` imports none
of them (nor the front end, jinja2, cffi or pydantic); a command imports its own module only;
the help `--help` lists is each command's docstring."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policyc.cli.main import COMMANDS, app, load_command

ROOT = Path(__file__).resolve().parents[2]
COMMAND_MODULES = sorted({f"policyc.cli.{m}" for m, *_ in COMMANDS.values() if m != "main"})
HEAVY = ["policyc.pipeline", "policyc.codegen", "policyc.runtime", "policyc.parse", "jinja2", "cffi", "lark",
         "pydantic", "rich", "pygls"]


def _modules_after(code: str) -> set[str]:
    r = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "100"})
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_importing_the_cli_imports_no_command_module():
    mods = _modules_after("import policyc.cli.main")
    assert not mods & set(COMMAND_MODULES), sorted(mods & set(COMMAND_MODULES))
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))


def test_help_lists_every_command_without_importing_them():
    code = ("import sys\nsys.argv = ['policyc', '--help']\nfrom policyc.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n")
    mods = _modules_after(code)
    assert not mods & set(COMMAND_MODULES), sorted(mods & set(COMMAND_MODULES))
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))
    out = CliRunner().invoke(app, ["--help"], prog_name="policyc").output
    for name in [*COMMANDS, "vm"]:
        assert f"  {name} " in out, name


def test_a_command_imports_its_own_module_only():
    code = ("import sys\nsys.argv = ['policyc', 'fmt', '--help']\nfrom policyc.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n")
    mods = _modules_after(code)
    assert "policyc.cli.fmt_cmd" in mods
    others = set(COMMAND_MODULES) - {"policyc.cli.fmt_cmd", "policyc.cli.common"}
    assert not mods & others, sorted(mods & others)
    assert not mods & {"policyc.codegen", "jinja2", "cffi"}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_listed_help_is_the_commands_docstring(name):
    module, attr, short, _ = COMMANDS[name]
    fn = getattr(importlib.import_module(f"policyc.cli.{module}"), attr)
    assert inspect.getdoc(fn).split("\n\n")[0].replace("\n", " ") == short
    cmd = load_command(name)
    assert cmd.name == name
    r = CliRunner().invoke(app, [name, "--help"], prog_name="policyc")
    assert r.exit_code == 0 and f"policyc {name}" in r.output, r.output


def test_completing_a_command_name_imports_no_command_module():
    code = ("import os, sys\nos.environ.update(COMP_WORDS='policyc ch', COMP_CWORD='1', _POLICYC_COMPLETE='complete_bash')\n"
            "sys.argv = ['policyc']\nfrom policyc.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n")
    mods = _modules_after(code)
    assert not mods & set(COMMAND_MODULES), sorted(mods & set(COMMAND_MODULES))
