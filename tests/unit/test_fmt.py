"""`policyc fmt`: identity fixture, idempotence, comments kept, same model after formatting."""

from __future__ import annotations

import shutil

import pytest

from policyc.diagnostics import Diagnostics
from policyc.fmt import format_text
from policyc.lower import load_program

from _policyc_helpers import FIXTURES, POLICIES, ROOT, shape

IDENTITY = FIXTURES / "fmt" / "identity.policy"
ALL_FILES = sorted([*POLICIES.rglob("*.policy"), *POLICIES.rglob("*.policy.test"), IDENTITY])


def fmt(text: str, path: str = "t.policy") -> str:
    diags = Diagnostics()
    out = format_text(path, text, diags)
    assert out is not None, [d.message for d in diags.items]
    return out


def test_identity_fixture_is_canonical():
    text = IDENTITY.read_text()
    assert fmt(text, str(IDENTITY)) == text


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_repository_files_are_formatted(path):
    text = path.read_text()
    assert fmt(text, str(path)) == text


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_same_model_after_formatting(path, tmp_path):
    """Scramble the layout, format, and the lowered model is the same."""
    text = path.read_text()
    scrambled = "\n".join(scramble(line) for line in text.split("\n"))
    out = fmt(scrambled, str(path))
    assert fmt(out, str(path)) == out
    # A copy of the repository's policies with this one file reformatted: includes and
    # NAME.policy.test companions resolve the same way.
    mirror = tmp_path / "repo"
    shutil.copytree(POLICIES, mirror / "policies")
    shutil.copytree(FIXTURES / "fmt", mirror / "tests" / "fixtures" / "fmt")
    copy = mirror / path.relative_to(ROOT)
    copy.write_text(out)
    a, b = Diagnostics(), Diagnostics()
    pa, pb = load_program([str(path)], a), load_program([str(copy)], b)
    assert (pa is None) == (pb is None)
    if pa is not None:
        assert shape(pa.policies) == shape(pb.policies)
        assert shape(pa.tests) == shape(pb.tests)


def scramble(line: str) -> str:
    """Other whitespace, same tokens: commas move to the next line (comments untouched)."""
    cut = line.find("#")
    code, comment = (line, "") if cut < 0 else (line[:cut], line[cut:])
    return code.lstrip().replace(", ", " ,\n   ") + comment


CASES = {
    "spacing and indent": (
        'policy   p{subject   exe "/x"\n  default    deny\nallow file read,write "/a","/b"}\n',
        'policy p {\n    subject exe "/x"\n    default deny\n    allow file read, write "/a", "/b"\n}\n',
    ),
    "blank lines collapse, none at block edges": (
        'policy p {\n\n\n    subject all\n\n\n\n    deny bpf\n\n}\n\n\n\ntest p {\n    expect deny bpf\n}\n',
        'policy p {\n    subject all\n\n    deny bpf\n}\n\ntest p {\n    expect deny bpf\n}\n',
    ),
    "a blank line between top-level blocks": (
        'ruleset r {\n    deny bpf\n}\npolicy p {\n    subject all\n    use r\n}\n',
        'ruleset r {\n    deny bpf\n}\n\npolicy p {\n    subject all\n    use r\n}\n',
    ),
    "statements on one line are split": (
        'policy p { subject all mode audit default deny deny bpf }\n',
        'policy p {\n    subject all\n    mode audit\n    default deny\n    deny bpf\n}\n',
    ),
    "comment inside a statement moves above it": (
        'policy p {\n    subject all\n    deny file read "/a", # why\n        "/b"\n}\n',
        'policy p {\n    subject all\n    # why\n    deny file read "/a", "/b"\n}\n',
    ),
    "comment after a closing brace stays": (
        'policy p {\n    subject all\n    deny bpf }  # end\n',
        'policy p {\n    subject all\n    deny bpf\n}  # end\n',
    ),
    "comments at the end of a block and a file": (
        'policy p {\n    subject all\n        # last\n}\n   # eof\n',
        'policy p {\n    subject all\n    # last\n}\n# eof\n',
    ),
    "long rules wrap one path per line": (
        'policy p {\n    subject all\n    deny file read "/' + "a" * 40 + '", "/' + "b" * 40 + '", "/c"\n}\n',
        'policy p {\n    subject all\n    deny file read\n        "/' + "a" * 40 + '",\n        "/' + "b" * 40
        + '",\n        "/c"\n}\n',
    ),
    "strings keep their escapes": (
        'policy p {\n    subject all\n    deny file read "/a\\"b"\n}\n',
        'policy p {\n    subject all\n    deny file read "/a\\"b"\n}\n',
    ),
    "empty file": ("", ""),
    "only comments": ("# a\n\n\n# b\n", "# a\n\n# b\n"),
}


@pytest.mark.parametrize("src,want", CASES.values(), ids=list(CASES))
def test_cases(src, want):
    out = fmt(src)
    assert out == want
    assert fmt(out) == out


def test_comments_are_all_kept():
    src = IDENTITY.read_text()
    comments = [line.strip()[line.strip().index("#"):] for line in src.splitlines() if "#" in line]
    out = fmt(src.replace("\n    ", "\n"))
    assert [line.strip()[line.strip().index("#"):] for line in out.splitlines() if "#" in line] == comments


def test_a_file_that_does_not_parse_is_not_formatted():
    diags = Diagnostics()
    assert format_text("bad.policy", "policy p {\n", diags) is None
    assert [d.code for d in diags.items] == ["P001"]
