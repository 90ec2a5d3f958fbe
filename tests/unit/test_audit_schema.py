"""The audit log's schema (docs/audit-log.md), drop accounting, the sinks and `policyc audit`'s
CLI edges that need no kernel."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from policyc.audit.reader import DropTracker
from policyc.audit.schema import SCHEMA_VERSION, as_schema1, dropped_record, format_text, suppressed_record
from policyc.audit.sinks import Fanout, JournalSink, RotatingFileSink, StreamSink, journal_fields, render

from _audit_helpers import record

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "audit-log.md").read_text()


def _keys(rec: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in rec.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _keys(v, prefix + k + ".")
    return out


def _all_event_records():
    addr = bytes(10) + b"\xff\xff" + bytes([10, 1, 2, 3])
    return [record(), record(family="net", hook="socket_connect", port=1, proto=1, addr=addr, path=""),
            record(family="capability", hook="capable", aux=21, path=""),
            record(family="signal", hook="task_kill", aux=9, target_pid=5, path="/x"),
            record(family="module", hook="kernel_module_request", path=""), record(rule_id=0, reason=2, path="")]


def test_every_field_is_documented():
    recs = _all_event_records() + [dropped_record(policy="p", instance="p", host="h", rules=[], unattributed=0),
                                   suppressed_record(policy="p", instance="p", host="h", rules=[])]
    keys = set().union(*(_keys(r) for r in recs))
    undocumented = sorted(k for k in keys if f"`{k}`" not in DOC and not re.search(rf"`{re.escape(k)}`,", DOC))
    assert undocumented == []


def test_schema_version_and_types():
    assert SCHEMA_VERSION == 2
    for r in _all_event_records():
        assert r["schema"] == 2 and r["type"] == "event"
        json.dumps(r)  # JSON-able
        assert as_schema1(r)["schema"] == 1 and "subject" in as_schema1(r)


def test_every_schema1_field_is_documented():
    recs = [as_schema1(r) for r in _all_event_records()]
    keys = set().union(*(_keys(r) for r in recs))
    undocumented = sorted(k for k in keys if f"`{k}`" not in DOC and not re.search(rf"`{re.escape(k)}`,", DOC))
    assert undocumented == []


def test_dropped_record_counts():
    rec = dropped_record(policy="p", instance="p-1", host="h",
                         rules=[{"rule_id": 3, "rule": "a:1:1", "rule_text": "x", "count": 5}], unattributed=2,
                         now_ns=10**18)
    assert rec["count"] == 7 and rec["type"] == "dropped" and rec["time"].startswith("2001-09-09T01:46:40")
    assert "DROPPED policy=p count=7 (a:1:1: 5, unattributed: 2)" in format_text(rec)


def test_suppressed_record_counts_and_text():
    rec = suppressed_record(policy="p", instance="p-1", host="h", now_ns=10**18,
                            rules=[{"rule_id": 3, "rule": "a:1:1", "rule_text": "x", "limit": "10/s", "count": 5},
                                   {"rule_id": 4, "rule": "a:2:1", "rule_text": "y", "limit": "1/min", "count": 2}])
    assert rec["count"] == 7 and rec["type"] == "suppressed"
    assert "SUPPRESSED policy=p count=7 (a:1:1 (limit 10/s): 5, a:2:1 (limit 1/min): 2)" in format_text(rec)
    f = journal_fields(rec)
    assert f["POLICYC_SUPPRESSED"] == "7" and f["POLICYC_TYPE"] == "suppressed" and json.loads(f["POLICYC_JSON"]) == rec


def test_drop_tracker_reports_growth_once():
    t = DropTracker()
    assert t.update(7, {1: 5, 0: 2}, 7, False) == ({1: 5, 0: 2}, 0)
    assert t.update(7, {1: 5, 0: 2}, 7, False) == ({}, 0)
    assert t.update(7, {1: 9, 0: 2}, 11, False) == ({1: 4}, 0)


def test_drop_tracker_gap_is_unattributed_only_when_map_full_or_missing():
    t = DropTracker()
    assert t.update(7, {1: 5}, 6, False) == ({1: 5}, 0)  # an in-flight rule increment
    full = DropTracker()
    assert full.update(7, {1: 5}, 8, True) == ({1: 5}, 3)
    assert full.update(7, {1: 5}, 9, True) == ({}, 1)
    old = DropTracker()
    assert old.update(None, {}, 4, False) == ({}, 4)


def test_reader_state_keeps_drops_and_suppressions_and_reads_the_first_format(tmp_path, monkeypatch):
    from policyc import deploy
    from policyc.audit.reader import Source

    monkeypatch.setattr(deploy, "state_dir", lambda: tmp_path)
    src = Source.__new__(Source)
    src.name = "web"
    # the first format held only the drop tracker
    (tmp_path / "web.audit-state.json").write_text(json.dumps({"map_id": 7, "rules": {"1": 5}, "unattributed": 0}))
    src.drops, src.suppressed = src._load_state()
    assert src.drops.rules == {1: 5} and src.suppressed.rules == {}
    src.suppressed.update(9, {2: 40}, 0, False)
    src._save_state()
    again = Source.__new__(Source)
    again.name = "web"
    again.drops, again.suppressed = again._load_state()
    assert again.drops.rules == {1: 5} and again.suppressed.rules == {2: 40} and again.suppressed.map_id == 9


def test_drop_tracker_new_map_starts_over_and_state_round_trips():
    t = DropTracker()
    t.update(7, {1: 5}, 5, False)
    back = DropTracker.from_json(json.loads(json.dumps(t.to_json())))
    assert back.update(7, {1: 6}, 6, False) == ({1: 1}, 0)
    assert back.update(8, {1: 2}, 2, False) == ({1: 2}, 0)  # a reload made a new map


def test_stream_sink_json_and_text():
    out = io.StringIO()
    StreamSink(out, "json").write([record(), record()])
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == json.loads(render(record(), "json"))
    out = io.StringIO()
    StreamSink(out, "text").write([record()])
    assert out.getvalue().count("\n") == 1 and "DENY" in out.getvalue()


def test_rotating_file_sink_rotates_by_size_and_keeps_n(tmp_path):
    p = tmp_path / "audit.jsonl"
    sink = RotatingFileSink(str(p), "json", max_bytes=2000, keep=2)
    for _ in range(12):
        sink.write([record()])
    sink.close()
    files = sorted(x.name for x in tmp_path.iterdir() if x.name.startswith("audit.jsonl"))
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    for f in files:
        for line in (tmp_path / f).read_text().splitlines():
            assert json.loads(line)["type"] == "event"
        assert (tmp_path / f).stat().st_size <= 2000 + 2 * len(render(record(), "json"))


def test_journal_fields_are_structured():
    f = journal_fields(record())
    assert f["POLICYC_RULE"] == "p.policy:6:5" and f["POLICYC_DECISION"] == "deny"
    assert f["POLICYC_SUBJECT_COMM"] == "cat" and f["POLICYC_OBJECT_PATH"] == "/etc/shadow"
    assert f["PRIORITY"] == "4" and f["OBJECT_PID"] == "100" and f["SYSLOG_IDENTIFIER"] == "policyc-audit"
    assert f["POLICYC_SUBJECT_EXE"] == "/usr/bin/cat" and re.fullmatch(r"[0-9a-f]{32}", f["POLICYC_PROCESS_EXEC_ID"])
    assert "POLICYC_SUBJECT_CGROUP" not in f  # null fields are left out
    assert all(re.fullmatch(r"[A-Z0-9_]+", k) for k in f)
    d = journal_fields(dropped_record(policy="p", instance="p", host="h", rules=[], unattributed=3))
    assert d["POLICYC_DROPPED"] == "3" and json.loads(d["POLICYC_JSON"])["unattributed"] == 3


def test_journal_sink_sends_one_entry_per_record():
    sent = []
    Fanout([JournalSink(send=lambda **kw: sent.append(kw))]).write([record(), record()])
    assert len(sent) == 2 and sent[0]["POLICYC_POLICY"] == "web"


def test_cysystemd_is_importable():
    from cysystemd import journal

    assert callable(journal.send)


def test_audit_with_nothing_loaded_exits_0(tmp_path, monkeypatch):
    from policyc import deploy
    from policyc.cli.audit_cmd import run_audit

    monkeypatch.setattr(deploy, "loaded_names", lambda: [])
    out, err = io.StringIO(), io.StringIO()
    assert run_audit(False, None, "json", False, 0, 0, out, err) == 0
    assert out.getvalue() == ""


def test_audit_bad_format_and_unwritable_output(tmp_path, monkeypatch):
    from policyc import deploy
    from policyc.cli.audit_cmd import run_audit

    monkeypatch.setattr(deploy, "loaded_names", lambda: [])

    err = io.StringIO()
    assert run_audit(False, None, "xml", False, 0, 0, io.StringIO(), err) == 2
    assert "unknown format `xml`" in err.getvalue()
    err = io.StringIO()
    assert run_audit(False, str(tmp_path), "json", False, 0, 0, io.StringIO(), err) == 2
    assert "cannot write" in err.getvalue()


def test_reader_drains_into_a_capped_backlog_and_formats_in_slices(monkeypatch):
    from types import SimpleNamespace

    from policyc import runtime
    from policyc.audit import reader as R
    from _audit_helpers import MANIFEST, raw

    out: list[dict] = []
    rd = R.AuditReader(out.extend)
    src = SimpleNamespace(name="web", manifest=MANIFEST)
    ev = raw()
    monkeypatch.setattr(R, "MAX_BACKLOG_BYTES", len(ev) * 300)
    # below the cap a drain goes on; at the cap the callback asks libbpf to stop
    results = [rd._on_raw(src, ev) for _ in range(300)]
    assert results[:299] == [None] * 299 and results[299] is runtime.RingBufferReader.STOP
    # an expired deadline is noticed at the 64th event: 63 formatted, the rest kept in order
    rd._flush(deadline=0.0)
    assert len(out) == 63 and len(rd._raw) == 237 and rd._raw_bytes == 237 * len(ev)
    rd._flush()
    assert len(out) == 300 and not rd._raw and rd._raw_bytes == 0 and rd.events == 300
    assert {r["rule"] for r in out} == {"p.policy:6:5"}
    # a stop request is noticed within 256 events
    rd._stop = lambda: True
    assert any(rd._on_raw(src, ev) is runtime.RingBufferReader.STOP for _ in range(256))


def test_rule_entries_name_rules_and_the_default_with_limits():
    from policyc.audit.event import rule_entries

    m = {"default_location": "p.policy:4:5", "default_limit": {"text": "9/s"},
         "rules": [{"id": 2, "location": "p.policy:7:5", "text": "deny bpf limit 1/s", "limit": {"text": "1/s"}}]}
    assert rule_entries(m, {2: 3, 0: 4}, with_limit=True) == [
        {"rule_id": None, "rule": "p.policy:4:5", "rule_text": None, "count": 4, "limit": "9/s"},
        {"rule_id": 2, "rule": "p.policy:7:5", "rule_text": "deny bpf limit 1/s", "count": 3, "limit": "1/s"}]
    assert "limit" not in rule_entries(m, {2: 1})[0]
