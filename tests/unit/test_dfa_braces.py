"""The kernel's DFA means what the reference evaluator means, braces included.

Braces are compiled as branches of the automaton, never expanded: an expansion cap once made
the shipped DFA allow what the evaluator denied (13 groups of `{a,b}`, 8,192 expansions)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from policyc.ir.dfa import Pattern, build_dfa, glob_atoms
from policyc.codegen.tables import FILE_OP_INDEX, policy_dfa
from policyc.diagnostics import Diagnostics
from policyc.evaluate import glob_matches
from policyc.ir.glob import parse_glob
from policyc.span import NO_SPAN

from _policyc_helpers import load

DENY, RULE = 2, 7


def dfa_for(text: str):
    glob = parse_glob(text, NO_SPAN, Diagnostics())
    assert glob is not None
    (atoms,) = glob_atoms(glob.parts)
    return glob, build_dfa([Pattern(atoms, 1, rule_id=RULE, rank=DENY)], n_ops=1, defaults=[(0, 0)])


def dfa_matches(dfa, text: str) -> bool:
    return dfa.match(text.encode())[0] == (DENY, RULE)


piece = st.sampled_from(["a", "b", "/", "*", "**", "?", "{a,b}", "{a/,}", "{*,b/**}", "{a,{b,/}c}", "é"])
glob_text = st.lists(piece, min_size=1, max_size=7).map("".join)
text_st = st.lists(st.sampled_from(["a", "b", "/", "c", "é"]), max_size=8).map("".join)


@settings(max_examples=600, deadline=None)
@given(glob_text, text_st)
def test_dfa_agrees_with_the_evaluator(pattern, text):
    glob, dfa = dfa_for(pattern)
    assert dfa_matches(dfa, text) == glob_matches(glob, text), (pattern, text)


def test_thirteen_brace_groups_every_expansion_matches():
    pattern = "/d/" + "{a,b}" * 13           # 8,192 expansions, twice the old cap
    glob, dfa = dfa_for(pattern)
    for tail in ("a" * 13, "b" * 13, "ab" * 6 + "b", "ba" * 6 + "a"):
        assert glob_matches(glob, "/d/" + tail)
        assert dfa_matches(dfa, "/d/" + tail), tail
    assert not dfa_matches(dfa, "/d/" + "a" * 12)
    assert not dfa_matches(dfa, "/d/" + "c" * 13)
    assert len(dfa.states) < 64                # branches, not 8,192 copies


def test_seven_groups_of_four_in_a_policy_deny_every_path(tmp_path):
    # The whole code-generation path, from policy text: every one of the 16,384 paths is denied
    # by the rule in the DFA that ships (the old cap let all but 4,096 through as rule 0).
    program, diags = load(tmp_path, 'policy p {\n  subject exe "/usr/bin/x"\n  default allow\n'
                          '  deny file read "/d/' + "{a,b,c,d}" * 7 + '"\n}\n')
    assert program is not None and not diags.has_errors, diags
    (policy,) = program.policies
    (rule,) = policy.rules
    dfa = policy_dfa(policy)
    read = FILE_OP_INDEX["read"]
    for combo in itertools.product("abcd", repeat=7):
        path = ("/d/" + "".join(combo)).encode()
        assert dfa.match(path)[read] == (DENY, rule.id), path
    assert dfa.match(b"/d/aaaaaae")[read][1] == 0
