from _check_cases import fixture_findings
from _policyc_helpers import check, found


def test_fixture():
    got, want, _ = fixture_findings("W107", {"W107"})
    assert got == want


def test_default_deny_is_fine(tmp_path):
    diags = check(tmp_path, 'policy p {\n    subject exe "/x"\n    default deny\n    allow bpf\n}\n')
    assert found(diags, {"W107"}) == []


def test_rules_from_a_ruleset_are_not_reported(tmp_path):
    text = 'ruleset r {\n    allow bpf\n}\npolicy p {\n    subject exe "/x"\n    use r\n}\n'
    assert found(check(tmp_path, text), {"W107"}) == []
