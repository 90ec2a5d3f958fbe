"""`-p` means one thing across commands (#13, "One CLI grammar"; docs/cli.md, "`-p`"): a
policy, by name (`--policy NAME`) or by file (`--policy-file PATH`), one rule in `build`,
`load` and `exec`. The command lines written when `-p` was `--policy` in build/load and
`--policy-file` in exec keep their meaning. Nothing here touches a kernel: `load` and `exec`
stop where they would (their kernel steps are replaced)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from policyc import codegen
from policyc.cli import common, exec_cmd, kernel_common
from policyc.cli import load as load_cmd
from policyc.cli.main import app

TWO = """\
policy a {
    subject exe "/usr/bin/a"
    default deny
    allow file read "/etc/a"
}
policy b {
    subject exe "/usr/bin/b"
    default deny
    allow file read "/etc/b"
}
"""
ONE = TWO.split("policy b")[0].replace("policy a", "policy c").replace("/a", "/c")


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """two.policy (a, b) and c.policy (c) in the working directory; objects made without clang."""
    monkeypatch.chdir(tmp_path)
    Path("two.policy").write_text(TWO)
    Path("c.policy").write_text(ONE)
    monkeypatch.setattr(codegen, "compile_c", lambda c, name: b"\x7fELF" + codegen.object_key(c).encode())
    return tmp_path


def built(out="out") -> list[str]:
    return sorted(p.name.removesuffix(".manifest.json") for p in Path(out).glob("*.manifest.json"))


def run(*argv: str):
    return CliRunner().invoke(app, list(argv))


# ---- the rule ----------------------------------------------------------------------------------
def test_the_rule_splits_values_into_names_and_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("out").mkdir()
    Path("sshd").write_text("")
    asked = []

    def names_in(paths):
        asked.append(list(paths))
        return {"sshd"}

    err = io.StringIO()
    # not a name -> a file (existing or not); a name that is no path -> a name: nothing read
    assert common.resolve_dash_p(["x.policy", "./sshd", "dir/", "nginx"], ["src/"], err, names_in) \
        == (["nginx"], ["x.policy", "./sshd", "dir/"])
    assert asked == [] and err.getvalue() == ""
    # a name that is also a path: the name when the inputs hold it (said), else the file
    assert common.resolve_dash_p(["sshd", "out"], ["src/"], err, names_in) == (["sshd"], ["out"])
    assert asked == [["src/"]]
    assert "policyc: warning: -p sshd: the policy named `sshd`" in err.getvalue()
    assert "-p ./sshd or --policy-file sshd" in err.getvalue() and "`out`" not in err.getvalue()
    # with no input at all there is nothing to hold a name: the path
    asked.clear()
    assert common.resolve_dash_p(["sshd"], [], io.StringIO(), names_in) == ([], ["sshd"])
    assert asked == []


def test_policy_names_in_reads_sources_and_build_directories(tree):
    out = tree / "built"
    assert run("build", "two.policy", "-o", str(out)).exit_code == 0
    assert common.policy_names_in([str(out), "c.policy"]) == {"a", "b", "c"}
    assert common.policy_names_in([str(out / "a.manifest.json")]) == {"a"}
    assert common.policy_names_in(["missing.policy"]) == set()


# ---- build -------------------------------------------------------------------------------------
def test_build_dash_p_name_still_selects(tree):
    r = run("build", "two.policy", "-o", "out", "-p", "b")
    assert r.exit_code == 0, r.output
    assert built() == ["b"]
    r = run("build", "two.policy", "-o", "out2", "--policy", "a")
    assert r.exit_code == 0 and built("out2") == ["a"]


def test_build_dash_p_file_is_an_input(tree):
    r = run("build", "-o", "out", "-p", "c.policy")     # no PATH: the -p file is the input
    assert r.exit_code == 0, r.output
    assert built() == ["c"]
    r = run("build", "-o", "out2", "--policy-file", "two.policy")
    assert r.exit_code == 0 and built("out2") == ["a", "b"]
    # files are inputs, names select: c.policy read too, `a` the one built
    r = run("build", "c.policy", "-o", "out3", "-p", "two.policy", "-p", "a")
    assert r.exit_code == 0, r.output
    assert built("out3") == ["a"]


def test_build_dash_p_name_that_is_also_a_path_is_the_name_with_a_warning(tree):
    Path("a").write_text("not a policy")
    r = run("build", "two.policy", "-o", "out", "-p", "a")
    assert r.exit_code == 0, r.output
    assert built() == ["a"]
    assert "policyc: warning: -p a: the policy named `a`, not the path `a` here" in r.output
    # the path spelled as one is read as the file (and is no policy: an error)
    r = run("build", "two.policy", "-o", "out2", "-p", "./a")
    assert r.exit_code == 2 and not Path("out2").exists()


def test_build_dash_p_unknown_name_and_no_input(tree):
    r = run("build", "two.policy", "-o", "out", "-p", "nosuch")
    assert r.exit_code == 2 and "no policy named `nosuch`" in r.output
    r = run("build", "-o", "out")
    assert r.exit_code == 64 and "policyc: error: name the policies" in r.output


# ---- exec --------------------------------------------------------------------------------------
@pytest.fixture
def exec_seen(monkeypatch):
    """exec's inputs and names, as it hands them to manifests_for; nothing runs."""
    seen = []

    def manifests_for(paths, names, out, err):
        seen.append((list(paths), names))
        return 0, [Path("m.manifest.json")]

    monkeypatch.setattr(exec_cmd, "manifests_for", manifests_for)
    monkeypatch.setattr(exec_cmd, "run_command", lambda manifest, argv, err, json_events=False: 0)
    return seen


@pytest.mark.parametrize("argv, expect", [
    (["-p", "ci.policy"], (["ci.policy"], None)),                          # as before: a file
    (["-p", "out", "--policy", "ci"], (["out"], ["ci"])),                   # as before: a build dir, a name
    (["--policy-file", "out", "--policy", "ci"], (["out"], ["ci"])),        # as before
    (["--policy-file", "out", "-p", "ci"], (["out"], ["ci"])),              # -p a name, as in build
    (["-p", "ci.policy", "-p", "ci"], (["ci.policy"], ["ci"])),             # a file and a name
])
def test_exec_dash_p_is_a_policy_by_file_or_name(argv, expect, tmp_path, monkeypatch, exec_seen):
    monkeypatch.chdir(tmp_path)
    Path("out").mkdir()
    r = run("exec", *argv, "--", "true")
    assert r.exit_code == 0, r.output
    assert exec_seen == [expect]


def test_exec_without_a_policy_is_a_usage_error(exec_seen):
    r = run("exec", "--", "true")
    assert r.exit_code == 64 and "policyc: error: name the policy's file" in r.output
    r = run("exec", "-p", "nosuch", "--", "true")      # a name, and no file to find it in
    assert r.exit_code == 64 and exec_seen == []


def test_exec_names_every_file_that_holds_several(tmp_path, monkeypatch):
    monkeypatch.setattr(exec_cmd, "manifests_for", lambda paths, names, out, err: (0, [Path("a"), Path("b")]))
    err = io.StringIO()
    assert exec_cmd.run_exec(None, None, ["true"], False, io.StringIO(), err, dash_p=["x.policy"]) == 2
    assert "`x.policy` holds 2 policies; choose one with --policy NAME" in err.getvalue()


# ---- load --------------------------------------------------------------------------------------
@pytest.fixture
def loads(monkeypatch):
    """What load would load, in order; the kernel is never asked."""
    loaded = []
    monkeypatch.setattr(load_cmd, "check_kernel", lambda: None)
    monkeypatch.setattr(load_cmd, "load_manifest", lambda m, replace, adopt: loaded.append(m.name) or
                        SimpleNamespace(name=m.name, links=[], pin_dir="/x", replaced=False))
    monkeypatch.setattr(load_cmd, "read_manifest", lambda m: {"policy": m.name, "mode": "enforce", "rules": []})
    return loaded


def test_load_dash_p_name_and_file(tree, loads):
    assert run("build", "two.policy", "-o", "out").exit_code == 0
    r = run("load", "out", "-p", "b", "--no-adopt")                 # as before: a name
    assert r.exit_code == 0, r.output
    assert loads == ["b.manifest.json"]
    loads.clear()
    r = run("load", "-p", "out/", "--no-adopt")                     # a build directory, by -p
    assert r.exit_code == 0 and loads == ["a.manifest.json", "b.manifest.json"], r.output
    loads.clear()
    r = run("load", "--policy-file", "out", "--policy", "a", "--no-adopt")
    assert r.exit_code == 0 and loads == ["a.manifest.json"], r.output


def test_load_a_name_no_input_holds_is_an_error_not_nothing_loaded(tree, loads):
    """A name matched by no manifest used to load nothing, and exit 0."""
    assert run("build", "two.policy", "-o", "out").exit_code == 0
    r = run("load", "out", "-p", "nosuch", "--no-adopt")
    assert r.exit_code == 2 and "no policy named `nosuch`" in r.output and loads == []


def test_manifests_for_finds_a_name_in_a_build_directory_beside_sources(tree):
    """`load out/ c.policy -p a`: `a` is out/'s; c.policy is not built for it (it used to be
    built with `-p a`, and refused: no policy named `a`)."""
    assert run("build", "two.policy", "-o", "out").exit_code == 0
    err = io.StringIO()
    code, manifests = kernel_common.manifests_for(["out", "c.policy"], ["a"], io.StringIO(), err)
    assert code == 0, err.getvalue()
    assert [m.name for m in manifests] == ["a.manifest.json"]
    code, manifests = kernel_common.manifests_for(["out", "c.policy"], ["a", "c"], io.StringIO(), err,
                                                  build_dir=str(tree / "tmp"))
    assert code == 0 and [m.name for m in manifests] == ["a.manifest.json", "c.manifest.json"], err.getvalue()


# ---- every command that has -p ----------------------------------------------------------------
def test_dash_p_is_one_option_wherever_it_exists():
    """-p is its own option (metavar POLICY, the same help) in every command that has it, and
    beside it the two long options it stands for."""
    import typer

    from policyc.cli.main import COMMANDS

    group = typer.main.get_command(app)
    ctx = typer.Context(group, info_name="policyc")
    seen = {}
    for name in [*COMMANDS, "vm"]:
        params = group.get_command(ctx, name).params
        for param in params:
            if "-p" in getattr(param, "opts", ()):
                assert param.opts == ["-p"] and param.metavar == "POLICY" and param.multiple, name
                assert param.help == common.DASH_P_HELP
                longs = {o for p in params for o in getattr(p, "opts", ())}
                seen[name] = {"--policy", "--policy-file"} <= longs
    assert seen == {"build": True, "load": True, "exec": True}
