"""CI gating for `policyc check`: --werror, inline `# policyc: ignore[...] reason`, the project
configuration (policyc.toml, [tool.policyc] in pyproject.toml, --no-config), and
`--format github`. Everything through the command line on temporary files."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from policyc.cli.main import app
from policyc.report.github import escape_data, escape_property

runner = CliRunner()

HEAD = 'policy p {\n    subject exe "/usr/bin/x"\n    default deny\n    deny file write "/etc/**"\n'
# Line 5 is overridden by the deny on line 4 (W103).
OVERRIDDEN = HEAD + '    allow file write "/etc/motd"MARKER\n}\n'
WARN = 'policy p {\n    subject exe "/usr/bin/x"\n    default deny\n    let unused = "/z"\n}\n'   # W104 at 4:9
CLEAN = 'policy p {\n    subject exe "/usr/bin/x"\n    default deny\n    allow exec "/usr/bin/y"\n}\n'
ERROR = 'policy p {\n    subject exe "/usr/bin/x"\n    allow capability net_bind_servicMARKER\n}\n'   # P012 at 3:22

GH_LINE = re.compile(r"^::(error|warning) file=([^,:]*),line=(\d+),col=(\d+)::(.*)$")


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Every test runs in its own directory: no configuration from elsewhere applies."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NO_COLOR", raising=False)
    return tmp_path


def with_marker(template: str, marker: str) -> str:
    return template.replace("MARKER", marker)


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def put(path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def diags_json(*args) -> list[dict]:
    r = run("check", "--format", "json", *args)
    return json.loads(r.stdout)


def found(r_stdout: str) -> list[tuple[str, int, int]]:
    """(code, line, col) of each diagnostic in text output."""
    return [(m.group(3), int(m.group(1)), int(m.group(2)))
            for m in re.finditer(r"^\S+:(\d+):(\d+): (?:error|warning)\[(\w+)\]", r_stdout, re.M)]


# --- --werror ----------------------------------------------------------------------------------
def test_werror_turns_warnings_into_exit_2(tmp_path):
    p = put(tmp_path / "a.policy", WARN)
    r = run("check", p)
    assert r.exit_code == 0 and found(r.stdout) == [("W104", 4, 9)]
    r = run("check", "--werror", p)
    assert r.exit_code == 2 and found(r.stdout) == [("W104", 4, 9)]
    assert "warning[W104]" in r.stdout            # still printed as a warning
    assert "--werror" in r.stderr.splitlines()[-1]


def test_werror_on_clean_input_and_in_every_format(tmp_path):
    clean, warn = put(tmp_path / "c.policy", CLEAN), put(tmp_path / "w.policy", WARN)
    assert run("check", "--werror", clean).exit_code == 0
    for fmt in ("text", "json", "sarif", "github"):
        assert run("check", "--werror", "--format", fmt, warn).exit_code == 2, fmt
        assert run("check", "--format", fmt, warn).exit_code == 0, fmt


# --- inline suppression ------------------------------------------------------------------------
def test_suppressed_warning_is_silent_and_does_not_count(tmp_path):
    p = put(tmp_path / "a.policy", with_marker(OVERRIDDEN, "   # policyc: ignore[W103] motd is managed by the image"))
    r = run("check", "--werror", p)
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    # Without the marker the same file fails under --werror.
    q = put(tmp_path / "b.policy", with_marker(OVERRIDDEN, ""))
    r = run("check", "--werror", q)
    assert r.exit_code == 2 and found(r.stdout) == [("W103", 5, 5)]


def test_suppressed_warning_in_json_sarif_and_github(tmp_path):
    p = put(tmp_path / "a.policy", with_marker(OVERRIDDEN, "  # policyc: ignore[W103]: motd is managed"))
    (d,) = diags_json(p)
    assert d["code"] == "W103" and d["location"]["line"] == 5
    assert d["suppressed"] == {"reason": "motd is managed"}
    r = run("check", "--format", "sarif", p)
    assert r.exit_code == 0
    (res,) = json.loads(r.stdout)["runs"][0]["results"]
    assert res["ruleId"] == "W103"
    assert res["suppressions"] == [{"kind": "inSource", "justification": "motd is managed"}]
    r = run("check", "--format", "github", "--werror", p)
    assert (r.exit_code, r.stdout) == (0, "")


def test_unsuppressed_results_carry_no_suppression_keys(tmp_path):
    p = put(tmp_path / "a.policy", with_marker(OVERRIDDEN, ""))
    (d,) = diags_json(p)
    assert "suppressed" not in d
    (res,) = json.loads(run("check", "-f", "sarif", p).stdout)["runs"][0]["results"]
    assert "suppressions" not in res


def test_marker_without_reason_is_w111_and_suppresses_nothing(tmp_path):
    text = with_marker(OVERRIDDEN, "   # policyc: ignore[W103]")
    p = put(tmp_path / "a.policy", text)
    r = run("check", p)
    assert r.exit_code == 0
    col = text.splitlines()[4].index("policyc:") + 1
    assert found(r.stdout) == [("W103", 5, 5), ("W111", 5, col)]
    assert run("check", "--werror", p).exit_code == 2
    assert all("suppressed" not in d for d in diags_json(p))


def test_errors_cannot_be_suppressed(tmp_path):
    p = put(tmp_path / "a.policy", with_marker(ERROR, "   # policyc: ignore[P012] will fix later"))
    r = run("check", p)
    assert r.exit_code == 2
    codes = [c for c, _, _ in found(r.stdout)]
    assert codes == ["P012", "W111"]
    ds = diags_json(p)
    assert [d["code"] for d in ds] == ["P012", "W111"] and all("suppressed" not in d for d in ds)
    assert "P012" in ds[1]["message"]


def test_unknown_code_is_reported_and_the_others_still_apply(tmp_path):
    p = put(tmp_path / "a.policy", with_marker(OVERRIDDEN, "  # policyc: ignore[W999,W103] managed elsewhere"))
    ds = diags_json(p)
    assert [(d["code"], "suppressed" in d) for d in ds] == [("W103", True), ("W111", False)]
    assert "W999" in ds[1]["message"]


@pytest.mark.parametrize("marker", ["  # policyc: ignore W103 reason", "  # policyc: ignore[] reason",
                                    "  # policyc: ignore[W111] reason"])
def test_malformed_markers_are_w111(tmp_path, marker):
    p = put(tmp_path / "a.policy", with_marker(OVERRIDDEN, marker))
    assert sorted(d["code"] for d in diags_json(p) if "suppressed" not in d) == ["W103", "W111"]


def test_several_codes_in_one_marker(tmp_path):
    # Two copies of an overridden rule on one line: W103 on the first, W101 on the second.
    line = '    allow file write "/etc/motd"  allow file write "/etc/motd"'
    p = put(tmp_path / "a.policy", HEAD + line + "  # policyc: ignore[W101, W103] both intended\n}\n")
    ds = diags_json(p)
    assert sorted(d["code"] for d in ds) == ["W101", "W103"]
    assert all(d["suppressed"] == {"reason": "both intended"} for d in ds)
    q = put(tmp_path / "b.policy", HEAD + line + "  # policyc: ignore[W103] only this one\n}\n")
    r = run("check", "--werror", q)
    assert r.exit_code == 2 and [c for c, _, _ in found(r.stdout)] == ["W101"]


def test_marker_on_another_line_or_inside_a_string_does_not_suppress(tmp_path):
    other = HEAD + '    # policyc: ignore[W103] on the wrong line\n    allow file write "/etc/motd"\n}\n'
    p = put(tmp_path / "a.policy", other)
    assert [(d["code"], "suppressed" in d) for d in diags_json(p)] == [("W103", False)]
    in_string = HEAD + '    allow file write "/etc/x# policyc: ignore[W103] not a comment"\n}\n'
    q = put(tmp_path / "b.policy", in_string)
    assert [(d["code"], "suppressed" in d) for d in diags_json(q)] == [("W103", False)]


def test_marker_after_a_multi_line_rule_covers_it(tmp_path):
    text = ('policy p {\n    subject exe "/usr/bin/x"\n    default deny\n    allow file read "/srv/**"\n'
            '    allow file read "/srv/a",\n        "/srv/b"    # policyc: ignore[W102] generated list\n'
            '    allow file read "/srv/c",\n        "/srv/d"\n}\n')
    p = put(tmp_path / "a.policy", text)
    ds = diags_json(p)
    assert [(d["code"], d["location"]["line"], d.get("suppressed")) for d in ds] == [
        ("W102", 5, {"reason": "generated list"}), ("W102", 7, None)]


def test_suppression_next_to_an_error_elsewhere(tmp_path):
    # The file does not lower (P012), so the program is gone: markers are read from disk.
    text = ('policy p {\n    subject exe "/usr/bin/x"\n    allow capability net_bind_servic\n'
            '    let unused = "/z"   # policyc: ignore[W104] kept for the next release\n}\n')
    p = put(tmp_path / "a.policy", text)
    ds = diags_json(p)
    assert [(d["code"], "suppressed" in d) for d in ds] == [("P012", False), ("W104", True)]


def test_the_summary_counts_only_what_is_reported(tmp_path):
    text = with_marker(OVERRIDDEN, "  # policyc: ignore[W103] managed").replace("}\n", '    let unused = "/z"\n}\n')
    p = put(tmp_path / "a.policy", text)
    r = run("check", p)
    assert found(r.stdout) == [("W104", 6, 9)]
    assert r.stderr == "policyc: 1 warning, 1 suppressed\n"


# --- configuration -----------------------------------------------------------------------------
def test_policyc_toml_in_a_parent_directory(tmp_path, monkeypatch):
    put(tmp_path / "policyc.toml", 'werror = true\ndisable = ["W104"]\nformat = "json"\n')
    sub = tmp_path / "deep" / "er"
    p = put(sub / "a.policy", with_marker(OVERRIDDEN, "").replace("}\n", '    let unused = "/z"\n}\n'))
    monkeypatch.chdir(sub)
    r = run("check", "a.policy")
    assert r.exit_code == 2                                          # werror
    assert [d["code"] for d in json.loads(r.stdout)] == ["W103"]     # format json, W104 disabled
    r = run("check", "--no-werror", "--format", "text", "a.policy")  # flags win
    assert r.exit_code == 0 and [c for c, _, _ in found(r.stdout)] == ["W103"]
    r = run("check", "--no-config", p)                               # the file ignored
    assert r.exit_code == 0 and [c for c, _, _ in found(r.stdout)] == ["W103", "W104"]


def test_disable_only_what_is_listed(tmp_path):
    put(tmp_path / "policyc.toml", 'disable = ["W103"]\n')
    p = put(tmp_path / "a.policy", WARN)
    r = run("check", "--werror", p)
    assert r.exit_code == 2 and found(r.stdout) == [("W104", 4, 9)]
    q = put(tmp_path / "b.policy", with_marker(OVERRIDDEN, ""))
    assert (run("check", "--werror", q).exit_code, diags_json(q)) == (0, [])


def test_pyproject_tool_policyc(tmp_path, monkeypatch):
    put(tmp_path / "pyproject.toml", '[project]\nname = "x"\n\n[tool.policyc]\nwerror = true\n')
    p = put(tmp_path / "a.policy", WARN)
    assert run("check", p).exit_code == 2
    # A pyproject.toml without [tool.policyc] is passed over for the next directory up.
    sub = tmp_path / "sub"
    put(sub / "pyproject.toml", '[project]\nname = "y"\n')
    monkeypatch.chdir(sub)
    assert run("check", p).exit_code == 2
    # policyc.toml wins over pyproject.toml in the same directory; the nearest file wins.
    put(sub / "policyc.toml", "werror = false\n")
    assert run("check", p).exit_code == 0


@pytest.mark.parametrize("name,text,words", [
    ("policyc.toml", "werorr = true\n", ["policyc.toml", "werorr", "werror"]),
    ("policyc.toml", "werror = 1\n", ["policyc.toml", "werror", "true or false"]),
    ("policyc.toml", 'werror = "yes"\n', ["policyc.toml", "werror"]),
    ("policyc.toml", 'disable = "W103"\n', ["policyc.toml", "disable", "list"]),
    ("policyc.toml", 'disable = ["P012"]\n', ["policyc.toml", "P012", "error"]),
    ("policyc.toml", 'disable = ["W1O3"]\n', ["policyc.toml", "W1O3"]),
    ("policyc.toml", 'format = "xml"\n', ["policyc.toml", "format", "xml"]),
    ("policyc.toml", "werror = \n", ["policyc.toml", "TOML"]),
    ("pyproject.toml", "[tool.policyc]\nformats = 'json'\n", ["pyproject.toml", "tool.policyc.formats"]),
])
def test_bad_configuration_is_an_error_naming_the_file(tmp_path, name, text, words):
    put(tmp_path / name, text)
    p = put(tmp_path / "a.policy", CLEAN)
    r = run("check", p)
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith("policyc: error: ") and r.stderr.count("\n") == 1
    for w in words:
        assert w in r.stderr, (w, r.stderr)
    assert "Traceback" not in r.stderr
    assert run("check", "--no-config", p).exit_code == 0


# --- --format github ---------------------------------------------------------------------------
def test_github_format_lines(tmp_path):
    put(tmp_path / "a.policy", with_marker(ERROR, ""))
    put(tmp_path / "b.policy", WARN.replace("policy p", "policy q"))
    r = run("check", "--format", "github", "a.policy", "b.policy")
    assert r.exit_code == 2 and r.stderr == ""
    lines = r.stdout.splitlines()
    parsed = [GH_LINE.match(x) for x in lines]
    assert all(parsed), lines
    assert [(m.group(1), m.group(2), int(m.group(3)), int(m.group(4))) for m in parsed] == [
        ("error", "a.policy", 3, 22), ("warning", "b.policy", 4, 9)]
    msg = parsed[0].group(5)
    assert msg.startswith("P012: unknown capability `net_bind_servic`%0Ahelp: did you mean")
    assert "\n" not in msg and "\r" not in msg


def test_github_format_escapes(tmp_path):
    weird = tmp_path / "we,ird:dir"
    text = HEAD + '    allow file write "/etc/100%"\n}\n'
    p = put(weird / "a.policy", text)
    r = run("check", "-f", "github", p)
    (line,) = r.stdout.splitlines()
    assert line.startswith("::warning file=we%2Cird%3Adir/a.policy,line=5,col=5::W103: ")
    assert '"/etc/100%25"' in line and "%0Ahelp: " in line
    assert escape_property("/x:y,z%\n") == "/x%3Ay%2Cz%25%0A"
    assert escape_data("50%\r\nok: a,b") == "50%25%0D%0Aok: a,b"


def test_github_is_the_configured_default(tmp_path):
    put(tmp_path / "policyc.toml", 'format = "github"\n')
    p = put(tmp_path / "a.policy", WARN)
    r = run("check", p)
    assert r.exit_code == 0 and GH_LINE.match(r.stdout.splitlines()[0]).group(1) == "warning"
