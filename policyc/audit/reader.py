"""`policyc audit`: read the pinned ring buffers of every loaded policy and turn their events
into records (schema.py), with exact `dropped` records from the per-rule drop counters and
`suppressed` records from the per-rule counters of events a rule's `limit` held back.

The reader only consumes: it never touches enforcement, so it can start after the policies
were loaded, stop and restart. Events sent while no reader runs wait in the ring buffer; what
found it full was counted by the BPF side (templates/common/policy.h `count_per_rule`) and is
reported here. Which drops (and suppressions) were already reported is kept per policy
instance in `deploy.state_dir()/NAME.audit-state.json`, so a restarted reader neither repeats
nor loses them.

One RingBufferReader per policy (the events carry no policy name: the buffer says whose they
are); all their epoll fds are waited on at once and drained with ring_buffer__consume, so the
reader makes no syscall per event beyond the ring buffer's own (the /proc look-ups for exe and
cgroup are cached per batch and process).

Draining comes before formatting: a drain only copies the raw events out of the ring (cheap),
and turning them into records (the costly part) runs in slices of FORMAT_SLICE_S between
drains. So a burst faster than records can be written waits in this process's memory, not in
the kernel's ring buffer, and the ring only overflows (counted exactly, per rule) when the
producer outruns the drain itself, or the backlog reaches MAX_BACKLOG_BYTES.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import select
import time
from dataclasses import dataclass, field
from typing import Callable

from .. import runtime

from .. import abi, deploy
from .event import decode, rule_entries
from .schema import HostInfo, Names, boot_offset_ns, dropped_record, event_record, suppressed_record

RULE_DROPS_MAX = abi.RULE_DROPS_MAX  # rule_drops' entries: past them a drop is counted per hook only
FORMAT_SLICE_S = 0.005      # format for at most this long before draining the rings again
MAX_BACKLOG_BYTES = 256 << 20  # raw events held at most; past it the rings are left to fill


class AuditError(Exception):
    pass


@dataclass
class DropTracker:
    """Turns the monotonic drop counters of one policy instance into deltas to report.

    `rules`: rule id -> drops already reported; `unattributed`: drops already reported that no
    rule entry holds (the per-rule map was full). `map_id` identifies the counters' map: a
    reload that made a new map starts again from zero."""

    map_id: int | None = None
    rules: dict[int, int] = field(default_factory=dict)
    unattributed: int = 0

    def update(self, map_id: int | None, per_rule: dict[int, int], hook_total: int,
               map_full: bool) -> tuple[dict[int, int], int]:
        if map_id != self.map_id:
            self.map_id, self.rules, self.unattributed = map_id, {}, 0
        delta = {}
        for rid, n in per_rule.items():
            d = n - self.rules.get(rid, 0)
            if d > 0:
                delta[rid] = d
                self.rules[rid] = n
        # only a full per-rule map leaves drops without a rule entry; otherwise a gap between
        # the two counters is a drop whose rule increment has not landed yet
        un = 0
        if map_full or map_id is None:
            total_un = max(0, hook_total - sum(per_rule.values()))
            un = max(0, total_un - self.unattributed)
            self.unattributed += un
        return delta, un

    def to_json(self) -> dict:
        return {"map_id": self.map_id, "rules": {str(k): v for k, v in self.rules.items()},
                "unattributed": self.unattributed}

    @classmethod
    def from_json(cls, d: dict) -> "DropTracker":
        return cls(map_id=d.get("map_id"), rules={int(k): int(v) for k, v in d.get("rules", {}).items()},
                   unattributed=int(d.get("unattributed", 0)))


class Source:
    """One loaded policy instance: its ring buffer reader and its drop counters."""

    def __init__(self, name: str, manifest: dict, on_raw: Callable):
        self.name = name
        self.manifest = manifest
        self.maps = os.path.join(deploy.PIN_ROOT, name, "maps")
        self.events_pin = os.path.join(self.maps, "events")
        self.events_id = runtime.map_info(self.events_pin)["id"]
        self._on_raw = on_raw
        # functools.partial (C) rather than a lambda: one Python frame less per event in the drain
        self.reader = runtime.RingBufferReader([self.events_pin], functools.partial(on_raw, self))
        self.drops, self.suppressed = self._load_state()

    # -- drops and suppressions --------------------------------------------------------------
    def _state_path(self):
        return deploy.state_dir() / f"{self.name}.audit-state.json"

    def _load_state(self) -> tuple[DropTracker, DropTracker]:
        """(drops, suppressions) already reported."""
        try:
            state = json.loads(self._state_path().read_text())
            if "dropped" not in state:   # the first format held only the drop tracker
                return DropTracker.from_json(state), DropTracker()
            return DropTracker.from_json(state["dropped"]), DropTracker.from_json(state.get("suppressed", {}))
        except (OSError, ValueError, TypeError, AttributeError):
            return DropTracker(), DropTracker()

    def _save_state(self) -> None:
        try:
            p = self._state_path()
            tmp = p.with_suffix(".tmp")
            tmp.write_text(json.dumps({"dropped": self.drops.to_json(), "suppressed": self.suppressed.to_json()}))
            tmp.replace(p)
        except OSError:
            pass  # a reader without a writable state dir reports drops again after a restart

    def read_suppressed(self, host: HostInfo) -> dict | None:
        """A `suppressed` record with what rule limits held back since the last one, or None."""
        map_id, per_rule = deploy.per_rule_counts(self.name, "rule_suppressed")
        if map_id is None:
            return None   # an object built before rule limits
        delta, _ = self.suppressed.update(map_id, per_rule, 0, False)
        if not delta:
            return None
        self._save_state()
        return suppressed_record(policy=self.manifest.get("policy", self.name), instance=self.name, host=host,
                                 rules=rule_entries(self.manifest, delta, with_limit=True))

    def read_drops(self, host: HostInfo) -> dict | None:
        """A `dropped` record with the drops since the last one, or None."""
        # an object built before per-rule drops has no map: only per-hook totals (map_id None)
        map_id, per_rule = deploy.per_rule_counts(self.name, "rule_drops")
        hook_total = sum(c.get("dropped", 0) for c in deploy.hook_counters(self.name).values())
        delta, un = self.drops.update(map_id, per_rule, hook_total, len(per_rule) >= RULE_DROPS_MAX)
        if not delta and not un:
            return None
        self._save_state()
        return dropped_record(policy=self.manifest.get("policy", self.name), instance=self.name, host=host,
                              rules=rule_entries(self.manifest, delta), unattributed=un)

    def still_same(self) -> bool:
        """Is the pinned ring buffer still the one we read (not unloaded, not replaced)?"""
        try:
            return runtime.map_info(self.events_pin)["id"] == self.events_id
        except runtime.BpfError:
            return False

    def close(self) -> None:
        self.reader.close()


class AuditReader:
    """Reads every loaded policy; `records()` hands out what was read since the last call."""

    def __init__(self, emit: Callable[[list[dict]], None], warn: Callable[[str], None] = lambda m: None):
        self._emit = emit
        self.warn = warn
        self.host = HostInfo.here()
        self.offset = boot_offset_ns()
        self.sources: dict[str, Source] = {}
        self.names = Names()
        self.seq = 0   # the per-reader sequence number: a collector finds its own gaps by it
        self._raw: collections.deque[tuple[Source, bytes]] = collections.deque()
        self._raw_bytes = 0
        self._unchecked = 0
        self.events = 0
        self.dropped = 0
        self.suppressed = 0
        self._failed: set[str] = set()
        self._stop: Callable[[], bool] = lambda: False

    def emit(self, records: list[dict]) -> None:
        for rec in records:
            self.seq += 1
            rec["seq"] = self.seq
        self._emit(records)

    def _on_raw(self, src: Source, data: bytes):
        # per event: as little as possible (a drain's speed is what keeps the ring from filling)
        self._raw.append((src, data))
        self._raw_bytes += len(data)
        self._unchecked += 1
        if self._unchecked >= 256 or self._raw_bytes >= MAX_BACKLOG_BYTES:
            self._unchecked = 0
            if self._raw_bytes >= MAX_BACKLOG_BYTES or self._stop():
                return runtime.RingBufferReader.STOP
        return None

    def scan(self) -> None:
        """Open the policies loaded since the last scan; finish those unloaded or replaced."""
        try:
            names = set(deploy.loaded_names())
        except Exception as e:  # noqa: BLE001 - bpffs missing etc.: nothing loaded
            raise AuditError(f"cannot list loaded policies under `{deploy.PIN_ROOT}`: {e}")
        for name in list(self.sources):
            src = self.sources[name]
            if name not in names or not src.still_same():
                self._drain(src)
                self._flush()
                self._emit_drops(src)
                src.close()
                del self.sources[name]
        for name in sorted(names - set(self.sources)):
            manifest = deploy.loaded_manifest(name)
            if manifest is None:
                if name not in self._failed:
                    self.warn(f"policy `{name}` is loaded but its manifest is not in "
                              f"`{deploy.state_dir()}`: its events cannot name rules; skipped")
                    self._failed.add(name)
                continue
            try:
                self.sources[name] = Source(name, manifest, self._on_raw)
                self._failed.discard(name)
            except runtime.BpfError as e:
                if name not in self._failed:
                    self.warn(f"cannot read the events of `{name}`: {e.message}")
                    self._failed.add(name)

    def _drain(self, src: Source) -> None:
        try:
            src.reader.consume()
        except runtime.BpfError as e:
            self.warn(f"reading the events of `{src.name}` failed: {e.message}")

    def _flush(self, deadline: float | None = None) -> None:
        """Turn the backlog into records and emit them: all of it, or what fits before the
        monotonic `deadline` (checked every 64 events)."""
        raw = self._raw
        out = []
        n = 0
        while raw:
            n += 1
            if deadline is not None and n % 64 == 0 and time.monotonic() >= deadline:
                break
            src, data = raw.popleft()
            self._raw_bytes -= len(data)
            try:
                ev = decode(data)
            except ValueError as e:
                self.warn(f"`{src.name}`: undecodable event skipped: {e}")
                continue
            out.append(event_record(ev, src.manifest, instance=src.name, host=self.host,
                                    offset_ns=self.offset, names=self.names))
        if out:
            self.events += len(out)
            self.emit(out)

    def _emit_drops(self, src: Source) -> None:
        rec = src.read_drops(self.host)
        if rec is not None:
            self.dropped += rec["count"]
            self.emit([rec])
        rec = src.read_suppressed(self.host)
        if rec is not None:
            self.suppressed += rec["count"]
            self.emit([rec])

    def read_once(self) -> None:
        """Drain every ring buffer now, then report drops (drops after events: a dropped
        record always follows the events that made it to the buffer before it)."""
        for src in list(self.sources.values()):
            self._drain(src)
        self._flush()
        for src in list(self.sources.values()):
            self._emit_drops(src)

    def wait(self, timeout_s: float) -> None:
        fds = [s.reader.fileno() for s in self.sources.values()]
        if not fds:
            time.sleep(timeout_s)
            return
        try:
            select.select(fds, [], [], timeout_s)
        except InterruptedError:
            pass

    def run(self, follow: bool, stop: Callable[[], bool], rescan_s: float = 1.0,
            drops_s: float = 0.5, batch_s: float = 0.05) -> None:
        self._stop = stop
        self.scan()
        if not follow:
            self.read_once()
            return
        last_scan = last_drops = time.monotonic()
        while not stop():
            self.wait(0 if self._raw else batch_s)
            if self._raw_bytes < MAX_BACKLOG_BYTES:
                for src in list(self.sources.values()):
                    self._drain(src)
            self._flush(deadline=time.monotonic() + FORMAT_SLICE_S)
            now = time.monotonic()
            # drops once the backlog is written: a `dropped` record follows the events that
            # reached the ring before it
            if not self._raw and now - last_drops >= drops_s:
                for src in list(self.sources.values()):
                    self._emit_drops(src)
                last_drops = now
            if now - last_scan >= rescan_s:
                self.scan()
                last_scan = now
        self._stop = lambda: False   # the last read takes what the rings hold now
        self.read_once()

    def close(self) -> None:
        for src in self.sources.values():
            src.close()
        self.sources.clear()
