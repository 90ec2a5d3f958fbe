"""`policyc build` of unchanged inputs leaves its outputs as they are, without lowering anything
(#12: an unchanged rebuild under 0.15 s): policyc/cli/build.py, `up_to_date`. Any change to a
source file, an include, an absent file the program would read, a template, policyc, the
options or the outputs themselves builds again."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from policyc import codegen
from policyc.cli import build as B

ROOT = Path(__file__).resolve().parents[2]

MAIN = """include "inc/base.policy"
include? "local.policy"

policy app {
    subject exe "/usr/bin/app"
    default deny
    use base
    allow file read "/etc/app/**"
}
"""
BASE = """ruleset base {
    allow file read "/usr/lib/**"
}
"""
OTHER = """policy other {
    subject exe "/usr/bin/other"
    default allow
    deny exec "/usr/bin/curl"
}
"""


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A program of two files and an include, in the current directory; objects made without
    clang (the object stands for its C); the build's digest of policyc recomputed per test."""
    monkeypatch.chdir(tmp_path)
    Path("app.policy").write_text(MAIN)
    Path("inc").mkdir()
    Path("inc/base.policy").write_text(BASE)
    Path("other.policy").write_text(OTHER)
    monkeypatch.setattr(codegen, "compile_c", lambda c, name: b"\x7fELF" + codegen.object_key(c).encode())
    monkeypatch.setattr(B, "_TOOLS_DIGEST", None)
    return tmp_path


def build(*args: str, paths=("app.policy", "other.policy"), out="out") -> tuple[int, str, str]:
    o, e = io.StringIO(), io.StringIO()
    names = [a for a in args if not a.startswith("--")]
    opts = dict(a.removeprefix("--").split("=", 1) for a in args if a.startswith("--"))
    code = B.run_build(list(paths), out, names or None, "emit_c" in opts, o, e, kernel=opts.get("kernel"),
                       ringbuf_size=opts.get("ringbuf"))
    return code, o.getvalue(), e.getvalue()


def outputs(out="out") -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(Path(out).iterdir())}


def unchanged(res) -> bool:
    code, out, _ = res
    assert code == 0, res
    lines = out.splitlines()
    assert lines and all(line.startswith(("unchanged ", "built ", "removed ")) for line in lines), out
    if all(line.startswith("unchanged ") for line in lines if not line.startswith("removed ")):
        return True
    assert all(line.startswith("built ") for line in lines if not line.startswith("removed ")), out
    return False


def test_an_unchanged_build_leaves_the_outputs_and_lowers_nothing(tree, monkeypatch):
    first = build()
    assert not unchanged(first)
    before = outputs()
    assert sorted(before) == ["app.bpf.o", "app.manifest.json", "app.maps", "other.bpf.o", "other.manifest.json",
                              "other.maps"]
    import policyc.lower
    import policyc.pipeline

    def refuse(*a, **k):
        raise AssertionError("the front end ran")
    monkeypatch.setattr(policyc.lower, "load_program", refuse)
    monkeypatch.setattr(policyc.pipeline, "front_end", refuse)
    res = build()
    assert unchanged(res) and outputs() == before
    expected = ""
    for name in ("app", "other"):
        m = json.loads(Path(f"out/{name}.manifest.json").read_text())
        expected += (f"unchanged out/{name}.bpf.o and {name}.manifest.json ({m['rules_at']['count']} rules, hooks: "
                     f"{', '.join(m['hooks'])})\n")
    assert res[1] == expected and "(2 rules" in expected


def test_the_manifest_notes_the_build(tree):
    build()
    m = json.loads(Path("out/app.manifest.json").read_text())
    b = m["build"]
    assert b["key"] == B.build_key(["app.policy", "other.policy"], None, codegen.DEFAULT_RINGBUF_BYTES)
    assert b["policies"] == ["app", "other"]
    assert b["absent"] == ["app.policy.test", "inc/base.policy.test", "local.policy", "other.policy.test"]
    c = codegen.render_c(m["families"], True, False)
    assert b["object_key"] == codegen.object_key(c) and Path("out/app.bpf.o").read_bytes().endswith(b["object_key"].encode())
    assert set(m["inputs"]) == {"app.policy", "inc/base.policy", "other.policy"}


@pytest.mark.parametrize("change", [
    "source", "include", "optional include appears", "test file appears", "new file in a directory",
    "object changed", "object removed", "manifest removed", "other order", "maps changed", "maps removed",
    "other maps removed",
])
def test_a_change_of_the_inputs_or_outputs_builds_again(tree, change):
    paths = ("app.policy", "other.policy")
    if change == "new file in a directory":
        Path("more").mkdir()
        shutil.move("other.policy", "more/other.policy")
        paths = ("app.policy", "more")
    assert not unchanged(build(paths=paths))
    assert unchanged(build(paths=paths))
    if change == "source":
        Path("other.policy").write_text(OTHER.replace("curl", "wget"))
    elif change == "include":
        Path("inc/base.policy").write_text(BASE.replace("/usr/lib/**", "/usr/lib64/**"))
    elif change == "optional include appears":
        Path("local.policy").write_text("let x = \"/srv\"\n")
    elif change == "test file appears":
        Path("app.policy.test").write_text("test app {\n    expect allow file read \"/etc/app/x\"\n}\n")
    elif change == "new file in a directory":
        Path("more/third.policy").write_text(OTHER.replace("other", "third"))
    elif change == "object changed":
        Path("out/app.bpf.o").write_bytes(b"\x7fELF tampered")
    elif change == "object removed":
        Path("out/other.bpf.o").unlink()
    elif change == "manifest removed":
        Path("out/app.manifest.json").unlink()
    elif change == "maps changed":   # the same length, one byte flipped: only its sha256 tells
        blob = bytearray(Path("out/app.maps").read_bytes())
        blob[-1] ^= 1
        Path("out/app.maps").write_bytes(bytes(blob))
    elif change == "maps removed":
        Path("out/app.maps").unlink()
    elif change == "other maps removed":
        Path("out/other.maps").unlink()
    elif change == "other order":
        paths = paths[::-1]
    res = build(paths=paths)
    assert not unchanged(res)
    assert unchanged(build(paths=paths))   # and then it is unchanged again


def test_a_named_file_the_recorded_build_did_not_read_builds_again(tree):
    """The key holds the files named as listed when the note was written; a file that came
    into a named directory between the front end's reading and that listing was not read."""
    Path("more").mkdir()
    shutil.move("other.policy", "more/other.policy")
    build(paths=("app.policy", "more"))
    Path("more/late.policy").write_text(OTHER.replace("other", "late"))
    m = json.loads(Path("out/app.manifest.json").read_text())
    key = B.build_key(["app.policy", "more/late.policy", "more/other.policy"], None, codegen.DEFAULT_RINGBUF_BYTES)
    for name in ("app", "other"):
        path = Path(f"out/{name}.manifest.json")
        m = json.loads(path.read_text())
        m["build"]["key"] = key
        path.write_text(json.dumps(m))
    assert B.up_to_date(["app.policy", "more"], Path("out"), None, io.StringIO(), io.StringIO()) is None


def test_whitespace_only_edit_builds_again(tree):
    """Exact: any byte of a source file, even one that changes no rule (rule locations would)."""
    build()
    Path("app.policy").write_text("\n" + MAIN)
    assert not unchanged(build())


@pytest.mark.parametrize("option", ["--ringbuf=8M", "--kernel=6.12", "--emit_c=1"])
def test_a_change_of_the_options_builds_again(tree, option):
    build()
    assert not unchanged(build(option))
    if option != "--emit_c=1":   # --emit-c always builds (it writes the C)
        assert unchanged(build(option))
        assert not unchanged(build())


def test_a_kernel_facts_file_is_part_of_the_key(tree):
    facts = ROOT / "policyc" / "kernels" / "6.12.json"
    shutil.copy(facts, "facts.json")
    build("--kernel=facts.json")
    assert unchanged(build("--kernel=facts.json"))
    data = json.loads(Path("facts.json").read_text())
    Path("facts.json").write_text(json.dumps(data, indent=2))
    assert not unchanged(build("--kernel=facts.json"))


def test_a_template_change_builds_again(tree, tmp_path, monkeypatch):
    from policyc import resources

    build()
    assert unchanged(build())
    templates = tmp_path / "templates-copy"
    shutil.copytree(resources.resource_dir("templates"), templates)
    real = resources.resource_dir
    monkeypatch.setattr(resources, "resource_dir", lambda name: templates if name == "templates" else real(name))
    monkeypatch.setattr(B, "_TOOLS_DIGEST", None)
    assert unchanged(build())                   # the same templates elsewhere: the same digest
    (templates / "common" / "policy.h").write_text((templates / "common" / "policy.h").read_text() + "\n")
    monkeypatch.setattr(B, "_TOOLS_DIGEST", None)
    assert not unchanged(build())


def test_a_policyc_version_or_code_change_builds_again(tree, tmp_path, monkeypatch):
    from policyc.resources import resource_dir

    build()
    monkeypatch.setattr(B, "__version__", "99.0.0")
    monkeypatch.setattr(B, "_TOOLS_DIGEST", None)
    assert B.up_to_date(["app.policy", "other.policy"], Path("out"), None, io.StringIO(), io.StringIO()) is None
    monkeypatch.undo()
    package = Path(B.__file__).resolve().parents[1]
    assert B.tool_roots()[0] == package
    assert {resource_dir(n).resolve() for n in ("grammar", "templates", "kernels")} <= \
        {r for r in B.tool_roots()} | {d for d in package.iterdir() if d.is_dir()}
    copy = tmp_path / "pkg"
    shutil.copytree(package, copy / "policyc", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(B, "tool_roots", lambda: [copy])
    monkeypatch.setattr(B, "_TOOLS_DIGEST", None)
    digest = B.tools_digest()
    (copy / "policyc" / "codegen" / "tables.py").write_text((package / "codegen" / "tables.py").read_text() + "\n")
    monkeypatch.setattr(B, "_TOOLS_DIGEST", None)
    assert B.tools_digest() != digest            # any module of policyc, version bumped or not


def test_selecting_policies_uses_their_manifests(tree):
    build()
    code, out, _ = build("other")
    assert code == 0 and out.startswith("unchanged out/other.bpf.o") and "app" not in out
    Path("app.policy").write_text(MAIN.replace("/etc/app/**", "/etc/app2/**"))
    assert not unchanged(build("other"))        # app.policy is an input of every policy's manifest
    code, _, err = build("nosuch")
    assert code == 2 and "no policy named `nosuch`" in err


def test_stale_outputs_still_go_and_diagnostics_are_printed_again(tree):
    Path("other.policy").write_text(OTHER + OTHER.replace("other", "gone"))
    build()
    assert Path("out/gone.manifest.json").exists()
    Path("other.policy").write_text(OTHER)
    _, _, err_full = build()
    assert not Path("out/gone.manifest.json").exists() and not Path("out/gone.maps").exists()
    # an unchanged build prunes too: outputs of a policy the program lost, left by hand
    shutil.copy("out/other.manifest.json", "out/gone.manifest.json")
    m = json.loads(Path("out/gone.manifest.json").read_text())
    shutil.copy("out/other.maps", "out/gone.maps")
    m.update(policy="gone", object="gone.bpf.o", maps_file="gone.maps")
    Path("out/gone.manifest.json").write_text(json.dumps(m))
    res = build()
    assert unchanged(res) and "removed out/gone.manifest.json" in res[1] and "removed out/gone.maps" in res[1]
    assert not Path("out/gone.manifest.json").exists() and not Path("out/gone.maps").exists()
    assert Path("out/other.maps").exists()


def test_warnings_are_printed_again(tree):
    Path("other.policy").write_text(OTHER.replace('deny exec "/usr/bin/curl"',
                                                  'deny exec "/usr/bin/curl"\n    deny exec "/usr/bin/curl"'))
    code, out, err = build()
    assert code == 0 and "warning" in err and out.startswith("built")
    code, out, err2 = build()
    assert unchanged((code, out, err2)) and err2 == err


def test_stdin_is_never_short_cut(tree, monkeypatch):
    assert B.command_files(["-"]) is None
    assert B.command_files(["app.policy", "-"]) is None


def test_command_files_are_the_front_ends(tree):
    from policyc.diagnostics import Diagnostics
    from policyc.lower.sources import expand_paths

    Path("d/e").mkdir(parents=True)
    for f in ("d/b.policy", "d/e/a.policy", "d/x.policy.test", "d/notes.txt"):
        Path(f).write_text("")
    for paths in (["app.policy", "d"], ["d", "./app.policy"], ["d/e"]):
        assert B.command_files(paths) == expand_paths(paths, Diagnostics())
    Path("empty").mkdir()
    assert B.command_files(["empty"]) is None   # the build reports it (P006)


def test_absent_paths_follow_the_includes_the_front_end_skipped():
    sources = {"a.policy": 'include? "x/y.policy"  # include? "z.policy"\n'
                           'include?  # a comment\n  "w\\\\v.policy"\ninclude "i.policy"\n',
               "i.policy": "", "i.policy.test": "", "t.policy.test": ""}
    assert B.absent_paths(sources) == sorted(["a.policy.test", "x/y.policy", "z.policy", "w\\v.policy",
                                              "t.policy"])


def test_a_fifo_input_is_never_read(tree):
    build()
    os.unlink("inc/base.policy")
    os.mkfifo("inc/base.policy")
    assert B.up_to_date(["app.policy", "other.policy"], Path("out"), None, io.StringIO(), io.StringIO()) is None


def test_the_short_cut_imports_neither_the_front_end_nor_the_code_generator(tmp_path):
    """What keeps an unchanged rebuild near the interpreter's start-up."""
    (tmp_path / "p.policy").write_text(OTHER)
    env = {**os.environ, "POLICYC_CACHE": str(tmp_path / "cache")}
    run = [sys.executable, "-m", "policyc", "build", "p.policy", "-o", "out"]
    r = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("built"), r.stderr
    code = ("import sys\nsys.argv = ['policyc', 'build', 'p.policy', '-o', 'out']\n"
            "from policyc.cli.main import main\ntry:\n    main()\nexcept SystemExit as e:\n    assert not e.code\n"
            "heavy = [m for m in ('lark', 'jinja2', 'policyc.pipeline', 'policyc.codegen', 'policyc.lower')"
            " if m in sys.modules]\nassert not heavy, heavy\n")
    for _ in range(3):   # policyc's files edited in between (a working tree being edited) build again
        r = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        if r.stdout.startswith("unchanged "):
            break
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("unchanged out/other.bpf.o"), r.stdout + r.stderr
