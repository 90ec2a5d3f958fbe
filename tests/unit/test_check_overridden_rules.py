from _check_cases import fixture_findings
from _policyc_helpers import check, found


def test_fixture():
    got, want, _ = fixture_findings("W103", {"W103"})
    assert got == want


def policy(*rules: str) -> str:
    return 'policy p {\n    subject exe "/x"\n    default deny\n' + "".join(f"    {r}\n" for r in rules) + "}\n"


def test_allow_under_broader_deny(tmp_path):
    diags = check(tmp_path, policy('deny file write "/etc/**"', 'allow file write "/etc/motd"'))
    (d,) = [d for d in diags.items if d.code == "W103"]
    assert (d.span.line, d.span.col) == (5, 5)
    assert [(n.span.line, n.span.col) for n in d.notes] == [(4, 5)]


def test_allow_under_audit(tmp_path):
    diags = check(tmp_path, policy('audit file read "/etc/**"', 'allow file read "/etc/hosts"'))
    assert found(diags, {"W103"}) == [("W103", 5, 5)]


def test_narrower_deny_does_not_override(tmp_path):
    diags = check(tmp_path, policy('deny file write "/etc/passwd"', 'allow file write "/etc/*"'))
    assert found(diags, {"W103", "W102"}) == []


def test_deny_with_fewer_ops_does_not_override(tmp_path):
    diags = check(tmp_path, policy('deny file write "/etc/**"', 'allow file read, write "/etc/motd"'))
    assert found(diags, {"W103"}) == []


def test_net_port_range(tmp_path):
    diags = check(tmp_path, policy('deny net connect tcp port 1-1023', 'allow net connect tcp 10.0.0.1 port 22',
                                   'allow net connect udp 10.0.0.1 port 53'))
    assert found(diags, {"W103"}) == [("W103", 5, 5)]
