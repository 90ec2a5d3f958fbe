"""Every parser and lowering diagnostic: its code and where it points (not its text)."""

from __future__ import annotations

import pytest

from policyc.diagnostics import Severity

from _policyc_helpers import found, load

P = 'policy p {\n    subject exe "/usr/bin/x"\n'   # two lines; a case's own lines start at 3

CASES = [
    # (id, text, [(code, line, col)])
    ("P001 unexpected token", P + '    allow file read "/x" "/y"\n}\n', [("P001", 3, 26)]),
    ("P001 unexpected character", P + "    allow file read @\n}\n", [("P001", 3, 21)]),
    ("P001 unterminated string", P + '    allow exec "/usr/bin\n}\n', [("P001", 3, 16)]),
    ("P001 missing brace", P + "    deny bpf\n", [("P001", 3, 13)]),
    ("P001 several errors", P + '    allow file read "/x" "/y"\n    deny bpf\n    deny exec @\n}\n',
     [("P001", 3, 26), ("P001", 5, 15)]),
    ("P010 unknown family", P + '    allow fiel read "/x"\n}\n', [("P010", 3, 11)]),
    ("P011 unknown op", P + '    allow file raed "/x"\n}\n', [("P011", 3, 16)]),
    ("P011 family without ops", P + '    allow exec run "/x"\n}\n', [("P011", 3, 16)]),
    ("P012 unknown capability", P + "    allow capability net_bind_servic\n}\n", [("P012", 3, 22)]),
    ("P013 unknown signal", P + "    deny signal kil\n}\n", [("P013", 3, 17)]),
    ("P014 undefined variable", P + '    allow file read "/srv/${web}/x"\n}\n', [("P014", 3, 27)]),
    ("P014 unclosed", P + '    allow file read "/srv/${web"\n}\n', [("P014", 3, 27)]),
    ("P015 mode twice", P + "    mode enforce\n    mode audit\n}\n", [("P015", 4, 5)]),
    ("P015 let twice", P + '    let a = "/x"\n    let a = "/y"\n    deny exec "${a}"\n}\n', [("P015", 4, 9)]),
    ("P015 policy twice", P + "}\n" + P + "}\n", [("P015", 4, 8)]),
    ("P016 no subject", "policy p {\n    deny bpf\n}\n", [("P016", 1, 8)]),
    ("P017 bad mode", P + "    mode enforcing\n}\n", [("P017", 3, 10)]),
    ("P017 bad default", P + "    default maybe\n}\n", [("P017", 3, 13)]),
    ("P017 bad acknowledgement", P + "    acknowledge host-wide\n}\n", [("P017", 3, 17)]),
    ("P018 relative path", P + '    allow file read "etc/x"\n}\n', [("P018", 3, 21)]),
    ("P018 relative subject", 'policy p {\n    subject exe "nginx"\n}\n', [("P018", 2, 17)]),
    ("P018 relative alternative", P + '    allow file read "{/a,b}/x"\n}\n', [("P018", 3, 21)]),
    ("P018 unclosed brace", P + '    allow file read "/a/{b,c"\n}\n', [("P018", 3, 25)]),
    ("P018 unmatched brace", P + '    allow file read "/a/b}"\n}\n', [("P018", 3, 26)]),
    ("P019 paths on capability", P + '    allow capability "/x"\n}\n', [("P019", 3, 22)]),
    ("P019 address on file", P + "    allow file read 10.0.0.1\n}\n", [("P019", 3, 21)]),
    ("P019 bad address", P + "    allow net connect 10.0.0.1/8\n}\n", [("P019", 3, 23)]),
    ("P019 target on bpf", P + '    deny bpf to exe "/x"\n}\n', [("P019", 3, 14)]),
    ("P020 port too large", P + "    allow net bind port 70000\n}\n", [("P020", 3, 25)]),
    ("P020 reversed range", P + "    allow net bind port 90-80\n}\n", [("P020", 3, 25)]),
    ("P021 unknown ruleset", P + "    use bsae\n}\nruleset base {\n}\n", [("P021", 3, 9)]),
    ("P005 ruleset uses itself", "ruleset r {\n    use r\n}\n" + P + "    use r\n}\n", [("P005", 2, 5)]),
    ("P022 test of unknown policy", P + "}\ntest q {\n    expect deny bpf\n}\n", [("P022", 4, 6)]),
    ("P023 test needs exe", 'policy p {\n    subject exe "/usr/bin/*"\n}\ntest p {\n    expect deny bpf\n}\n',
     [("P023", 4, 6)]),
    ("P024 two paths", P + '}\ntest p {\n    expect deny exec "/a", "/b"\n}\n', [("P024", 5, 22)]),
    ("P024 no path", P + "}\ntest p {\n    expect deny file read\n}\n", [("P024", 5, 5)]),
    ("P011 expectation op", P + '}\ntest p {\n    expect deny file raed "/x"\n}\n', [("P011", 5, 22)]),
    ("W104 unused let", P + '    let unused = "/x"\n}\n', [("W104", 3, 9)]),
    ("W104 unused top-level let", 'let top = "/x"\n' + P + "}\n", [("W104", 1, 5)]),
    ("W105 listed twice", P + "    deny capability setuid, setuid\n}\n", [("W105", 3, 29)]),
]


@pytest.mark.parametrize("text,want", [(t, w) for _, t, w in CASES], ids=[c[0] for c in CASES])
def test_code_and_span(tmp_path, text, want):
    program, diags = load(tmp_path, text)
    assert found(diags) == sorted(want)
    errors = [d for d in diags.items if d.severity is Severity.ERROR]
    assert (program is None) == bool(errors)


@pytest.mark.parametrize("text,hint", [
    (P + '    allow fiel read "/x"\n}\n', "`file`"),
    (P + '    allow file raed "/x"\n}\n', "`read`"),
    (P + "    allow capability net_bind_servic\n}\n", "`net_bind_service`"),
    (P + "    deny signal kil\n}\n", "`kill`"),
    (P + "    mode enforcing\n}\n", "`enforce`"),
    (P + "    use bsae\n}\nruleset base {\n}\n", "`base`"),
    (P + '    let webroot = "/srv"\n    allow file read "${webrot}/x"\n}\n', "`webroot`"),
])
def test_did_you_mean(tmp_path, text, hint):
    _, diags = load(tmp_path, text)
    assert any(hint in h and "did you mean" in h for d in diags.items for h in d.hints)


def test_capability_and_signal_prefixes_are_accepted(tmp_path):
    program, diags = load(tmp_path, P + "    allow capability CAP_SETUID\n    deny signal SIGKILL\n}\n")
    assert program is not None and not diags.items
    assert program.policies[0].rules[0].ops == ("setuid",)
    assert program.policies[0].rules[1].ops == ("kill",)


def test_missing_include(tmp_path):
    program, diags = load(tmp_path, 'include "nope.policy"\n' + P + "}\n")
    assert program is None and found(diags) == [("P004", 1, 9)]


def test_include_cycle(tmp_path):
    program, diags = load(tmp_path, 'include "b.policy"\n' + P + "}\n", name="a.policy",
                          extra={"b.policy": 'include "a.policy"\n'})
    assert program is None
    (d,) = diags.items
    assert d.code == "P005" and d.notes


def test_self_include(tmp_path):
    program, diags = load(tmp_path, 'include "t.policy"\n' + P + "}\n")
    assert program is None and [d.code for d in diags.items] == ["P005"]


def test_include_resolves_relative_to_the_including_file(tmp_path):
    program, diags = load(tmp_path, 'include "sub/b.policy"\n' + P + "    use r\n}\n",
                          extra={"sub/b.policy": 'include "c.policy"\n', "sub/c.policy": "ruleset r {\n    deny bpf\n}\n"})
    assert program is not None, diags.items
    assert program.policies[0].rules[0].span.file.endswith("c.policy")


@pytest.mark.parametrize("data,line,col", [
    (b"policy p {\xff}\n", 1, 11),
    (b"policy p {\n  \x00 }\n", 2, 3),
])
def test_binary_input(tmp_path, data, line, col):
    from policyc.diagnostics import Diagnostics
    from policyc.lower import load_program

    p = tmp_path / "bin.policy"
    p.write_bytes(data)
    diags = Diagnostics()
    assert load_program([str(p)], diags) is None
    assert found(diags) == [("P006", line, col)]


def test_unreadable_paths(tmp_path):
    from policyc.diagnostics import Diagnostics
    from policyc.lower import load_program

    diags = Diagnostics()
    assert load_program([str(tmp_path / "missing.policy"), str(tmp_path)], diags) is None
    assert [d.code for d in diags.items] == ["P006", "P006"]


def test_rule_text_of_a_multi_line_rule_leaves_comments_out(tmp_path):
    program, diags = load(tmp_path, P + '    deny file read "/a#b",  # why\n        "/c"  # end\n}\n')
    assert program is not None, diags.items
    assert program.policies[0].rules[0].text == 'deny file read "/a#b", "/c"'


def test_byte_order_mark_is_ignored(tmp_path):
    from policyc.diagnostics import Diagnostics
    from policyc.lower import load_program

    p = tmp_path / "bom.policy"
    p.write_bytes(b"\xef\xbb\xbf" + P.encode() + b"    deny bpf\n}\n")
    diags = Diagnostics()
    program = load_program([str(p)], diags)
    assert program is not None and program.policies[0].rules[0].span.col == 5


def test_every_anonymous_terminal_has_a_name_in_messages():
    # Lark names a keyword after itself unless that name is taken (`port`: PORT is the
    # number), and then calls it __ANON_N: messages must never show that name.
    import lark

    from policyc.parse import _LARK_OPTIONS, _TERMINAL_NAMES, GRAMMAR

    anonymous = {t.name for t in lark.Lark(GRAMMAR.read_text(), **_LARK_OPTIONS).terminals
                 if t.name.startswith("__ANON")}
    assert anonymous <= set(_TERMINAL_NAMES), anonymous - set(_TERMINAL_NAMES)


def test_a_bad_net_rule_never_names_an_anonymous_terminal():
    from policyc.diagnostics import Diagnostics
    from policyc.parse import parse_text

    for text in ("policy p {\n    allow net connect tcp 10.0.0.1 port\n}\n",
                 "policy p {\n    allow net bind, connect tcp, udp 127.0.0.0/8\n}\n",
                 "policy p {\n    allow net connect tcp 10.0.0.1 80\n}\n"):
        diags = Diagnostics()
        assert parse_text("p.policy", text, diags) is None
        messages = " ".join(f"{d.message} {d.hints!r} {d.notes!r}" for d in diags.items)
        assert messages and "anon" not in messages.lower(), messages
