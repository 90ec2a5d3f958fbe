import pytest

from policyc.diagnostics import Severity

from _check_cases import fixture_findings
from _policyc_helpers import check, found


@pytest.mark.parametrize("code", ["P030", "W109"])
def test_fixture(code):
    got, want, _ = fixture_findings(code, {code})
    assert got == want


def test_is_an_error_with_a_note_at_the_subject(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject all\n    deny exec "/**"\n}\n')
    (d,) = [d for d in diags.items if d.code == "P030"]
    assert d.severity is Severity.ERROR
    assert (d.span.line, d.span.col) == (3, 5)
    assert [(n.span.line, n.span.col) for n in d.notes] == [(2, 13)]
    assert any("acknowledge host-wide-deny" in h for h in d.hints)


@pytest.mark.parametrize("rule", [
    'deny file write "/**"',
    'deny file read "/etc/ld.so.cache"',
    'deny file read "/lib/**"',
    'deny file read "/usr/lib/**"',
    'deny file exec-map "/**"',
    'deny exec "/{bin,usr/bin}/*"',
    'deny capability setuid',
    'deny net connect any',
])
def test_essentials(tmp_path, rule):
    diags = check(tmp_path, f'policy p {{\n    subject all\n    {rule}\n}}\n')
    assert found(diags, {"P030"}) == [("P030", 3, 5)]


@pytest.mark.parametrize("rule", [
    'deny module load', 'deny bpf', 'deny ptrace', 'deny mount', 'deny file write "/boot/**"',
    'deny file read "/etc/shadow"', 'audit exec "/**"', 'deny exec "/tmp/**"',
])
def test_not_essentials(tmp_path, rule):
    diags = check(tmp_path, f'policy p {{\n    subject all\n    {rule}\n}}\n')
    assert found(diags, {"P030"}) == []


def test_default_deny_under_subject_all(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject all\n    default deny\n}\n')
    assert found(diags, {"P030"}) == [("P030", 3, 5)]


def test_exe_pattern_matching_everything_counts_as_host_wide(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject exe "/**"\n    deny exec "/**"\n}\n')
    assert found(diags, {"P030"}) == [("P030", 3, 5)]


def test_exceptions_do_not_make_it_narrow(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject all except exe "/usr/bin/x"\n    deny file write "/**"\n}\n')
    assert found(diags, {"P030"}) == [("P030", 3, 5)]


def test_acknowledged_or_audit(tmp_path):
    for extra in ("acknowledge host-wide-deny", "mode audit"):
        diags = check(tmp_path, f'policy p {{\n    subject all\n    {extra}\n    deny exec "/**"\n}}\n')
        assert found(diags, {"P030"}) == [], extra


def test_exit_code_of_check_is_2(tmp_path):
    from policyc.cli.check import run_check
    import io

    p = tmp_path / "x.policy"
    p.write_text('policy p {\n    subject all\n    deny exec "/**"\n}\n')
    assert run_check([str(p)], "text", io.StringIO(), io.StringIO()) == 2
