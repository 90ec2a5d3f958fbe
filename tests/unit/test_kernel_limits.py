"""P041: what `policyc build` would refuse for the kernel object's table sizes, `policyc check`
reports at the first rule past the limit (file:line:col, a code), and build says the same."""

from __future__ import annotations

import pytest

from policyc import abi, pipeline
from policyc.codegen import BuildError


def _write(tmp_path, rules: list[str]) -> str:
    p = tmp_path / "big.policy"
    p.write_text("policy big {\n    subject exe \"/usr/bin/x\"\n" + "".join(f"    {r}\n" for r in rules) + "}\n")
    return str(p)


@pytest.mark.parametrize("make, limit", [
    (lambda i: f'deny signal kill to exe "/usr/bin/t{i}"', abi.MAX_TARGET_PATTERNS),
    (lambda i: f'deny signal kill to cgroup "/c{i}"', abi.MAX_TASK_RULES),
])
def test_a_policy_past_a_kernel_table_is_p041_at_the_first_rule_past_it(tmp_path, make, limit):
    path = _write(tmp_path, [make(i) for i in range(limit + 1)])
    front = pipeline.front_end([path])
    p041 = [d for d in front.diags.sorted() if d.code == "P041"]
    assert len(p041) == 1
    # line 1 is `policy`, line 2 the subject: rule number limit+1 stands on line limit + 3
    assert p041[0].span.line == limit + 3 and p041[0].span.file == path
    assert f"more than {limit:,}" in p041[0].message


def test_at_the_limit_it_checks_clean(tmp_path):
    path = _write(tmp_path, [f'deny signal kill to exe "/usr/bin/t{i}"' for i in range(abi.MAX_TARGET_PATTERNS)])
    front = pipeline.front_end([path])
    assert not [d for d in front.diags.sorted() if d.code == "P041"]


def test_build_refuses_what_check_reports(tmp_path):
    from policyc.codegen import build_policy
    from policyc.diagnostics import Diagnostics
    from policyc.lower import load_program

    path = _write(tmp_path, [f'deny signal kill to exe "/usr/bin/t{i}"' for i in range(abi.MAX_TARGET_PATTERNS + 1)])
    program = load_program([path], Diagnostics())
    with pytest.raises(BuildError, match="more than 64 signal/ptrace rules with `to exe` targets"):
        build_policy(program, program.policies[0], tmp_path / "out")


# --- the path automaton's state cap (policyc/ir/dfa.py MAX_STATES) ------------------------------
# `/**/x*` then n `/*`: the automaton must remember which of the last n + 1 components began
# with `x`, 3 * 2^n + 2 states (docs/design.md): n = 17 passes 250,000, n = 14 passes 5,000.
def _exploding(n: int) -> str:
    return '"/**/x*' + "/*" * n + '"'


def _write_exploding(tmp_path, n: int, name: str = "x.policy") -> str:
    p = tmp_path / name
    p.write_text("policy x {\n"
                 '    subject exe "/usr/bin/x"\n'
                 '    deny file write "/srv/**"\n'
                 f"    deny file read {_exploding(n)}\n"
                 '    allow file read "/etc/x/**"\n'
                 "}\n")
    return str(p)


@pytest.fixture
def small_cap(monkeypatch):
    """The cap at 5,000 states (policy_dfa reads MAX_STATES when it builds): the same paths
    in a tenth of the time."""
    from policyc.ir import dfa as D

    monkeypatch.setattr(D, "MAX_STATES", 5_000)
    monkeypatch.setattr(D, "_BUILT", {})
    return 5_000


def test_an_automaton_past_its_cap_is_p041_at_the_rule_and_check_exits_2(tmp_path):
    """The real cap (250,000): the one test that builds that far (about 3 s)."""
    from typer.testing import CliRunner

    from policyc.cli.main import app

    path = _write_exploding(tmp_path, 17)
    r = CliRunner().invoke(app, ["check", path])
    assert r.exit_code == 2, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == (f"{path}:4:5: error[P041]: policy `x`: the path patterns need more than 250,000 automaton "
                        "states (the cap); this rule alone needs at least 62,500 states"), lines[0]
    assert lines[2] == f"4 |     deny file read {_exploding(17)}"
    assert any("help: " in ln and "split it into shorter patterns" in ln for ln in lines), r.stdout


def test_build_refuses_what_check_reports_for_the_automaton(tmp_path, small_cap):
    from typer.testing import CliRunner

    from policyc.cli.main import app
    from policyc.codegen import build_policy
    from policyc.diagnostics import Diagnostics
    from policyc.lower import load_program

    path = _write_exploding(tmp_path, 14)
    front = pipeline.front_end([path])
    (d,) = [d for d in front.diags.sorted() if d.code == "P041"]
    assert (d.span.file, d.span.line, d.span.col) == (path, 4, 5)
    assert "more than 5,000 automaton states" in d.message and "this rule alone needs" in d.message
    # `policyc build` stops at the check's error, as for the other limits
    r = CliRunner().invoke(app, ["build", path, "-o", str(tmp_path / "out")])
    assert r.exit_code == 2 and f"{path}:4:5: error[P041]" in r.output, r.output
    assert not (tmp_path / "out" / "x.bpf.o").exists()
    # and the code generator on its own refuses it with the same words, naming the rule
    program = load_program([path], Diagnostics())
    with pytest.raises(BuildError, match="need more than 5,000 automaton states") as e:
        build_policy(program, program.policies[0], tmp_path / "out")
    assert f"the largest alone is {path}:4:5: deny file read" in e.value.message
    assert "split it into shorter patterns" in e.value.hint


def test_an_exploding_subject_is_p041_at_the_subject(tmp_path, small_cap):
    p = tmp_path / "s.policy"
    p.write_text(f"policy s {{\n    subject exe {_exploding(14)}\n    deny file read \"/etc/x\"\n}}\n")
    front = pipeline.front_end([str(p)])
    (d,) = [d for d in front.diags.sorted() if d.code == "P041"]
    assert d.span == front.program.policies[0].subjects[0].span and (d.span.line, d.span.col) == (2, 13)
    assert "this subject alone needs" in d.message


def test_a_normal_policy_has_no_automaton_diagnostic(tmp_path, small_cap):
    path = _write_exploding(tmp_path, 8)   # 3 * 2^8 + 2 = 770 states: under the cap
    front = pipeline.front_end([path, "policies"])
    assert not [d for d in front.diags.sorted() if d.code == "P041"]
    assert not front.diags.has_errors


def _count_builds(monkeypatch) -> list:
    from policyc.ir import dfa as D

    calls = []
    real = D.build_dfa

    def counting(patterns, *args, **kw):
        calls.append(len(patterns))
        return real(patterns, *args, **kw)

    monkeypatch.setattr(D, "build_dfa", counting)
    return calls


def test_policyc_build_builds_each_automaton_once(tmp_path, monkeypatch):
    """The checks build every policy's automaton (P041) and the code generator uses theirs."""
    from policyc.cli.build import compile_program

    calls = _count_builds(monkeypatch)
    p = tmp_path / "two.policy"
    p.write_text('policy a {\n    subject exe "/usr/bin/a"\n    default deny\n    allow file read "/etc/a/**"\n}\n'
                 'policy b {\n    subject exe "/usr/bin/b"\n    deny file write "/srv/**", "/**/x*/*/*"\n}\n')
    import io

    out, err = io.StringIO(), io.StringIO()
    code, results = compile_program([str(p)], tmp_path / "out", None, False, out, err)
    assert code == 0, err.getvalue()
    assert [r.object_path.name for r in results] == ["a.bpf.o", "b.bpf.o"]
    assert calls == [2, 3], calls   # once per policy: (subject, rule) and (subject, two globs)


def test_a_refused_automaton_is_built_once_too(tmp_path, monkeypatch, small_cap):
    from policyc.codegen import build_policy

    calls = _count_builds(monkeypatch)
    front = pipeline.front_end([_write_exploding(tmp_path, 14)])
    assert [d.code for d in front.diags.sorted() if d.severity == "error"] == ["P041"]
    with pytest.raises(BuildError, match="automaton states"):
        build_policy(front.program, front.program.policies[0], tmp_path / "out")
    assert len(calls) == 1


def test_the_shared_automaton_goes_with_its_policy(tmp_path):
    import dataclasses
    import gc

    from policyc.ir import dfa as D

    # without the checks: their coverage cache keeps the last policies it saw
    policy = pipeline.front_end([_write_exploding(tmp_path, 3)], checks=False).program.policies[0]
    first = D.policy_dfa(policy)
    assert D.policy_dfa(policy) is first and id(policy) in D._BUILT
    other = dataclasses.replace(policy)   # equal, another object: built again, not shared
    assert D.policy_dfa(other) is not first and D.policy_dfa(other).states == first.states
    key = id(policy)
    del policy, other
    gc.collect()
    assert key not in D._BUILT


def test_the_language_server_skips_only_the_automaton(tmp_path, small_cap):
    """policyc/lsp runs the checks on every change: it does not build the automaton (docs/cli.md)."""
    from policyc.lsp.analysis import analyse

    path = _write_exploding(tmp_path, 14)
    text = open(path).read()
    assert [d.code for d in analyse(path, text).diagnostics if d.code == "P041"] == []
    big = _write(tmp_path, [f'deny signal kill to exe "/usr/bin/t{i}"' for i in range(abi.MAX_TARGET_PATTERNS + 1)])
    assert [d.code for d in analyse(big, open(big).read()).diagnostics if d.code == "P041"] == ["P041"]
    # and the checks outside it still do
    assert [d.code for d in pipeline.front_end([path]).diags.sorted() if d.code == "P041"] == ["P041"]


def test_the_automatons_columns_are_the_code_generators():
    """policyc/ir/dfa.py PATH_FAMILIES (what `check` builds with, without the code generator)
    says what policyc/codegen/families.py FAMILIES says: which families the automaton decides,
    their verdict columns, whether a deny protects its paths."""
    import itertools

    from policyc.codegen.families import FAMILIES
    from policyc.ir.dfa import PATH_FAMILIES
    from policyc.ir.model import Rule
    from policyc.ir.vocab import FAMILIES as VOCAB
    from policyc.span import Span

    assert set(PATH_FAMILIES) == {f for f, fam in FAMILIES.items() if fam.columns is not None}
    for family, (columns, protects) in PATH_FAMILIES.items():
        assert protects == FAMILIES[family].protects, family
        ops = list(VOCAB[family].ops)
        for n in range(0, min(3, len(ops)) + 1):
            for chosen in itertools.combinations(ops, n):
                rule = Rule(id=1, decision="deny", family=family, ops=tuple(chosen), paths=(), net=None, target=None,
                            span=Span("f", 1, 1, 1, 1), text="")
                assert columns(rule) == FAMILIES[family].columns(rule), (family, chosen)
