"""`policyc report`: top rules, subjects, objects, per hour; tables and JSON; --since."""

from __future__ import annotations

import io
import json

from policyc.audit.logfile import parse_since, read_records
from policyc.audit.report import summarize
from policyc.audit.schema import dropped_record, suppressed_record
from policyc.cli.report_cmd import run_report

from _audit_helpers import record, write_log

HOUR = 3600 * 10**9
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z


def _log(tmp_path):
    recs = [record(offset_ns=T0) for _ in range(3)]
    recs += [record(offset_ns=T0 + HOUR, path="/srv/x", rule_id=0, reason=1, comm=b"nginx", exe="/usr/sbin/nginx")]
    recs += [record(offset_ns=T0 + 2 * HOUR, decision=1, mode=1, exe=None)]
    recs.append(dropped_record(policy="web", instance="web", host="h1", now_ns=T0 + 2 * HOUR, unattributed=0,
                               rules=[{"rule_id": 1, "rule": "p.policy:6:5", "rule_text": "t", "count": 4}]))
    recs.append(suppressed_record(policy="web", instance="web", host="h1", now_ns=T0 + 2 * HOUR,
                                  rules=[{"rule_id": 2, "rule": "p.policy:7:5", "rule_text": "u", "limit": "5/s",
                                          "count": 9}]))
    return write_log(tmp_path / "a.jsonl", recs)


def test_summary_counts(tmp_path):
    s = summarize(read_records([_log(tmp_path)]))
    assert s["events"] == 5 and s["decisions"] == {"audit": 1, "deny": 4} and s["dropped"] == 4
    strip = lambda rows, *keys: [{k: v for k, v in r.items() if k not in keys} for r in rows]  # noqa: E731
    assert strip(s["top_rules"], "location")[0] == {"policy": "web", "rule": "p.policy:6:5",
                                                    "text": 'deny file read "/etc/shadow"', "count": 4}
    assert {"policy": "web", "rule": "p.policy:4:5", "text": "default deny", "count": 1} in strip(s["top_rules"],
                                                                                                 "location")
    assert strip(s["top_objects"], "fields")[0] == {"family": "file", "op": "read", "object": "/etc/shadow", "count": 4}
    assert strip(s["top_subjects"], "exe", "name") == [{"subject": "/usr/bin/cat", "count": 3},
                                                       {"subject": "/usr/sbin/nginx", "count": 1},
                                                       {"subject": "comm cat", "count": 1}]
    assert s["per_hour"] == [{"hour": "2023-11-14T22:00Z", "count": 3}, {"hour": "2023-11-14T23:00Z", "count": 1},
                             {"hour": "2023-11-15T00:00Z", "count": 1}]
    assert s["dropped_by_rule"] == [{"policy": "web", "rule": "p.policy:6:5", "count": 4}]
    assert s["suppressed"] == 9
    assert s["suppressed_by_rule"] == [{"policy": "web", "rule": "p.policy:7:5", "limit": "5/s", "count": 9}]
    assert s["first"].startswith("2023-11-14T22:13:25")


def test_since_filters(tmp_path):
    s = summarize(read_records([_log(tmp_path)]), since_ns=T0 + HOUR)
    assert s["events"] == 2 and s["dropped"] == 4


def test_parse_since_forms():
    now = 10**19
    assert parse_since("30m", now) == now - 1800 * 10**9
    assert parse_since("2h", now) == now - 7200 * 10**9
    assert parse_since("2023-11-14T22:13:20Z") == T0
    assert parse_since("2023-11-14T22:13:20") == T0
    assert parse_since("1700000000") == T0
    import pytest

    with pytest.raises(ValueError):
        parse_since("yesterday")


def test_cli_json_and_tables(tmp_path):
    log = _log(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    assert run_report([log], None, "json", 10, out, err) == 0
    assert json.loads(out.getvalue())["events"] == 5
    out = io.StringIO()
    assert run_report([log], "2023-11-14T23:00:00Z", "text", 10, out, err) == 0
    text = out.getvalue()
    assert "2 events" in text and "top rules" in text and "per hour" in text and "p.policy:6:5" in text
    assert "dropped" in text


def test_cli_bad_since_and_no_files(tmp_path):
    err = io.StringIO()
    assert run_report([_log(tmp_path)], "soon", "text", 10, io.StringIO(), err) == 2
    assert "--since" in err.getvalue()
    err = io.StringIO()
    assert run_report([], None, "text", 10, io.StringIO(), err) == 2


def test_json_summary_is_structured_and_versioned(tmp_path):
    from policyc.audit.logfile import read_records

    s = summarize(read_records([_log(tmp_path)]))
    assert s["version"] == 2
    assert s["top_rules"][0]["location"] == {"file": "p.policy", "line": 6, "col": 5}
    assert s["top_subjects"][0] == {"subject": "/usr/bin/cat", "exe": "/usr/bin/cat", "name": "cat", "count": 3}
    assert {"subject": "comm cat", "exe": None, "name": "cat", "count": 1} in s["top_subjects"]
    assert s["top_objects"][0]["fields"] == {"path": "/etc/shadow"}
