from policyc.diagnostics import Severity

from _check_cases import fixture_findings
from _policyc_helpers import check, found


def test_fixture():
    got, want, diags = fixture_findings("W101", {"W101"})
    assert got == want
    assert all(d.severity is Severity.WARNING for d in diags.items if d.code == "W101")


def test_note_points_at_first_copy(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject all\n    deny bpf\n    deny bpf\n}\n')
    (d,) = [d for d in diags.items if d.code == "W101"]
    assert (d.span.line, d.span.col) == (4, 5)
    assert [(n.span.line, n.span.col) for n in d.notes] == [(3, 5)]


def test_ops_order_does_not_matter(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject exe "/x"\n    default deny\n'
                            '    allow file read, write "/a"\n    allow file write, read "/a"\n}\n')
    assert found(diags, {"W101"}) == [("W101", 5, 5)]


def test_family_without_ops_is_all_ops(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject exe "/x"\n    default deny\n'
                            '    deny module\n    deny module load\n}\n')
    assert found(diags, {"W101"}) == [("W101", 5, 5)]


def test_same_rule_in_two_policies_is_fine(tmp_path):
    diags = check(tmp_path, 'policy a {\n    subject exe "/x"\n    deny bpf\n}\n'
                            'policy b {\n    subject exe "/y"\n    deny bpf\n}\n')
    assert found(diags, {"W101"}) == []


def test_ruleset_used_by_two_policies_reported_once(tmp_path):
    text = ('ruleset r {\n    deny bpf\n    deny bpf\n}\n'
            'policy a {\n    subject exe "/x"\n    use r\n}\n'
            'policy b {\n    subject exe "/y"\n    use r\n}\n')
    assert found(check(tmp_path, text), {"W101"}) == [("W101", 3, 5)]
