"""`policyc exec` shows each event as the record `policyc audit` writes: one function
(schema.event_record) builds it, one renderer (schema.format_text) writes its text line."""

from __future__ import annotations

import json
import types

import pytest

from policyc import deploy, execute
from policyc.audit.event import decode
from policyc.audit.schema import ProcCache, event_record, format_text, hostname

from _audit_helpers import MANIFEST, raw


class FakeReader:
    def __init__(self, pins, callback):
        self.pins, self.callback = pins, callback

    def consume(self):
        pass

    def close(self):
        pass


@pytest.fixture
def session(monkeypatch):
    monkeypatch.setattr(deploy, "read_manifest", lambda path: MANIFEST)
    monkeypatch.setattr(deploy, "load_manifest", lambda *a, **kw: types.SimpleNamespace(
        maps={"events": "/nonexistent/events", "subjects": "/nonexistent/subjects"}))
    monkeypatch.setattr(deploy, "unload", lambda name: None)
    monkeypatch.setattr(execute.runtime, "RingBufferReader", FakeReader)
    shown = []
    s = execute.Session("web.manifest.json", name="web-exec-1", on_record=shown.append)
    s.shown = shown
    return s


@pytest.mark.parametrize("kw", [
    {},
    {"family": "net", "hook": "socket_connect", "op": 0, "rule_id": 2, "port": 443, "proto": 1,
     "addr": bytes(10) + b"\xff\xff" + bytes([10, 1, 2, 3]), "path": ""},
    {"family": "signal", "hook": "task_kill", "aux": 9, "target_pid": 55, "path": "/usr/sbin/x", "rule_id": 0,
     "reason": 1},
    {"rule_id": 0, "reason": 2, "path": ""},
])
def test_exec_shows_the_audit_record(session, kw):
    data = raw(**kw)
    session.reader.callback(data)
    (rec,) = session.shown
    want = event_record(decode(data), MANIFEST, instance="web-exec-1", host=hostname(),
                        offset_ns=session._offset_ns, procs=ProcCache())
    assert rec == want
    assert session.drain()[0] == decode(data)   # the kernel tests still get the decoded event


def test_exec_prints_the_audit_logs_json_and_text_lines(session):
    session.reader.callback(raw())
    (rec,) = session.shown
    assert json.loads(execute.event_line(rec, json_events=True)) == rec
    line = execute.event_line(rec, json_events=False)
    assert line == "policyc: " + format_text(rec)
    assert "DENY policy=web file.read /etc/shadow pid=100 comm=cat" in line
