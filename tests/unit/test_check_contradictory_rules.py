from _check_cases import fixture_findings
from _policyc_helpers import check, found


def test_fixture():
    got, want, _ = fixture_findings("W106", {"W106"})
    assert got == want


def policy(*rules: str) -> str:
    return 'policy p {\n    subject exe "/x"\n    default deny\n' + "".join(f"    {r}\n" for r in rules) + "}\n"


def test_reported_on_the_losing_rule_whatever_the_order(tmp_path):
    for rules, line in ((('deny file read "/a"', 'allow file read "/a"'), 5),
                        (('allow file read "/a"', 'deny file read "/a"'), 4)):
        diags = check(tmp_path, policy(*rules))
        (d,) = [d for d in diags.items if d.code == "W106"]
        assert d.span.line == line
        assert "deny" in d.message and len(d.notes) == 1


def test_no_common_op(tmp_path):
    assert found(check(tmp_path, policy('deny file read "/a"', 'allow file write "/a"')), {"W106"}) == []


def test_capabilities(tmp_path):
    diags = check(tmp_path, policy('allow capability setuid, setgid', 'deny capability setuid'))
    assert found(diags, {"W106", "W103"}) == [("W106", 4, 5)]


def test_not_also_reported_as_overridden(tmp_path):
    diags = check(tmp_path, policy('allow file read "/a"', 'deny file read "/a"'))
    assert found(diags, {"W103", "W102", "W101"}) == []
