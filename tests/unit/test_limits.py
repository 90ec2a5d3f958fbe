"""`limit N/UNIT` on a rule: parsed, lowered, checked, formatted, and written into the
manifest and the `rule_limits` map; `policyc build --ringbuf-size`."""

from __future__ import annotations


import pytest
from typer.testing import CliRunner

from policyc.cli.main import app
from policyc.codegen import tables as T
from policyc.diagnostics import Diagnostics
from policyc.fmt import format_text
from policyc.deploy import read_manifest

from _policyc_helpers import check, load, write

def fmt(text: str) -> str:
    diags = Diagnostics()
    out = format_text("t.policy", text, diags)
    assert out is not None, [str(d) for d in diags.items]
    return out


HEAD = 'policy p {\n    subject exe "/usr/bin/x"\n'


def rules_of(tmp_path, body):
    program, diags = load(tmp_path, HEAD + body + "}\n")
    assert program is not None, [str(d) for d in diags.items]
    return program.policies[0].rules


@pytest.mark.parametrize("text,count,window", [
    ("100/s", 100, 1), ("5/min", 5, 60), ("2/h", 2, 3600), ("1/hour", 1, 3600), ("7/SEC", 7, 1),
])
def test_limit_is_lowered(tmp_path, text, count, window):
    (r,) = rules_of(tmp_path, f'    deny file read "/etc/shadow" limit {text}\n')
    assert (r.limit.count, r.limit.window_s, r.limit.text) == (count, window, text)
    assert r.text.endswith(f"limit {text}")    # the manifest's rule text shows it


def test_limit_after_target_and_on_families_without_objects(tmp_path):
    a, b = rules_of(tmp_path, '    deny signal term to exe "/usr/bin/sleep" limit 3/s\n    audit capability limit 1/s\n')
    assert a.target is not None and a.limit.count == 3
    assert b.family == "capability" and b.limit.count == 1


def test_limit_is_still_a_name_elsewhere(tmp_path):
    program, diags = load(tmp_path, 'policy limit {\n    subject all\n    let limit = "/x"\n'
                                    '    deny file read "${limit}" limit 1/s\n}\n')
    assert program is not None and not diags.has_errors, [str(d) for d in diags.items]


@pytest.mark.parametrize("text,msg", [
    ("0/s", "the count must be 1 to 1,000,000"),
    ("100/day", "unknown unit `day`"),
    ("2000000/s", "the count must be 1 to 1,000,000"),
])
def test_bad_limit_is_p025_at_the_limit(tmp_path, text, msg):
    diags = check(tmp_path, HEAD + f'    deny file read "/a" limit {text}\n}}\n')
    (d,) = [d for d in diags.items if d.code == "P025"]
    assert msg in d.message and (d.span.line, d.span.col) == (3, 31)


def test_limit_without_a_rate_is_a_syntax_error(tmp_path):
    diags = check(tmp_path, HEAD + '    deny file read "/a" limit\n}\n')
    assert [d.code for d in diags.items] == ["P001"]
    assert "a rate such as `100/s`" in " ".join(diags.items[0].hints)


def test_limit_on_allow_is_w110(tmp_path):
    diags = check(tmp_path, HEAD + '    default deny\n    allow file read "/a" limit 10/s\n}\n')
    (d,) = [d for d in diags.items if d.code == "W110"]
    assert (d.span.line, d.span.col) == (4, 32)   # the rate


def test_fmt_keeps_limits_and_wraps_them_with_the_tail():
    src = 'policy p {\n  subject all\n  deny file read "/a" limit   10/min\n  deny signal to exe "/x" limit 1/s\n}\n'
    out = fmt(src)
    assert '    deny file read "/a" limit 10/min\n' in out
    assert '    deny signal to exe "/x" limit 1/s\n' in out
    long = HEAD + '    deny file read "/' + "a" * 50 + '", "/' + "b" * 50 + '" limit 5/s\n}\n'
    out = fmt(long)
    assert out.splitlines()[-2].endswith('" limit 5/s')
    assert fmt(out) == out


def test_rule_limits_map_and_config_flag(tmp_path):
    program, _ = load(tmp_path, HEAD + '    default allow\n    deny file read "/a"\n'
                                       '    deny file read "/b" limit 100/s\n    audit bpf limit 2/min\n'
                                       '    allow file read "/c" limit 9/s\n}\n')
    (policy,) = program.policies
    m = T.limit_map(policy)["rule_limits"]
    assert m.max_entries == 4   # ids 1..4, indexed by id; the allow rule's limit is dropped
    got = {T.U32.unpack(k)[0]: T.RULE_LIMIT.unpack(v) for k, v in m.entries}
    assert got == {2: (0, 100, 1_000_000_000, 0, 0), 3: (0, 2, 60_000_000_000, 0, 0)}
    flags = T.CONFIG.unpack(T.config_map(policy).entries[0][1])[0]
    assert flags & T.CFG_RATE_LIMITS
    program, _ = load(tmp_path, HEAD + '    deny file read "/a"\n}\n', name="u.policy")
    assert not T.CONFIG.unpack(T.config_map(program.policies[0]).entries[0][1])[0] & T.CFG_RATE_LIMITS
    assert T.limit_map(program.policies[0])["rule_limits"].max_entries == 1


runner = CliRunner()


def test_build_ringbuf_size_and_rule_limits_in_manifest(tmp_path):
    (p,) = write(tmp_path, {"a.policy": HEAD + '    deny file read "/a" limit 10/s\n}\n'})
    r = runner.invoke(app, ["build", p, "-o", str(tmp_path / "out"), "--ringbuf-size", "64K"])
    assert r.exit_code == 0, r.output
    man = read_manifest(tmp_path / "out" / "p.manifest.json")
    assert man["ringbuf_bytes"] == 65536
    assert man["rules"][0]["limit"] == {"count": 10, "window_s": 1, "text": "10/s"}
    assert man["maps"]["rule_limits"]["count"] == 1


@pytest.mark.parametrize("size", ["3M", "1000", "2G", "lots"])
def test_build_bad_ringbuf_size_is_exit_2(tmp_path, size):
    (p,) = write(tmp_path, {"a.policy": HEAD + '    deny bpf\n}\n'})
    r = runner.invoke(app, ["build", p, "-o", str(tmp_path / "out"), "--ringbuf-size", size])
    assert r.exit_code == 2
    assert "--ringbuf-size" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()


def test_default_limit_is_lowered_formatted_and_at_index_0(tmp_path):
    program, diags = load(tmp_path, HEAD + '    default deny limit 50/s\n    deny file read "/b" limit 2/s\n}\n')
    assert program is not None, [str(d) for d in diags.items]
    (policy,) = program.policies
    assert (policy.default_limit.count, policy.default_limit.window_s) == (50, 1)
    m = T.limit_map(policy)["rule_limits"]
    got = {T.U32.unpack(k)[0]: T.RULE_LIMIT.unpack(v)[1] for k, v in m.entries}
    assert got == {0: 50, 1: 2}
    assert fmt(HEAD + "  default   deny limit 50/s\n}\n").splitlines()[2] == "    default deny limit 50/s"


def test_default_allow_limit_is_w110_and_not_in_the_map(tmp_path):
    diags = check(tmp_path, HEAD + '    default allow limit 5/s\n    deny bpf\n}\n')
    (d,) = [d for d in diags.items if d.code == "W110"]
    assert (d.span.line, d.span.col) == (3, 25)
    program, _ = load(tmp_path, HEAD + '    default allow limit 5/s\n    deny bpf\n}\n', name="v.policy")
    (policy,) = program.policies
    assert T.limit_map(policy)["rule_limits"].entries == ()
    assert not T.CONFIG.unpack(T.config_map(policy).entries[0][1])[0] & T.CFG_RATE_LIMITS


def test_mode_takes_no_limit(tmp_path):
    diags = check(tmp_path, HEAD + '    mode audit limit 5/s\n}\n')
    assert [d.code for d in diags.items] == ["P001"]
