"""`owner` (the file's owner is the process's fsuid): grammar, lowering (P026), the reference
evaluator, the automaton's paired verdicts and their maps, the C it renders, the checks and
`fmt`. The kernel side is tests/kernel/test_owner.py; the maps against the evaluator also in
tests/unit/test_differential_maps.py (its generator writes `owner` rules)."""

from __future__ import annotations

import shutil

import pytest

from policyc import abi
from policyc.diagnostics import Diagnostics
from policyc.evaluate import decide, decide_policy
from policyc.fmt import format_text
from policyc.ir.dfa import policy_dfa
from policyc.ir.model import Event
from policyc.lower import load_program

from _policyc_helpers import check, found
from test_differential_maps import case, ev

X = "/usr/bin/x"

HOME = """policy home {
    subject exe "/usr/bin/x"
    default deny
    allow file read, write owner "/home/*/**"
    deny file write owner "/tmp/**"
    allow file write, create "/tmp/**"
    audit file read "/home/*/.ssh/**"
}
"""


def load(tmp_path, text: str):
    f = tmp_path / "p.policy"
    f.write_text(text)
    diags = Diagnostics()
    program = load_program([str(f)], diags)
    return program, diags


def file_ev(op: str, path: str, owner: bool = False) -> Event:
    return Event(X, f"file.{op}", path=path, owner=owner)


# ---- grammar and lowering --------------------------------------------------------------------

def test_owner_parses_and_lowers_to_the_rule(tmp_path):
    program, diags = load(tmp_path, HOME)
    assert program is not None, [str(d) for d in diags.items]
    rules = program.policies[0].rules
    assert [r.owner for r in rules] == [True, True, False, False]
    assert rules[0].ops == ("read", "write") and [g.text for g in rules[0].paths] == ["/home/*/**"]
    assert "owner" in rules[0].text


def test_owner_is_still_a_name_where_no_keyword_can_stand(tmp_path):
    program, diags = load(tmp_path, 'let owner = "/srv"\npolicy owner {\n subject exe "/x"\n'
                                    ' deny file read owner "${owner}/**"\n}\ntest owner {\n'
                                    ' expect deny file read owner "/srv/a"\n}\n')
    assert program is not None, [str(d) for d in diags.items]
    assert program.policies[0].name == "owner" and program.policies[0].rules[0].owner


def test_owner_needs_paths(tmp_path):
    program, diags = load(tmp_path, 'policy p {\n subject exe "/x"\n deny file read owner\n}\n')
    assert program is None
    assert [d.code for d in diags.items] == ["P001"]


@pytest.mark.parametrize("rule,col", [
    ('allow exec owner "/home/*/bin/*"', 13),
    ('deny mount owner "/mnt/**"', 13),
])
def test_owner_outside_file_rules_is_p026(tmp_path, rule, col):
    program, diags = load(tmp_path, 'policy p {\n subject exe "/x"\n ' + rule + '\n}\n')
    assert program is None
    (d,) = [d for d in diags.items if d.code == "P026"]
    assert (d.span.line, d.span.col, d.span.end_col) == (3, col, col + 5)


def test_owner_in_a_non_file_expectation_is_p026(tmp_path):
    program, diags = load(tmp_path, 'policy p {\n subject exe "/x"\n}\ntest p {\n'
                                    ' expect allow exec owner "/bin/sh"\n}\n')
    assert program is None
    assert [(d.code, d.span.line, d.span.col) for d in diags.items] == [("P026", 5, 20)]


def test_expect_owner_sets_the_event_fact(tmp_path):
    program, diags = load(tmp_path, HOME + 'test home {\n'
                                           ' expect allow file read owner "/home/a/x"\n'
                                           ' expect deny file read "/home/a/x"\n}\n')
    assert program is not None, [str(d) for d in diags.items]
    (t,) = program.tests
    assert [e.event.owner for e in t.expectations] == [True, False]
    assert [decide(program, e.event).action for e in t.expectations] == ["allow", "deny"]


# ---- the reference evaluator -----------------------------------------------------------------

def test_evaluator_owner_rules_exist_only_for_the_owner(tmp_path):
    program, _ = load(tmp_path, HOME)
    (p,) = program.policies
    got = lambda *a, **k: (lambda d: (d.action, d.rule.id if d.rule else 0))(decide_policy(p, file_ev(*a, **k)))
    assert got("read", "/home/a/notes", owner=True) == ("allow", 1)
    assert got("read", "/home/a/notes") == ("deny", 0)                 # the default
    assert got("read", "/home/a/.ssh/id", owner=True) == ("audit", 4)  # audit beats allow
    assert got("write", "/tmp/x", owner=True) == ("deny", 2)           # the owner's own: denied
    assert got("write", "/tmp/x") == ("allow", 3)                      # someone else's: allowed
    assert got("append", "/tmp/x", owner=True) == ("deny", 2)          # write covers append


def test_evaluator_a_create_is_the_creators_own(tmp_path):
    program, _ = load(tmp_path, 'policy p {\n subject exe "/usr/bin/x"\n default deny\n'
                                ' allow file create owner "/srv/**"\n deny file create owner "/tmp/**"\n'
                                ' allow file create "/tmp/**"\n}\n')
    (p,) = program.policies
    assert decide_policy(p, file_ev("create", "/srv/new")).action == "allow"
    assert decide_policy(p, file_ev("create", "/tmp/new")).action == "deny"


def test_evaluator_an_abstract_socket_has_no_owner(tmp_path):
    program, _ = load(tmp_path, 'policy p {\n subject exe "/usr/bin/x"\n'
                                ' deny file write owner "@dbus-*"\n}\n')
    (p,) = program.policies
    assert decide_policy(p, file_ev("write", "@dbus-1", owner=True)).action == "allow"


def test_owner_deny_still_protects_its_paths_from_rename(tmp_path):
    program, _ = load(tmp_path, 'policy p {\n subject exe "/usr/bin/x"\n'
                                ' deny file write owner "/etc/app/**"\n}\n')
    (p,) = program.policies
    d = decide_policy(p, file_ev("rename", "/etc/app"))
    assert (d.action, d.by, d.rule.id) == ("deny", "protect", 1)


# ---- the automaton and its maps --------------------------------------------------------------

def test_dfa_keeps_the_not_owner_columns_beside_each_verdict(tmp_path):
    program, _ = load(tmp_path, HOME)
    d = policy_dfa(program.policies[0])
    assert d.not_owner is not None and len(d.not_owner) == len(d.verdicts)
    deny, allow = abi.DECISION.index["deny"], abi.DECISION.index["allow"]
    assert d.match(b"/home/a/x")[abi.OP_READ] == (allow, 1)
    assert d.match(b"/home/a/x", owner=False)[abi.OP_READ] == (deny, 0)
    assert d.match(b"/tmp/x")[abi.OP_WRITE] == (deny, 2)
    assert d.match(b"/tmp/x", owner=False)[abi.OP_WRITE] == (allow, 3)
    # columns owner rules do not speak for are the same in both
    assert d.match(b"/tmp/x")[abi.OP_CREATE] == d.match(b"/tmp/x", owner=False)[abi.OP_CREATE]


def test_a_policy_without_owner_keeps_one_verdict_per_state(tmp_path):
    program, _ = load(tmp_path, 'policy p {\n subject exe "/usr/bin/x"\n deny file read "/etc/**"\n}\n')
    d = policy_dfa(program.policies[0])
    assert d.not_owner is None


def test_an_owner_rule_does_not_dominate_what_it_covers(tmp_path):
    """The pruning of absorbed patterns (dfa.py _dominates) must keep a rule an `owner` rule
    would hide: for a non-owner the owner rule is not there."""
    program, _ = load(tmp_path, 'policy p {\n subject exe "/usr/bin/x"\n default allow\n'
                                ' deny file read owner "/srv/**"\n audit file read "/srv/a/**"\n}\n')
    d = policy_dfa(program.policies[0])
    audit = abi.DECISION.index["audit"]
    assert d.match(b"/srv/a/b", owner=False)[abi.OP_READ] == (audit, 2)


def test_maps_store_the_verdicts_in_pairs(tmp_path):
    from policyc.codegen.tables import VERDICT, dfa_maps

    program, _ = load(tmp_path, HOME)
    d = policy_dfa(program.policies[0])
    maps = dfa_maps(d)
    assert maps["verdicts"].max_entries == 2 * len(d.verdicts)
    n = abi.POLICYC_N_OPS
    entries = dict(maps["verdicts"].entries)
    states = dict(maps["dfa_states"].entries)
    s = d.walk(b"/tmp/x")
    from policyc.codegen.tables import DFA_STATE
    vi = DFA_STATE.unpack(states[abi.U32.pack(s)])[3]
    assert vi % 2 == 0
    mine, others = VERDICT.unpack(entries[abi.U32.pack(vi)]), VERDICT.unpack(entries[abi.U32.pack(vi + 1)])
    assert (mine[abi.OP_WRITE], mine[n + abi.OP_WRITE]) == (2, abi.DECISION.index["deny"])
    assert (others[abi.OP_WRITE], others[n + abi.OP_WRITE]) == (3, abi.DECISION.index["allow"])


def test_maps_decide_as_the_evaluator():
    """The maps, walked as the C walks them (_bpf_model), against the evaluator."""
    pol = ('policy p {\n subject exe "/usr/bin/x"\n default deny\n'
           ' allow file read, write owner "/home/*/**"\n deny file write owner "/tmp/**"\n'
           ' allow file write, create, rename "/tmp/**"\n allow file create owner "/srv/**"\n'
           ' allow file exec-map owner "/opt/**"\n}\n')
    case(pol,
         (ev("file.read", path="/home/a/x", owner=True), ("allow", 1)),
         (ev("file.read", path="/home/a/x"), ("deny", 0)),
         (ev("file.write", path="/tmp/x", owner=True), ("deny", 2)),
         (ev("file.write", path="/tmp/x"), ("allow", 3)),
         (ev("file.create", path="/srv/new"), ("allow", 4)),          # the creator's own
         (ev("file.exec-map", path="/opt/lib.so", owner=True), ("allow", 5)),
         (ev("file.exec-map", path="/opt/lib.so"), ("deny", 0)),
         (ev("file.rename", path="/tmp/x"), ("deny", 2)),             # protected by the deny
         )


# ---- the C -----------------------------------------------------------------------------------

def test_owner_code_is_rendered_only_for_owner_policies(tmp_path):
    from policyc import codegen

    program, _ = load(tmp_path, HOME)
    (p,) = program.policies
    assert codegen.template_flags(p)["has_owner_rules"] is True
    fams = codegen.template_families(p)
    with_owner = codegen.render_c(fams, **codegen.template_flags(p))
    without = codegen.render_c(fams, True, False)
    assert "#define POLICYC_OWNER_RULES 1" in with_owner and "owner_verdict(" in with_owner
    assert "POLICYC_OWNER_RULES" not in without and "owner_verdict(" not in without
    # the default keeps the C of a policy without `owner` exactly as it was rendered before
    assert codegen.render_c(fams, True, False) == codegen.render_c(fams, True, False, has_owner_rules=False)


def test_manifest_marks_owner_rules_only(tmp_path):
    from _bpf_model import build_manifest

    program, _ = load(tmp_path, HOME)
    m = build_manifest(program, program.policies[0], tmp_path / "out")
    assert [r.get("owner") for r in m["rules"]] == [True, True, None, None]


@pytest.mark.skipif(not (shutil.which("clang-19") or shutil.which("clang")), reason="no clang")
def test_owner_variant_compiles(tmp_path):
    from policyc import codegen

    try:
        codegen._libbpf_include()
    except codegen.BuildError:
        pytest.skip("no libbpf headers")
    fams = ["subject", "file", "execmap", "net", "mount", "capability", "task", "module", "bpf"]
    src = codegen.render_c(fams, True, True, has_owner_rules=True)
    obj = codegen._compile(codegen.find_clang(), codegen._libbpf_include(), src, "owner")
    assert obj[:4] == b"\x7fELF"


# ---- checks ----------------------------------------------------------------------------------

BASE = 'policy p {\n    subject exe "/x"\n    default deny\n'


def test_owner_rule_is_no_duplicate_of_the_same_rule_without(tmp_path):
    diags = check(tmp_path, BASE + '    allow file read "/a/**"\n    allow file read owner "/a/**"\n}\n')
    assert found(diags, {"W101"}) == []


def test_two_equal_owner_rules_are_duplicates(tmp_path):
    diags = check(tmp_path, BASE + '    allow file read owner "/a/**"\n    allow file read owner "/a/**"\n}\n')
    assert found(diags, {"W101"}) == [("W101", 5, 5)]


def test_owner_rule_does_not_contradict_the_rule_without(tmp_path):
    diags = check(tmp_path, BASE + '    allow file read "/a/**"\n    deny file read owner "/a/**"\n}\n')
    assert found(diags, {"W106", "W102", "W103"}) == []


def test_owner_rule_does_not_shadow_a_broader_rule_without(tmp_path):
    # the owner rule is narrower: it covers nothing of the plain rule
    diags = check(tmp_path, BASE + '    allow file read owner "/a/**"\n    allow file read "/a/b/**"\n}\n')
    assert found(diags, {"W102", "W103"}) == []


def test_a_rule_without_owner_shadows_an_owner_rule(tmp_path):
    diags = check(tmp_path, BASE + '    allow file read "/a/**"\n    allow file read owner "/a/b/**"\n}\n')
    assert found(diags, {"W102"}) == [("W102", 5, 5)]


def test_a_deny_without_owner_overrides_an_owner_allow(tmp_path):
    diags = check(tmp_path, BASE + '    deny file read "/a/**"\n    allow file read owner "/a/**"\n}\n')
    assert found(diags, {"W103", "W106"}) == [("W103", 5, 5)]


def test_host_wide_deny_counts_an_owner_deny_of_essentials(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject all\n    deny file read owner "/etc/**"\n}\n')
    assert ("P030", 3, 5) in found(diags, {"P030"})


# ---- fmt -------------------------------------------------------------------------------------

def test_fmt_prints_owner_back():
    text = ('policy p {\n    subject exe "/x"\n    allow file read, write owner "/home/*/**"\n}\n\n'
            'test p {\n    expect allow file read owner "/home/a/x"\n}\n')
    assert format_text("p.policy", text, Diagnostics()) == text


def test_fmt_keeps_owner_when_it_wraps_paths():
    paths = ", ".join(f'"/srv/a-rather-long-directory-name-{i}/**"' for i in range(3))
    text = f'policy p {{\n    subject exe "/x"\n    allow file read owner {paths}\n}}\n'
    out = format_text("p.policy", text, Diagnostics())
    assert out is not None and "    allow file read owner\n" in out
    assert format_text("p.policy", out, Diagnostics()) == out
