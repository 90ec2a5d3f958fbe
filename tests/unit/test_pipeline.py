"""policyc/pipeline.py: the one chain of stages, the build step that refuses what the checks
did not pass, and the command-line fixes of issue #10 that go through it."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import types

import pytest
from typer.testing import CliRunner

from policyc import pipeline
from policyc.cli.main import app

from _policyc_helpers import ROOT, write

runner = CliRunner()

GOOD = 'policy p {\n    subject exe "/usr/bin/x"\n    default deny\n    allow exec "/usr/bin/y"\n}\n'
W107 = 'policy w {\n    subject exe "/usr/bin/w"\n    allow exec "/usr/bin/y"\n}\n'   # allow under default allow
HOST_WIDE = 'policy h {\n    subject all\n    default deny\n}\n'                     # P030, a check error
TESTED = HOST_WIDE + 'test h {\n    expect deny bpf\n}\n'


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


# --- the front end -----------------------------------------------------------------------------
def test_front_end_runs_the_checks_unless_told_not_to(tmp_path):
    (p,) = write(tmp_path, {"w.policy": W107})
    checked = pipeline.front_end([p])
    assert checked.ok and checked.checked and [d.code for d in checked.diags.items] == ["W107"]
    lowered = pipeline.front_end([p], checks=False)
    assert lowered.program is not None and not lowered.checked and not lowered.diags.items
    assert not lowered.ok           # lowered is not buildable


def test_front_end_is_total_and_stops_at_the_first_stage_in_error(tmp_path):
    (p,) = write(tmp_path, {"bad.policy": "policy p {\n"})
    front = pipeline.front_end([p, tmp_path / "missing.policy"])
    assert front.program is None and not front.checked and not front.ok
    assert {d.code for d in front.diags.items} == {"P001", "P006"}


def test_the_kernels_facts_run_only_after_clean_checks(tmp_path):
    (p,) = write(tmp_path, {"h.policy": HOST_WIDE})
    front = pipeline.front_end([p], kernel="no-such-kernel")
    # (W112 beside it: the host-wide policy also denies policyc's own loader)
    assert [d.code for d in front.diags.items] == ["P030", "W112"] and front.facts_error is None
    (g,) = write(tmp_path, {"g.policy": GOOD})
    front = pipeline.front_end([g], kernel=str(tmp_path / "no-such-facts.json"))
    assert front.facts_error and not front.ok


# --- the build step refuses --------------------------------------------------------------------
def test_build_refuses_a_program_the_checks_never_saw(tmp_path):
    (p,) = write(tmp_path, {"a.policy": GOOD})
    front = pipeline.front_end([p], checks=False)
    with pytest.raises(pipeline.Refused, match="not checked"):
        pipeline.build(front, front.program.policies[0], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_build_refuses_a_program_with_errors(tmp_path):
    (p,) = write(tmp_path, {"h.policy": HOST_WIDE})
    front = pipeline.front_end([p])
    assert front.program is not None and front.diags.has_errors
    with pytest.raises(pipeline.Refused, match="errors"):
        pipeline.build(front, front.program.policies[0], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_build_refuses_a_policy_of_another_program(tmp_path):
    (a,) = write(tmp_path, {"a.policy": GOOD})
    one, other = pipeline.front_end([a]), pipeline.front_end([a])
    with pytest.raises(pipeline.Refused):
        pipeline.build(one, other.program.policies[0], tmp_path / "out")


def test_select_is_in_program_order_whatever_the_names_order(tmp_path):
    (p,) = write(tmp_path, {"ab.policy": GOOD.replace("policy p", "policy a") + GOOD.replace("policy p", "policy b")})
    front = pipeline.front_end([p])
    assert [x.name for x in pipeline.select(front, ["b", "a"])] == ["a", "b"]
    assert [x.name for x in pipeline.select(front, ["b"])] == ["b"]
    assert pipeline.select(front, ["nope"]) == [] and [d.code for d in front.diags.items] == ["P022"]


def test_build_and_load_order_is_program_order(tmp_path):
    # `policyc load a.policy -p b -p a` builds, and so loads, a before b (the evaluator's
    # first policy is the kernel's first loaded)
    from policyc.cli.build import compile_program
    import io

    (p,) = write(tmp_path, {"ab.policy": GOOD.replace("policy p", "policy a") + GOOD.replace("policy p", "policy b")})
    code, results = compile_program([p], tmp_path / "out", ["b", "a"], False, io.StringIO(), io.StringIO(),
                                    quiet=True)
    assert code == 0 and [r.policy for r in results] == ["a", "b"]


# --- commands ----------------------------------------------------------------------------------
def test_build_into_an_existing_file_is_exit_2(tmp_path):
    (p,) = write(tmp_path, {"a.policy": GOOD})
    existing = tmp_path / "existing"
    existing.write_text("not a directory\n")
    r = run("build", p, "-o", existing)
    assert r.exit_code == 2, r.output
    assert "exists and is not a directory" in r.output and "Traceback" not in r.output
    assert existing.read_text() == "not a directory\n"
    r = run("build", p, "-o", existing / "below")
    assert r.exit_code == 2 and "cannot create the output directory" in r.output


def test_test_kernel_runs_the_checks_before_any_vm(tmp_path, monkeypatch):
    calls = []
    mod = types.ModuleType("policyc.kernel_test")
    mod.__spec__ = importlib.util.spec_from_loader("policyc.kernel_test", loader=None)
    mod.run_kernel_tests = lambda program, kernel, out, err: calls.append(kernel) or 0
    monkeypatch.setitem(sys.modules, "policyc.kernel_test", mod)
    (p,) = write(tmp_path, {"h.policy": TESTED})
    r = run("test", "--kernel", "6.12", p)
    assert r.exit_code == 2 and "P030" in r.output and calls == []
    # the reference evaluator still runs the same tests: it needs no checks
    assert run("test", p).exit_code == 0


@pytest.mark.parametrize("op", ["exec", "file.exec-map"])
def test_explain_an_anonymous_executable(tmp_path, op):
    (p,) = write(tmp_path, {"a.policy": GOOD.replace("allow exec \"/usr/bin/y\"", "allow exec")})
    r = run("explain", p, "--exe", "/usr/bin/x", "--op", op, "--path", "memfd:x", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert (d["decision"], d["by"], d["rule"]) == ("deny", "anonymous-exec", None)
    r = run("explain", p, "--exe", "/usr/bin/x", "--op", op, "--path", "memfd:x")
    assert r.exit_code == 0 and "without a path" in r.stdout


def test_explain_other_relative_paths_are_still_refused(tmp_path):
    (p,) = write(tmp_path, {"a.policy": GOOD})
    for args in (["--op", "file.read", "--path", "memfd:x"], ["--op", "exec", "--path", "/bin/x", "--target-exe", "y"]):
        r = run("explain", p, "--exe", "/usr/bin/x", *args)
        assert r.exit_code == 2 and "P018" in r.output


def test_check_dev_zero_and_fifo_exit_2(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.policy")
    for path in ("/dev/zero", tmp_path / "fifo.policy"):
        r = run("check", path)
        assert r.exit_code == 2 and "P006" in r.output and "Traceback" not in r.output


# --- the pipeline is the only place the stages are chained ------------------------------------
STAGES = re.compile(r"(?<!def )\b(load_program|run_checks|check_program|build_policy)\(")   # calls, not definitions


def test_no_entry_point_chains_the_stages_itself():
    """Outside the pipeline (and the stages' own packages), nothing calls a stage: every
    command, the kernel test runner, the load test, the kernel suite's harness and
    prebuild, and the benchmarks go through policyc/pipeline.py."""
    owners = {"policyc/pipeline.py", "policyc/lower/__init__.py", "policyc/checks/__init__.py",
              "policyc/kernel_facts.py", "policyc/codegen/__init__.py"}
    # benchmarks time single stages on purpose (parse, lower, each check); they call no
    # stage after another
    stage_timing = {"bench/check_speed.py": {"load_program"}}
    files = [*ROOT.glob("policyc/**/*.py"), *ROOT.glob("bench/*.py"),
             ROOT / "tests/kernel/harness.py", ROOT / "tests/kernel/prebuild.py",
             ROOT / "tests/kernel/conftest.py"]
    offenders = []
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        if rel in owners:
            continue
        for m in STAGES.finditer(f.read_text()):
            if m.group(1) not in stage_timing.get(rel, ()):
                offenders.append(f"{rel}: {m.group(1)}")
    assert offenders == []
