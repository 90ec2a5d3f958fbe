"""`policyc load --sync DIR [--prune]` (policyc/sync.py) and a build directory that holds only
its last build (policyc/cli/build.py): the plan on fake loaded states, the load record, and the
whole sync against a fake kernel (the runtime's load/unload replaced: this host refuses BPF
LSM; tests/kernel/test_host_ops.py does it for real)."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from policyc import deploy, runtime
from policyc import sync as S
from policyc.cli.build import compile_program, stale_outputs
from policyc.cli.load import run_load
from policyc.cli.main import app

POL = ('policy {name} {{\n    subject exe "/usr/bin/{name}"\n    default allow\n'
       '    deny file read "/etc/{name}-secret"\n{extra}}}\n')


def source(d: Path, name: str, extra: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{name}.policy"
    p.write_text(POL.format(name=name, extra=extra))
    return p


def build(src: Path, out: Path, names=None, record: bool = False) -> list:
    err = io.StringIO()
    code, results = compile_program([str(src)], out, names, False, io.StringIO(), err, quiet=True, record=record)
    assert code == 0, err.getvalue()
    return results


# ---- a fake kernel ---------------------------------------------------------------------------------

class FakeKernel:
    """runtime.load/unload on a plain directory standing for the pin root; deploy's own code
    (load_manifest, the load record, status, present_now) runs unchanged on top."""

    def __init__(self, tmp_path: Path, monkeypatch):
        self.pins = tmp_path / "pins"
        self.pins.mkdir()
        self.calls: list[tuple[str, str]] = []
        self.refuse: dict[str, str] = {}
        monkeypatch.setattr(deploy, "PIN_ROOT", str(self.pins))
        monkeypatch.setenv("POLICYC_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.setattr(deploy, "check_kernel", lambda: None)
        monkeypatch.setattr(deploy.runtime, "load", self.load)
        monkeypatch.setattr(deploy.runtime, "unload", self.unload)
        monkeypatch.setattr(deploy.runtime, "map_info", self.no_bpf)
        monkeypatch.setattr(deploy.runtime, "read_map", self.no_bpf)

    @staticmethod
    def no_bpf(*a, **k):
        raise runtime.BpfError("no bpf(2) in unit tests")

    def load(self, obj, name, fills, pin_root, replace=False, shared=()):
        assert pin_root == str(self.pins)
        if name in self.refuse:
            raise runtime.BpfError(self.refuse[name], "-- BEGIN PROG LOAD LOG --\nR1 invalid\n-- END PROG LOAD LOG --")
        d = self.pins / name
        if d.exists() and not replace:
            raise runtime.BpfError(f"policy `{name}` is already loaded")
        (d / "links").mkdir(parents=True, exist_ok=True)
        (d / "maps").mkdir(exist_ok=True)
        (d / "links" / "policyc_file_open").write_text(Path(obj).read_bytes().hex()[:64])
        (d / "maps" / "counters").touch()
        self.calls.append(("replace" if replace and d.exists() else "load", name))
        return runtime.LoadedPolicy(name, str(d), {"policyc_file_open": str(d / "links/policyc_file_open")},
                                    {"counters": str(d / "maps/counters")}, replaced=replace)

    def unload(self, name, pin_root):
        shutil.rmtree(self.pins / name)
        self.calls.append(("unload", name))

    def sync(self, build_dir: Path, prune: bool = False) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = run_load([], None, False, out, err, sync=str(build_dir), prune=prune)
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    return FakeKernel(tmp_path, monkeypatch)


# ---- the plan --------------------------------------------------------------------------------------

def W(name, m="m1", o="o1", error=None):
    return S.Wanted(name, Path(f"/b/{name}.manifest.json"), m, o, error)


def P(name, m="m1", o="o1", session=False, pins_ok=True):
    return S.Present(name, m, o, session, pins_ok)


def actions(steps):
    return [(s.action, s.name, s.reason) for s in steps]


def test_plan_loads_new_leaves_same_replaces_changed():
    steps = S.plan([W("a"), W("b"), W("c", o="o2"), W("d", m="m2")], [P("b"), P("c"), P("d")], prune=False)
    assert actions(steps) == [("load", "a", ""), ("unchanged", "b", ""), ("replace", "c", "object changed"),
                              ("replace", "d", "manifest changed")]


def test_plan_replaces_what_it_cannot_vouch_for():
    steps = S.plan([W("a"), W("b")], [P("a", m=None, o=None), P("b", pins_ok=False)], prune=False)
    assert actions(steps) == [("replace", "a", "no load record: loaded by an earlier policyc"),
                              ("replace", "b", "its pins are incomplete")]


def test_plan_unloads_only_with_prune_and_never_a_session_and_unloads_last():
    present = [P("old"), P("a"), P("nginx-exec-4242", session=True)]
    assert actions(S.plan([W("z"), W("a")], present, prune=False)) == [
        ("load", "z", ""), ("unchanged", "a", ""), ("keep", "old", "")]
    assert actions(S.plan([W("z"), W("a")], present, prune=True)) == [
        ("load", "z", ""), ("unchanged", "a", ""), ("unload", "old", "")]


def test_plan_reports_a_policy_that_cannot_be_loaded_and_keeps_it_loaded():
    steps = S.plan([W("a", error="object missing"), W("b")], [P("a")], prune=True)
    assert actions(steps) == [("fail", "a", "object missing"), ("load", "b", "")]


def test_apply_keeps_going_reports_each_failure_and_exits_1():
    steps = [S.Step("load", "a", Path("/b/a.manifest.json")), S.Step("load", "bad", Path("/b/bad.manifest.json")),
             S.Step("fail", "worse", reason="cannot read manifest"), S.Step("replace", "c", Path("/b/c.manifest.json"), "object changed"),
             S.Step("unload", "gone")]
    done = []

    def load(path, replace):
        if "bad" in str(path):
            raise deploy.DeployError("loading policy `bad` failed: EINVAL", detail="verifier says no", hint="h")
        done.append((path.name, replace))

    out, err = io.StringIO(), io.StringIO()
    res = S.apply(steps, Path("/b"), out, err, load=load, unload=lambda n: done.append(n))
    assert res.code == 1
    assert done == [("a.manifest.json", False), ("c.manifest.json", True), "gone"]
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("loaded a (") and lines[1].startswith("replaced c (object changed")
    assert lines[2] == "unloaded gone (not in /b)"
    assert lines[3] == "sync: 1 loaded, 1 replaced, 1 unloaded, 2 failed"
    e = err.getvalue()
    assert "failed bad: loading policy `bad` failed: EINVAL" in e and "verifier says no" in e
    assert "failed worse: cannot read manifest" in e


def test_apply_with_nothing_to_do_says_so():
    out = io.StringIO()
    res = S.apply([S.Step("unchanged", "a"), S.Step("unchanged", "b"), S.Step("keep", "x")], Path("/b"), out,
                  io.StringIO(), load=None, unload=None)
    assert res.code == 0
    assert out.getvalue().splitlines() == ["unchanged a", "unchanged b", "kept x (not in /b; --prune unloads it)",
                                           "nothing to do: 2 policies up to date"]


# ---- what a build directory holds ---------------------------------------------------------------------

def test_wanted_hashes_what_a_build_holds_and_names_what_is_wrong(tmp_path):
    for n in ("a", "b", "c", "d"):
        source(tmp_path / "src", n)
    build(tmp_path / "src", tmp_path / "out")
    out = tmp_path / "out"
    (out / "b.bpf.o").write_bytes(b"\x7fELF not the object")         # not what b's manifest was built with
    (out / "c.bpf.o").unlink()
    (out / "d.manifest.json").write_text("{not json")
    (out / "z.manifest.json").write_text(json.dumps({"format": 2}))
    w = {x.name: x for x in S.wanted_in(out)}
    assert w["a"].error is None
    assert w["a"].manifest_digest == deploy.manifest_digest(json.loads((out / "a.manifest.json").read_text()))
    assert w["a"].object_sha256 == deploy.file_sha256(out / "a.bpf.o") == json.loads(
        (out / "a.manifest.json").read_text())["object_sha256"]
    assert "is not the one `b.manifest.json` was built with" in w["b"].error
    assert "c.bpf.o" in w["c"].error and "cannot be read" in w["c"].error
    assert "cannot read manifest" in w["d"].error
    assert "not a policyc manifest" in w["z"].error


def test_wanted_keeps_program_order(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.policy").write_text(POL.format(name="zeta", extra="") + POL.format(name="alpha", extra=""))
    build(src, tmp_path / "out")
    assert [w.name for w in S.wanted_in(tmp_path / "out")] == ["zeta", "alpha"]


# ---- the whole sync, on a fake kernel ------------------------------------------------------------------

def test_sync_loads_then_changes_nothing(kernel, tmp_path):
    for n in ("a", "b"):
        source(tmp_path / "src", n)
    build(tmp_path / "src", tmp_path / "out")
    code, out, err = kernel.sync(tmp_path / "out")
    assert code == 0, err
    assert [ln.split(" (")[0] for ln in out.splitlines()] == ["loaded a", "loaded b", "sync: 2 loaded"]
    assert kernel.calls == [("load", "a"), ("load", "b")]
    code, out, err = kernel.sync(tmp_path / "out")
    assert (code, err) == (0, "")
    assert out.splitlines() == ["unchanged a", "unchanged b", "nothing to do: 2 policies up to date"]
    # a rebuild of the same sources is byte-identical: still nothing to do
    build(tmp_path / "src", tmp_path / "out")
    assert kernel.sync(tmp_path / "out")[1].endswith("nothing to do: 2 policies up to date\n")
    assert kernel.calls == [("load", "a"), ("load", "b")]


def test_a_policy_removed_from_the_sources_leaves_the_others_unchanged(kernel, tmp_path):
    # every manifest of a build records the whole program (inputs, program_order, build):
    # what the kernel holds of `a` did not change when `b` went
    for n in ("a", "b"):
        source(tmp_path / "src", n)
    build(tmp_path / "src", tmp_path / "out", record=True)   # as `policyc build` does
    before = json.loads((tmp_path / "out/a.manifest.json").read_text())
    assert before["build"]["policies"] == ["a", "b"]
    assert kernel.sync(tmp_path / "out")[0] == 0
    (tmp_path / "src/b.policy").unlink()
    build(tmp_path / "src", tmp_path / "out", record=True)
    after = json.loads((tmp_path / "out/a.manifest.json").read_text())
    assert after != before and deploy.manifest_digest(after) == deploy.manifest_digest(before)
    code, out, err = kernel.sync(tmp_path / "out")
    assert (code, err) == (0, "")
    assert [ln.split(" (")[0] for ln in out.splitlines()] == ["unchanged a", "kept b",
                                                              "nothing to do: 1 policy up to date"]


def test_sync_replaces_a_changed_policy_and_keeps_its_counters_start(kernel, tmp_path, monkeypatch):
    source(tmp_path / "src", "a")
    source(tmp_path / "src", "b")
    build(tmp_path / "src", tmp_path / "out")
    clock = iter([1000.0, 1000.0, 2000.0, 3000.0])
    monkeypatch.setattr(deploy.time, "time", lambda: next(clock))
    assert kernel.sync(tmp_path / "out")[0] == 0
    first = deploy.load_info("a")
    assert first["loaded_at"] == first["counters_since"] == 1000.0
    # a new rule of a family the policy has: the object is the same, the map data is not
    source(tmp_path / "src", "a", '    deny file write "/etc/a-other"\n')
    build(tmp_path / "src", tmp_path / "out")
    code, out, _ = kernel.sync(tmp_path / "out")
    assert code == 0
    assert out.splitlines()[0].startswith("replaced a (manifest changed;")
    assert out.splitlines()[1] == "unchanged b"
    info = deploy.load_info("a")
    assert info["loaded_at"] == 2000.0 and info["counters_since"] == 1000.0    # counters map reused
    assert info["manifest_digest"] == deploy.manifest_digest(json.loads((tmp_path / "out/a.manifest.json").read_text()))
    # a rule of a new family: a new object
    source(tmp_path / "src", "a", '    deny exec "/usr/bin/curl"\n')
    build(tmp_path / "src", tmp_path / "out")
    assert kernel.sync(tmp_path / "out")[1].splitlines()[0].startswith("replaced a (object changed;")
    assert kernel.calls[-1] == ("replace", "a")


def test_editing_or_adding_one_policy_leaves_the_others_unchanged(kernel, tmp_path):
    """Every manifest of a program lists all its sources' hashes, and a policy added before
    another moves it in program order: neither is what the kernel runs."""
    src = tmp_path / "src"
    source(src, "b")
    source(src, "c")
    build(src, tmp_path / "out")
    assert kernel.sync(tmp_path / "out")[0] == 0
    source(src, "a")                                   # sorts first: b and c move
    source(src, "c", '    deny file write "/etc/c-other"\n')
    build(src, tmp_path / "out")
    assert json.loads((tmp_path / "out/b.manifest.json").read_text())["program_order"] == 1
    code, out, _ = kernel.sync(tmp_path / "out")
    assert code == 0
    assert [ln.split(" (")[0] for ln in out.splitlines()] == ["loaded a", "unchanged b", "replaced c",
                                                              "sync: 1 loaded, 1 replaced, 1 unchanged"]


def test_sync_of_a_deleted_policy_keeps_it_until_prune(kernel, tmp_path):
    for n in ("a", "b"):
        source(tmp_path / "src", n)
    build(tmp_path / "src", tmp_path / "out")
    assert kernel.sync(tmp_path / "out")[0] == 0
    (tmp_path / "src/b.policy").unlink()
    build(tmp_path / "src", tmp_path / "out")          # the build removes b's outputs
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.bpf.o", "a.manifest.json", "a.maps"]
    code, out, _ = kernel.sync(tmp_path / "out")
    assert code == 0 and f"kept b (not in {tmp_path / 'out'}; --prune unloads it)" in out
    assert (kernel.pins / "b").is_dir()
    code, out, _ = kernel.sync(tmp_path / "out", prune=True)
    assert code == 0 and f"unloaded b (not in {tmp_path / 'out'})" in out
    assert not (kernel.pins / "b").exists() and deploy.load_info("b") is None
    assert kernel.sync(tmp_path / "out", prune=True)[1].endswith("nothing to do: 1 policy up to date\n")


def test_sync_never_prunes_an_exec_session(kernel, tmp_path):
    source(tmp_path / "src", "a")
    build(tmp_path / "src", tmp_path / "out")
    deploy.load_manifest(tmp_path / "out/a.manifest.json", name="a-exec-4242")
    code, out, _ = kernel.sync(tmp_path / "out", prune=True)
    assert code == 0 and "a-exec-4242" not in out and (kernel.pins / "a-exec-4242").is_dir()


def test_sync_loads_the_good_reports_the_bad_and_exits_1(kernel, tmp_path):
    for n in ("a", "bad", "c"):
        source(tmp_path / "src", n)
    build(tmp_path / "src", tmp_path / "out")
    kernel.refuse["bad"] = "loading `bad.bpf.o` failed: EINVAL (Invalid argument)"
    code, out, err = kernel.sync(tmp_path / "out")
    assert code == 1
    assert sorted(p.name for p in kernel.pins.iterdir()) == ["a", "c"]
    assert "failed bad: loading policy `bad` failed: loading `bad.bpf.o` failed: EINVAL" in err
    assert "R1 invalid" in err                          # the verifier's log, for the journal
    assert out.splitlines()[-1] == "sync: 2 loaded, 1 failed"
    # fixed: the next sync loads it and leaves the others
    del kernel.refuse["bad"]
    code, out, _ = kernel.sync(tmp_path / "out")
    assert code == 0
    assert [ln.split(" (")[0] for ln in out.splitlines()] == ["unchanged a", "loaded bad", "unchanged c",
                                                              "sync: 1 loaded, 2 unchanged"]
    assert [c for c in kernel.calls if c[1] == "bad"] == [("load", "bad")]


def test_a_policy_loaded_without_a_record_is_replaced(kernel, tmp_path):
    source(tmp_path / "src", "a")
    build(tmp_path / "src", tmp_path / "out")
    deploy.load_manifest(tmp_path / "out/a.manifest.json")
    (Path(os.environ["POLICYC_STATE_DIR"]) / "a.load.json").unlink()    # as an older policyc left it
    code, out, _ = kernel.sync(tmp_path / "out")
    assert code == 0 and out.startswith("replaced a (no load record")
    assert kernel.sync(tmp_path / "out")[1].startswith("unchanged a")


def test_sync_of_an_empty_build_directory_with_prune_unloads_everything_it_manages(kernel, tmp_path):
    source(tmp_path / "src", "a")
    build(tmp_path / "src", tmp_path / "out")
    assert kernel.sync(tmp_path / "out")[0] == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, _ = kernel.sync(empty, prune=True)
    assert code == 0 and out.splitlines() == [f"unloaded a (not in {empty})", "sync: 1 unloaded"]


# ---- the command line ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--sync", "out", "x/"], "not both"),
    (["--sync", "out", "-p", "a"], "-p does not apply"),
    (["--sync", "out", "--replace"], "drop --replace"),
    (["--prune", "out/"], "--prune goes with --sync"),
    ([], "--sync DIR"),
])
def test_load_sync_usage_errors_are_exit_2(args, message, monkeypatch):
    monkeypatch.setattr(deploy, "check_kernel", lambda: pytest.fail("the kernel was asked"))
    r = CliRunner().invoke(app, ["load", *args])
    assert r.exit_code == 2 and message in r.output, r.output


def test_load_sync_of_a_missing_directory_is_exit_2(tmp_path, monkeypatch):
    monkeypatch.setattr(deploy, "check_kernel", lambda: pytest.fail("the kernel was asked"))
    r = CliRunner().invoke(app, ["load", "--sync", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "is not a build directory" in r.output


def test_load_sync_on_a_kernel_without_bpf_lsm_is_exit_2_and_touches_nothing(kernel, tmp_path, monkeypatch):
    source(tmp_path / "src", "a")
    build(tmp_path / "src", tmp_path / "out")

    def refuse():
        raise deploy.DeployError("BPF LSM is not usable on this kernel: `bpf` is not active", hint="boot with lsm=...,bpf")

    monkeypatch.setattr(deploy, "check_kernel", refuse)
    code, out, err = kernel.sync(tmp_path / "out")
    assert code == 2 and "BPF LSM is not usable" in err and kernel.calls == []


# ---- `policyc build -o DIR` holds its last build only ---------------------------------------------------

def test_build_removes_the_outputs_of_deleted_policies_and_nothing_else(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    for n in ("a", "b", "c"):
        source(src, n)
    build(src, out)
    foreign = {"notes.txt": "mine\n", "x.bpf.o": "not policyc's\n",
               "y.manifest.json": json.dumps({"format": 1, "policy": "other", "object": "y.bpf.o"}),
               "y.bpf.o": "named by a manifest that is not y's own\n"}
    for name, text in foreign.items():
        (out / name).write_text(text)
    (tmp_path / "src/b.policy").unlink()
    (tmp_path / "src/c.policy").unlink()
    r = CliRunner().invoke(app, ["build", str(src), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(["a.bpf.o", "a.manifest.json", "a.maps", *foreign])
    assert f"removed {out / 'b.manifest.json'} (policy no longer in the program)" in r.output
    for name, text in foreign.items():
        assert (out / name).read_text() == text


def test_build_with_p_keeps_the_other_policies_of_the_program(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    for n in ("a", "b"):
        source(src, n)
    build(src, out)
    source(src, "a", '    deny file write "/x"\n')
    build(src, out, names=["a"])
    assert sorted(p.name for p in out.iterdir()) == ["a.bpf.o", "a.manifest.json", "a.maps", "b.bpf.o",
                                                     "b.manifest.json", "b.maps"]
    # a policy gone from the program goes, even with -p
    (src / "b.policy").unlink()
    build(src, out, names=["a"])
    assert sorted(p.name for p in out.iterdir()) == ["a.bpf.o", "a.manifest.json", "a.maps"]


def test_a_failed_build_removes_nothing(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    for n in ("a", "b"):
        source(src, n)
    build(src, out)
    (src / "b.policy").unlink()
    (src / "a.policy").write_text(POL.format(name="a", extra="    deny file reed \"/x\"\n"))
    r = CliRunner().invoke(app, ["build", str(src), "-o", str(out)])
    assert r.exit_code == 2
    assert sorted(p.name for p in out.iterdir()) == ["a.bpf.o", "a.manifest.json", "a.maps", "b.bpf.o",
                                                     "b.manifest.json", "b.maps"]


def test_stale_outputs_never_follow_symlinks_or_take_foreign_manifests(tmp_path):
    out = tmp_path / "out"
    source(tmp_path / "src", "a")
    build(tmp_path / "src", out)
    elsewhere = tmp_path / "elsewhere.manifest.json"
    shutil.copy(out / "a.manifest.json", elsewhere)
    (out / "l.manifest.json").symlink_to(elsewhere)
    assert stale_outputs(out, set()) == [out / "a.manifest.json", out / "a.bpf.o", out / "a.maps"]
    assert stale_outputs(out, {"a"}) == []
