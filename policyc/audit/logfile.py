"""Reading audit logs (`policyc audit --format json` output) back for `report` and `suggest`.

Strict: a line that is not a record of a schema we know is an error naming the file and line
(a truncated last line included), never skipped silently.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .schema import RECORD_TYPES, SCHEMAS

# an event's `who`: schema 1 `subject`, schema 2 `process`
_EVENT_KEYS = {1: ("time_ns", "policy", "decision", "mode", "family", "op", "reason", "subject", "object"),
               2: ("time_ns", "policy", "decision", "mode", "family", "op", "reason", "process", "object")}
_COUNT_KEYS = ("time_ns", "policy", "count", "rules")   # `dropped` and `suppressed`


class LogError(Exception):
    def __init__(self, path: str, line: int | None, message: str):
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path, self.line, self.message = path, line, message


@dataclass(frozen=True)
class Record:
    path: str
    line: int
    data: dict


def _check(rec, path: str, n: int) -> dict:
    if not isinstance(rec, dict):
        raise LogError(path, n, f"expected a JSON object, found {type(rec).__name__}")
    schema = rec.get("schema")
    if schema not in SCHEMAS or isinstance(schema, bool):
        raise LogError(path, n, f"unknown audit log schema {schema!r} (this policyc reads schemas "
                                f"{' and '.join(map(str, SCHEMAS))})")
    typ = rec.get("type")
    if typ not in RECORD_TYPES:
        raise LogError(path, n, f"unknown record type {typ!r} (known: {', '.join(RECORD_TYPES)})")
    keys = _EVENT_KEYS[schema] if typ == "event" else _COUNT_KEYS
    missing = [k for k in keys if k not in rec]
    if missing:
        raise LogError(path, n, f"`{typ}` record lacks `{missing[0]}`")
    if not isinstance(rec["time_ns"], int):
        raise LogError(path, n, "`time_ns` is not an integer")
    if typ == "event":
        who = "subject" if schema == 1 else "process"
        if not isinstance(rec[who], dict) or not isinstance(rec["object"], dict):
            raise LogError(path, n, f"`{who}` and `object` must be JSON objects")
    elif not isinstance(rec["rules"], list) or not isinstance(rec["count"], int):
        raise LogError(path, n, f"`{typ}` record: `rules` must be a list and `count` an integer")
    return rec


def _open(path: str):
    if path == "-":
        import sys

        return sys.stdin
    p = Path(path)
    if p.suffix == ".gz":
        return gzip.open(p, "rt", encoding="utf-8", errors="strict")
    return open(p, encoding="utf-8", errors="strict")


def read_records(paths: list[str]) -> list[Record]:
    out: list[Record] = []
    for path in paths:
        try:
            f = _open(path)
        except OSError as e:
            raise LogError(path, None, f"cannot read: {e.strerror or e}")
        n = 0
        try:
            for n, line in enumerate(f, 1):
                text = line.strip()
                if not text:
                    continue
                try:
                    rec = json.loads(text)
                except ValueError as e:
                    what = "truncated record (the line ends early)" if not line.endswith("\n") else "not a JSON record"
                    raise LogError(path, n, f"{what}: {e.msg} at column {e.colno}"
                                   " (report and suggest read `policyc audit --format json` logs)")
                out.append(Record(path, n, _check(rec, path, n)))
        except UnicodeDecodeError as e:
            raise LogError(path, n + 1, f"not UTF-8 text ({e.reason})")
        except (OSError, EOFError) as e:
            raise LogError(path, n + 1, f"cannot read: {e}")
        finally:
            if f is not None and path != "-":
                f.close()
    return out


_REL = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now_ns: int | None = None) -> int:
    """`--since`: `30m`/`2h`/`7d` ago, an ISO-8601 time (UTC unless it says), or epoch seconds."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    t = text.strip()
    m = _REL.match(t)
    if m:
        return now_ns - int(m.group(1)) * _UNITS[m.group(2)] * 1_000_000_000
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return int(float(t) * 1_000_000_000)
    try:
        dt = _dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"`{text}` is not a time: use `30m`, `2h`, `7d`, an ISO time "
                         "(`2024-05-01T12:00:00Z`) or epoch seconds")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.timezone.utc)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000
