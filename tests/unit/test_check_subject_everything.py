from _check_cases import fixture_findings
from _policyc_helpers import check, found


def test_fixture():
    got, want, _ = fixture_findings("W108", {"W108"})
    assert got == want


def test_narrow_patterns_are_fine(tmp_path):
    for pattern in ("/usr/**", "/**/bin/x", "/*", "/?**"):
        diags = check(tmp_path, f'policy p {{\n    subject exe "{pattern}"\n    deny bpf\n}}\n')
        assert found(diags, {"W108"}) == [], pattern
