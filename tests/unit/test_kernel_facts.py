"""`check --kernel`: rules are held against a kernel's hooks and helpers (its BTF facts)."""

import json
from pathlib import Path

import pytest

from policyc.diagnostics import Diagnostics
from policyc.kernel_facts import FactsError, check_program, load_facts
from policyc.lower import load_program

REPO = Path(__file__).resolve().parents[2]


def program(tmp_path, text):
    f = tmp_path / "p.policy"
    f.write_text(text)
    d = Diagnostics()
    p = load_program([str(f)], d)
    assert p is not None, d.items
    return p


@pytest.mark.parametrize("version", ["6.1", "6.12", "7.2"])
def test_supported_kernels_enforce_every_example_policy(version):
    facts = load_facts(version)
    assert "file_open" in facts["lsm_hooks"] and "loop" in facts["helpers"]
    d = Diagnostics()
    prog = load_program([str(REPO / "policies")], d)
    check_program(prog, version, d)
    assert [x for x in d.items if x.code == "P050"] == []


def test_a_missing_hook_is_reported_at_the_rule(tmp_path):
    facts = load_facts("6.1")
    facts["lsm_hooks"] = [h for h in facts["lsm_hooks"] if h != "task_kill"]
    fake = tmp_path / "old.json"
    fake.write_text(json.dumps(facts))
    prog = program(tmp_path, 'policy p {\n    subject all\n    default allow\n'
                             '    deny file read "/secret"\n    deny signal kill\n}\n')
    d = Diagnostics()
    check_program(prog, str(fake), d)
    (diag,) = d.items
    assert diag.code == "P050" and (diag.span.line, diag.span.col) == (5, 5)
    assert "task_kill" in diag.message


def test_unknown_kernel_is_a_clear_error():
    with pytest.raises(FactsError, match="unknown kernel"):
        load_facts("/nonexistent/btf")


def test_a_hook_whose_arguments_changed_is_reported(tmp_path):
    import doctest

    import policyc.kernel_facts as kf

    assert doctest.testmod(kf).failed == 0
    ref = json.loads((REPO / "policyc" / "kernels" / f"{kf.REFERENCE_KERNEL}.json").read_text())
    if "hook_args" not in ref:
        pytest.fail("the reference kernel's facts carry no hook_args: re-derive them "
                    "(scripts/derive_kernel_facts.py)")
    facts = dict(ref, hook_args=dict(ref["hook_args"]))
    facts["hook_args"]["file_open"] = ["struct file *", "s32"]                 # an argument more
    facts["hook_args"]["sb_pivotroot"] = ["struct path *", "struct path *"]    # const only: no change
    f = tmp_path / "k.json"
    f.write_text(json.dumps(facts))
    p = program(tmp_path, 'policy p {\n  subject exe "/x"\n  deny file read "/secret"\n  deny mount\n}\n')
    d = Diagnostics()
    check_program(p, str(f), d)
    found = [(x.code, x.span.line) for x in d.items]
    assert found == [("P050", 3)], [str(x) for x in d.items]
    assert "file_open" in d.items[0].message and "(struct file *, s32)" in d.items[0].message
