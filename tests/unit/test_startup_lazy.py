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
from types import SimpleNamespace
from typing import List

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


# --- check's start-up: no pydantic, no SARIF writer ---------------------------------------------
def test_check_imports_neither_pydantic_nor_the_unused_renderers(tmp_path):
    """typer converts option values through pydantic; policyc/cli/main.py's PlainParam
    converts the plain ones without it (a fifth of `check`'s start-up), and the renderers
    of the formats not asked for are not imported (docs/benchmarks.md, Start-up)."""
    p = tmp_path / "a.policy"
    p.write_text('policy a {\n    subject exe "/usr/bin/a"\n    allow file read "/etc/a"\n}\n')
    for argv in (["check", str(p)], ["check", "--format", "text", "--no-werror", str(p)],
                 ["explain", str(p), "--exe", "/usr/bin/a", "--op", "net.connect", "--addr", "10.0.0.1",
                  "--port", "80", "--parent-exe", "/usr/bin/b"]):
        code = (f"import sys\nsys.argv = ['policyc', *{argv!r}]\nfrom policyc.cli.main import main\n"
                "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n")
        mods = _modules_after(code)
        assert not {m for m in mods if m.split(".")[0] == "pydantic"}, argv
        assert "typer._adapters" not in mods, argv
        if argv[0] == "check":
            assert not mods & {"policyc.report.sarif", "policyc.report.github", "policyc.report.tojson"}, argv


def _typer_param(annotation, **info):
    from typer._coercion import resolve_type_descriptor
    from typer.models import OptionInfo

    return resolve_type_descriptor(annotation, OptionInfo(**info))


@pytest.mark.parametrize("annotation, values", [
    (str, ["x", "", "é", "--y"]),
    (bool, [True, False, "true", "0"]),
    (int, ["0", "80", "007", 10, "-3", " 5", "1_000", "+4"]),
    (List[str], [("a", "b"), ["c"], ()]),
])
def test_plain_params_convert_as_typer_does(annotation, values):
    from typer._coercion import build_runtime_param

    from policyc.cli.main import PlainParam

    desc = _typer_param(annotation)
    theirs = build_runtime_param(desc)
    ours = PlainParam(parameter_info=desc.parameter_info, annotation=desc.annotation)
    param = SimpleNamespace(multiple=False, nargs=1, get_error_hint=lambda ctx=None: "'--x'")
    for v in values:
        got, want = _outcome(ours, v, param), _outcome(theirs, v, param)
        assert got == want and type(got) is type(want), (annotation, v, got, want)


def _outcome(rp, value, param):
    from typer._click.exceptions import BadParameter

    try:
        return rp._coerce_value(value, param=param, ctx=None)
    except BadParameter as e:
        return ("error", e.format_message())


def test_a_bad_value_is_typers_usage_error():
    from typer._click.exceptions import BadParameter

    from policyc.cli.main import PlainParam

    desc = _typer_param(int)
    param = SimpleNamespace(multiple=False, nargs=1, get_error_hint=lambda ctx=None: "'--port'")
    with pytest.raises(BadParameter, match="valid integer"):
        PlainParam(parameter_info=desc.parameter_info, annotation=int).coerce("eighty", param, None)
    r = CliRunner().invoke(app, ["explain", "x.policy", "--exe", "/a", "--op", "net.connect", "--port", "x"])
    assert r.exit_code == 2 and "Invalid value for '--port'" in r.output


def test_bounded_and_choice_params_keep_typers_conversion():
    from policyc.cli.main import PlainParam, plain_coercion

    class P:
        def __init__(self, desc):
            self.type_descriptor, self._runtime_param = desc, None

    params = [P(_typer_param(int, min=1)), P(_typer_param(str)), P(_typer_param(float))]
    plain_coercion(params)
    assert [type(p._runtime_param) is PlainParam for p in params] == [False, True, False]


# --- check's start-up: no code generator, no jinja2 ---------------------------------------------
def test_check_explain_and_test_import_neither_the_code_generator_nor_jinja2(tmp_path):
    """policyc/pipeline.py imports policyc.codegen in `select` and `build` only, and
    policyc/codegen imports jinja2 where it renders: `check` builds nothing, and the two were
    a tenth of its start-up (docs/benchmarks.md, Start-up). The path automaton `check` builds
    for P041 (its state cap) is policyc/ir/dfa.py, outside the code generator."""
    p = tmp_path / "a.policy"
    p.write_text('policy a {\n    subject exe "/usr/bin/a"\n    allow file read "/etc/a"\n}\n'
                 'test a {\n    exe "/usr/bin/a"\n    expect allow file read "/etc/a"\n}\n')
    for argv in (["check", str(p)], ["check", "--format", "json", str(p)], ["check", "--format", "sarif", str(p)],
                 ["explain", str(p), "--exe", "/usr/bin/a", "--op", "file.read", "--path", "/etc/a"],
                 ["test", str(p)]):
        code = (f"import sys\nsys.argv = ['policyc', *{argv!r}]\nfrom policyc.cli.main import main\n"
                "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n")
        mods = _modules_after(code)
        assert "policyc.pipeline" in mods or argv[0] != "check", argv
        assert "policyc.ir.dfa" in mods or argv[0] != "check", argv
        bad = sorted(m for m in mods if m.split(".")[0] == "jinja2" or m.startswith("policyc.codegen"))
        assert not bad, (argv, bad)


def test_the_pipeline_imports_the_code_generator_when_it_builds_only():
    mods = _modules_after("import policyc.pipeline as p\np.front_end(['policies/sshd.policy'])")
    assert not {m for m in mods if m.startswith("policyc.codegen") or m == "jinja2"}
    mods = _modules_after("import policyc.pipeline as p\np.select(p.front_end(['policies/sshd.policy']))")
    assert "policyc.codegen" in mods and "jinja2" not in mods
    mods = _modules_after("import policyc.codegen as c\nc.render_c(['subject'], False, False)")
    assert "jinja2" in mods


def test_build_error_and_refused_import_neither_the_code_generator_nor_jinja2():
    """BuildError has a module of its own so that `pipeline.Refused` is an ordinary class and
    `check --load-test`'s `except BuildError` costs no code generator."""
    mods = _modules_after("from policyc.build_error import BuildError\nfrom policyc.pipeline import Refused\n"
                          "assert issubclass(Refused, BuildError)")
    assert "policyc.build_error" in mods
    assert not {m for m in mods if m.startswith("policyc.codegen") or m.split(".")[0] == "jinja2"}
    e = __import__("policyc.build_error", fromlist=["BuildError"]).BuildError("m", detail="d", hint="h")
    assert (str(e), e.message, e.detail, e.hint) == ("m", "m", "d", "h")


def test_refused_is_one_build_error_class():
    """pipeline.Refused is an ordinary class of the module (BuildError lives in
    policyc/build_error.py, which the code generator re-exports): a BuildError, named as
    before, and what `build` raises."""
    from policyc import build_error, codegen, pipeline
    from policyc.diagnostics import Diagnostics

    R = pipeline.Refused
    assert vars(pipeline)["Refused"] is R and isinstance(R, type) and issubclass(R, codegen.BuildError)
    assert (R.__module__, R.__qualname__) == ("policyc.pipeline", "Refused")
    assert codegen.BuildError is build_error.BuildError is pipeline.BuildError
    assert pipeline.BuildResult is codegen.BuildResult
    assert pipeline.unenforced_rules is codegen.unenforced_rules
    assert pipeline.ENFORCED_FAMILIES == codegen.ENFORCED_FAMILIES
    assert pipeline.DEFAULT_RINGBUF_BYTES == codegen.DEFAULT_RINGBUF_BYTES
    assert inspect.signature(pipeline.build).parameters["ringbuf_bytes"].default == codegen.DEFAULT_RINGBUF_BYTES
    with pytest.raises(AttributeError):
        pipeline.no_such_name
    front = pipeline.FrontEnd(None, Diagnostics())
    with pytest.raises(R, match="not checked"):
        pipeline.build(front, None, Path("/nonexistent"))


# --- check's start-up: no lark, no importlib.resources, no TOML without a configuration --------
def test_check_with_the_standalone_parser_imports_no_lark_nor_resources_nor_toml(tmp_path):
    """The third `check` with a cache (the second writes the standalone parser,
    policyc/parse/standalone.py, once the first's cache lived on) imports no lark; policyc/resources.py finds the grammar
    without importing importlib.resources; policyc/config.py imports tomllib only to read a
    configuration file and json only for a message; nothing imports hashlib
    (docs/benchmarks.md, Start-up)."""
    p = tmp_path / "a.policy"
    p.write_text('policy a {\n    subject exe "/usr/bin/a"\n    allow file read "/etc/a"\n}\n')
    work = tmp_path / "work"   # no policyc.toml or pyproject.toml at or above it
    work.mkdir()
    if any((d / n).exists() for d in (work, *work.parents) for n in ("policyc.toml", "pyproject.toml")):
        pytest.skip("a configuration file above the temporary directory")
    code = (f"import sys\nsys.argv = ['policyc', 'check', {str(p)!r}]\nfrom policyc.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n")
    env = {**os.environ, "POLICYC_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    runs = []
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", code + "\nprint('\\n'.join(sys.modules))"],
                           capture_output=True, text=True, cwd=work, env=env)
        assert r.returncode == 0, r.stderr
        runs.append(set(r.stdout.split()))
    first, second, third = runs
    assert "lark" in first and "lark" in second   # no standalone parser yet: Lark, which writes it
    assert "policyc.parse" in third
    unwanted = {"lark", "importlib.resources", "tomllib", "json", "hashlib"}
    assert not third & unwanted, sorted(third & unwanted)
