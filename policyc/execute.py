"""Running commands under a loaded policy as its subject: `policyc exec`, `policyc test
--kernel` and the kernel test suite all go through `Session`.

How a command becomes the subject: it is started through a tiny `sh` trampoline that stops
itself (SIGSTOP); meanwhile the task's storage in the policy's `subjects` map is set to PENDING
through its pidfd; the trampoline then execs the command, and that exec (not itself decided)
turns PENDING into GOVERNED. Everything the command starts inherits it (task_alloc).
A long-running process can also be governed from now on (`govern(pid)`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import runtime

from . import abi, deploy
from .audit.event import RawEvent, decode
from .audit.families import family as audit_family, op_text
from .audit.schema import boot_offset_ns, event_record, format_text, hostname

SUBJECT_GOVERNED = abi.SUBJECT_GOVERNED
SUBJECT_PENDING = abi.SUBJECT_PENDING
_TRAMPOLINE = 'kill -STOP $$; exec "$@"'


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    events: list[RawEvent] = field(default_factory=list)


class Session:
    """One policy loaded under a private name for as long as the session lives."""

    def __init__(self, manifest_path: Path, name: str | None = None,
                 on_record: Callable[[dict], None] | None = None):
        self.manifest = deploy.read_manifest(manifest_path)
        self.name = name or f"{self.manifest['policy']}-exec-{os.getpid()}"
        # the session's commands are the subject: cgroups of this policy that do not exist
        # here only narrow `to cgroup` targets (left out, and said)
        self.missing_cgroups: list[str] = []
        self.loaded = deploy.load_manifest(manifest_path, name=self.name, missing_cgroups=self.missing_cgroups)
        self.events: list[RawEvent] = []
        self._on_record = on_record
        self._host = hostname()
        self._offset_ns = boot_offset_ns()
        try:
            self.reader = runtime.RingBufferReader([self.loaded.maps["events"]], self._collect)
        except Exception:
            deploy.unload(self.name)
            raise

    def _collect(self, data: bytes) -> None:
        ev = decode(data)
        self.events.append(ev)
        if self._on_record is not None:
            self._on_record(self.record(ev))

    def record(self, ev: RawEvent) -> dict:
        """The event as `policyc audit` writes it (docs/audit-log.md), under the session's
        instance name. The subject's exe and cgroup are read from /proc now, while the
        process most likely still runs."""
        return event_record(ev, self.manifest, instance=self.name, host=self._host, offset_ns=self._offset_ns)

    def drain(self) -> list[RawEvent]:
        """Every event sent so far (and forget them)."""
        self.reader.consume()
        out, self.events = self.events, []
        return out

    def govern(self, pid: int, state: int = SUBJECT_GOVERNED) -> None:
        try:
            runtime.mark_task(pid, self.loaded.maps["subjects"], abi.SUBJECT_STATE.pack_fields(state=state))
        except runtime.BpfError as e:
            raise deploy.DeployError(f"could not make pid {pid} a subject of `{self.manifest['policy']}`: {e.message}")

    def spawn(self, argv: list[str], **popen_kwargs) -> subprocess.Popen:
        """Start `argv` as the policy's subject (see the module docstring)."""
        proc = subprocess.Popen(["/bin/sh", "-c", _TRAMPOLINE, "policyc-exec", *argv], **popen_kwargs)
        try:
            # wait until the trampoline has stopped itself (WUNTRACED reports, never reaps)
            _, status = os.waitpid(proc.pid, os.WUNTRACED)
            if not os.WIFSTOPPED(status):
                raise deploy.DeployError(f"`{argv[0]}` could not be started as the subject")
            self.govern(proc.pid, SUBJECT_PENDING)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        os.kill(proc.pid, signal.SIGCONT)
        return proc

    def run(self, argv: list[str], timeout: float = 120, **kwargs) -> Result:
        """Run to completion, capturing output and the events it caused."""
        self.drain()
        proc = self.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, **kwargs)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), self.drain())

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            deploy.unload(self.name)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def event_line(rec: dict, json_events: bool) -> str:
    """How `policyc exec` prints an event record: the audit log's JSON line, or its text line."""
    return json.dumps(rec, sort_keys=True) if json_events else "policyc: " + format_text(rec)


# Why a program dies of a denial, by what was denied: the hint `policyc exec` prints
_HINTS = {
    ("file", "exec-map"): "it could not map a library or its own code (a denied exec-map kills a program as it "
                          "starts): allow `file exec-map` for its libraries (`use base` has the usual ones)",
    ("exec", "exec"): "it could not start a program it needs: allow `exec` of that program",
    ("file", "read"): "it could not read a file it needs",
    ("net", "connect"): "it could not connect where it needed to",
}


def explain_exit(rc: int, records: list[dict], argv: list[str]) -> list[str]:
    """What `policyc exec` says when the command died or failed after denials: each denial
    with its rule location (and, for the default's, the rule that would allow it), and a
    one-line hint. Nothing when the command succeeded or nothing was denied."""
    denials = [r for r in records if r.get("type") == "event" and r.get("decision") == "deny"]
    if rc == 0 or not denials:
        return []
    name = os.path.basename(argv[0]) if argv else "the command"
    how = f"was killed by {signal.Signals(-rc).name}" if rc < 0 and -rc in signal.Signals._value2member_map_ \
        else f"exited {rc}"
    out = [f"policyc: `{name}` {how} after {len(denials)} denial{'s' if len(denials) != 1 else ''}:"]
    seen = set()
    for r in denials:
        key = (r["family"], r["op"], json.dumps(r["object"], sort_keys=True), r.get("rule"))
        if key in seen:
            continue
        seen.add(key)
        what = r.get("rule_text") or (f"default {r['decision']}" if r["reason"] == "default" else r["reason"])
        fix = f"; to allow: {r['suggestion']}" if r.get("suggestion") else ""
        out.append(f"policyc:   {op_text(r['family'], r['op'])} {audit_family(r['family']).text(r['object'])} "
                   f"denied by {r.get('rule') or '-'} ({what}){fix}")
        if len(seen) >= 10:
            out.append(f"policyc:   ... and {len(denials) - 10} more")
            break
    first = denials[0]
    hint = _HINTS.get((first["family"], first["op"]))
    if hint:
        out.append(f"policyc: hint: {hint}")
    return out


def run_command(manifest_path: Path, argv: list[str], err, json_events: bool = False) -> int:
    """`policyc exec`: stdin/stdout/stderr pass through; events go to `err` as they come, as
    the records `policyc audit` writes. A command that dies or fails after denials gets them
    explained at the end; the exit status is the command's (128 + N for a signal N)."""
    seen: list[dict] = []

    def show(rec: dict) -> None:
        seen.append(rec)
        err.write(event_line(rec, json_events) + "\n")
        err.flush()

    deploy.check_kernel()
    with Session(manifest_path, on_record=show) as session:
        for cg in dict.fromkeys(session.missing_cgroups):   # a subject and a target may name one
            err.write(f"policyc: note: cgroup `{cg}` does not exist here: rules naming it match nothing\n")
        proc = session.spawn(argv)
        while True:
            session.reader.poll(100)
            try:
                rc = proc.wait(timeout=0)
                break
            except subprocess.TimeoutExpired:
                continue
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)
        session.reader.consume()
        if not json_events:
            for line in explain_exit(rc, seen, argv):
                err.write(line + "\n")
        return rc if rc >= 0 else 128 - rc
