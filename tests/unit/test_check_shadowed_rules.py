from _check_cases import fixture_findings
from _policyc_helpers import check, found


def test_fixture():
    got, want, _ = fixture_findings("W102", {"W102"})
    assert got == want


def policy(*rules: str) -> str:
    return 'policy p {\n    subject exe "/x"\n    default deny\n' + "".join(f"    {r}\n" for r in rules) + "}\n"


def test_the_example_from_the_brief(tmp_path):
    diags = check(tmp_path, policy('allow file read "/srv/**"', 'allow file read "/srv/www/index.html"'))
    (d,) = [d for d in diags.items if d.code == "W102"]
    assert (d.span.line, d.span.col) == (5, 5)
    assert [(n.span.line, n.span.col) for n in d.notes] == [(4, 5)]


def test_order_does_not_matter(tmp_path):
    diags = check(tmp_path, policy('allow file read "/srv/www/index.html"', 'allow file read "/srv/**"'))
    assert found(diags, {"W102"}) == [("W102", 4, 5)]


def test_one_path_of_several_points_at_the_path(tmp_path):
    diags = check(tmp_path, policy('allow file read "/srv/**"', 'allow file read "/etc/x", "/srv/a"'))
    assert found(diags, {"W102"}) == [("W102", 5, 31)]


def test_dir_double_star_does_not_cover_dir_itself(tmp_path):
    diags = check(tmp_path, policy('allow file read "/srv/**"', 'allow file read "/srv"'))
    assert found(diags, {"W102"}) == []


def test_star_does_not_cross_slash(tmp_path):
    diags = check(tmp_path, policy('allow file read "/srv/*"', 'allow file read "/srv/a/b"'))
    assert found(diags, {"W102"}) == []
    diags = check(tmp_path, policy('allow file read "/srv/*/b"', 'allow file read "/srv/a/b"'))
    assert found(diags, {"W102"}) == [("W102", 5, 5)]


def test_equal_globs_report_only_one(tmp_path):
    diags = check(tmp_path, policy('allow exec "/usr/bin/{a,b}"', 'allow exec "/usr/bin/{b,a}"'))
    assert found(diags, {"W102"}) == [("W102", 5, 5)]


def test_union_of_ops_from_two_rules(tmp_path):
    diags = check(tmp_path, policy('allow file read "/a/**"', 'allow file write "/a/**"',
                                   'allow file read, write "/a/b"'))
    assert found(diags, {"W102"}) == [("W102", 6, 5)]


def test_other_target_is_not_covered(tmp_path):
    diags = check(tmp_path, policy('allow signal kill to exe "/usr/bin/a"', 'allow signal kill'))
    assert found(diags, {"W102"}) == [("W102", 4, 5)]


def test_rule_from_ruleset_covered_by_policy_rule_is_not_reported(tmp_path):
    text = ('ruleset base {\n    allow file read "/usr/lib/locale/x"\n}\n' + policy('use base', 'allow file read "/usr/**"'))
    assert found(check(tmp_path, text), {"W102"}) == []


def test_policy_rule_covered_by_ruleset_rule_is_reported(tmp_path):
    text = ('ruleset base {\n    allow file read "/usr/**"\n}\n' + policy('use base', 'allow file read "/usr/lib/x"'))
    assert found(check(tmp_path, text), {"W102"}) == [("W102", 8, 5)]


def test_many_rules_do_not_hang(tmp_path):
    rules = [f'allow file read "/srv/app{i}/**"' for i in range(2000)]
    rules += [f'allow file read "/srv/app{i}/index.html"' for i in range(0, 2000, 100)]
    assert len(found(check(tmp_path, policy(*rules)), {"W102"})) == 20
