"""Where `policyc audit` writes records: a stream, a size-rotated file, the systemd journal.

- File rotation: `concurrent-log-handler` (ConcurrentRotatingFileHandler: size-based, keeps
  N files, safe when several writers share one file). One batch of records is one write.
- Journal: `cysystemd` (sd_journal_sendv through a bundled libsystemd; the PyPI index we use
  has no `systemd-python`), an optional dependency: `pip install 'policyc[journald]'`. Each
  record becomes one journal entry with structured fields (POLICYC_POLICY, POLICYC_RULE, ...;
  docs/audit-log.md lists them), MESSAGE the text line.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Callable, TextIO

import orjson

from .schema import SCHEMA_VERSION, as_schema1, format_text, process_view

# orjson (a compiled, well-kept JSON library) encodes a record about ten times faster than the
# standard library: under a burst of denials the reader's time goes to encoding, and a reader
# that falls behind is what fills the ring buffer.
_ORJSON_OPTS = orjson.OPT_SORT_KEYS


FORMATS = ("json", "text", "ecs")


def render(rec: dict, fmt: str, schema: int = SCHEMA_VERSION) -> str:
    """One record as a line: `json` (schema 2, or 1 with `schema=1`), `text`, or `ecs` (Elastic
    Common Schema, policyc/audit/ecs.py)."""
    if fmt == "text":
        return format_text(rec)
    if fmt == "ecs":
        from .ecs import to_ecs

        rec = to_ecs(rec)
    elif schema == 1:
        rec = as_schema1(rec)
    try:
        return orjson.dumps(rec, option=_ORJSON_OPTS).decode()
    except orjson.JSONEncodeError:
        # a path that is not UTF-8 (decoded with surrogateescape): the standard library
        # writes its bytes as \udcXX escapes
        return json.dumps(rec, sort_keys=True, separators=(",", ":"))


class StreamSink:
    def __init__(self, stream: TextIO, fmt: str, schema: int = SCHEMA_VERSION):
        self.stream, self.fmt, self.schema = stream, fmt, schema

    def write(self, records: list[dict]) -> None:
        if records:
            self.stream.write("".join(render(r, self.fmt, self.schema) + "\n" for r in records))
            self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class RotatingFileSink:
    """Append to PATH; past `max_bytes` the file rotates to PATH.1 ... PATH.`keep`."""

    def __init__(self, path: str, fmt: str, max_bytes: int, keep: int, schema: int = SCHEMA_VERSION):
        from concurrent_log_handler import ConcurrentRotatingFileHandler

        self.fmt, self.schema = fmt, schema
        open(path, "a").close()  # fail now, not at the first record (the handler opens lazily)
        self.handler = ConcurrentRotatingFileHandler(path, mode="a", maxBytes=max_bytes, backupCount=keep,
                                                     encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, records: list[dict]) -> None:
        if not records:
            return
        # one emit per batch: the handler locks and checks the size once, not per record
        msg = "\n".join(render(r, self.fmt, self.schema) for r in records)
        rec = logging.LogRecord("policyc.audit", logging.INFO, __file__, 0, msg, None, None)
        self.handler.emit(rec)
        self.handler.flush()

    def close(self) -> None:
        self.handler.close()


# journal priorities (syslog): deny and drops are warnings, audit-mode hits notices
_PRIORITY = {"deny": 4, "audit": 5}


def journal_fields(rec: dict) -> dict[str, str]:
    """The structured fields of one record (upper-case names, string values)."""
    f = {"MESSAGE": format_text(rec), "SYSLOG_IDENTIFIER": "policyc-audit",
         "POLICYC_SCHEMA": str(rec["schema"]), "POLICYC_TYPE": rec["type"],
         "POLICYC_POLICY": rec.get("policy") or "", "POLICYC_INSTANCE": rec.get("instance") or "",
         "POLICYC_TIME_NS": str(rec["time_ns"])}
    if rec.get("seq") is not None:
        f["POLICYC_SEQ"] = str(rec["seq"])
    if rec["type"] in ("dropped", "suppressed"):
        f["PRIORITY"] = "4" if rec["type"] == "dropped" else "5"
        f["POLICYC_" + rec["type"].upper()] = str(rec["count"])
        f["POLICYC_JSON"] = json.dumps(rec, sort_keys=True)
        return f
    f["PRIORITY"] = str(_PRIORITY.get(rec["decision"], 5))
    for k in ("decision", "mode", "hook", "family", "op", "rule", "rule_id", "reason"):
        if rec.get(k) is not None:
            f[f"POLICYC_{k.upper()}"] = str(rec[k])
    s = as_schema1(rec)["subject"]   # POLICYC_SUBJECT_* as schema 1 named them
    for k, v in s.items():
        if v is not None:
            f[f"POLICYC_SUBJECT_{k.upper()}"] = str(v)
    p = rec.get("process")
    if p is not None:
        for k in ("exec_id", "euid", "loginuid", "exe_state", "start_time_ns"):
            if p.get(k) is not None:
                f[f"POLICYC_PROCESS_{k.upper()}"] = str(p[k])
        if p.get("args") is not None:
            f["POLICYC_PROCESS_ARGS"] = json.dumps(p["args"])
    for k, v in rec["object"].items():
        if v is not None:
            f[f"POLICYC_OBJECT_{k.upper()}"] = str(v)
    # the journal's own names for the process the entry is about
    f["OBJECT_PID"] = str(process_view(rec)["pid"])
    return f


class JournalSink:
    def __init__(self, send: Callable[..., object] | None = None):
        if send is None:
            # cysystemd is an optional dependency (the `journald` extra), imported only here
            try:
                from cysystemd import journal
            except ImportError as e:
                raise ImportError(f"{e}; install it with: pip install 'policyc[journald]'") from e

            send = journal.send
        self._send = send

    def write(self, records: list[dict]) -> None:
        for rec in records:
            self._send(**journal_fields(rec))

    def close(self) -> None:
        pass


def under_systemd(environ=os.environ) -> bool:
    """Started by systemd (a service's stdout goes to the journal, or an invocation id is set)
    with the journal's socket present."""
    return bool(environ.get("JOURNAL_STREAM") or environ.get("INVOCATION_ID")) and \
        os.path.exists("/run/systemd/journal/socket")


class Fanout:
    def __init__(self, sinks: list):
        self.sinks = sinks

    def write(self, records: list[dict]) -> None:
        for s in self.sinks:
            s.write(records)

    def close(self) -> None:
        for s in self.sinks:
            s.close()
