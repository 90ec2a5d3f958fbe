"""Shared machinery of the kernel suite: build a policy from text, load it for a test, run
commands or a worker as its subject, and read the events it sent. Runs inside the VM only."""

from __future__ import annotations

import itertools
import json
import os
import select
import socket
import subprocess
import sys
from pathlib import Path

from policyc import pipeline, probe
from policyc.execute import Session

WORKER = Path(probe.__file__)

# The guest cannot write the host's object cache (~/.cache/policyc is read-only there): use a
# guest cache seeded from it, so an object the host built is not compiled again under TCG.
_HOST_CACHE = Path(os.path.expanduser("~")) / ".cache" / "policyc" / "objects"
if "POLICYC_CACHE" not in os.environ:
    os.environ["POLICYC_CACHE"] = "/tmp/policyc-cache"
    _guest = Path("/tmp/policyc-cache/objects")
    _guest.mkdir(parents=True, exist_ok=True)
    if _HOST_CACHE.is_dir():
        for _o in _HOST_CACHE.glob("*.o"):
            if not (_guest / _o.name).exists():
                (_guest / _o.name).write_bytes(_o.read_bytes())
BUILD_ROOT = Path("/tmp/policyc-kernel-tests")
_counter = itertools.count()


def build(text: str, name_hint: str = "t"):
    """Build policy source `text` (one policy) and return (program, policy, manifest path)."""
    n = next(_counter)
    d = BUILD_ROOT / f"{name_hint}-{n}"
    d.mkdir(parents=True, exist_ok=True)
    src = d / "test.policy"
    src.write_text(text)
    front = pipeline.front_end([str(src)])
    assert front.ok, [str(x) for x in front.diags.items]
    (policy,) = front.program.policies
    res = pipeline.build(front, policy, d / "out")
    return front.program, policy, res.manifest_path


def build_file(path: str, policy_name: str, name_hint: str = "t"):
    """Build one policy of a policy file as shipped (its includes resolve beside it)."""
    n = next(_counter)
    d = BUILD_ROOT / f"{name_hint}-{n}"
    d.mkdir(parents=True, exist_ok=True)
    front = pipeline.front_end([path])
    assert front.ok, [str(x) for x in front.diags.items]
    (policy,) = pipeline.select(front, [policy_name])
    res = pipeline.build(front, policy, d / "out")
    return front.program, policy, res.manifest_path


class Loaded:
    """A policy loaded for a test: `run` commands as its subject, `worker()` for many ops."""

    def __init__(self, text: str, name_hint: str = "t", *, shipped: tuple[str, str] | None = None):
        if shipped is not None:  # (file, policy name): an example policy, unchanged
            self.program, self.policy, self.manifest_path = build_file(*shipped, name_hint)
        else:
            self.program, self.policy, self.manifest_path = build(text, name_hint)
        self.session = Session(self.manifest_path, name=f"kt{os.getpid()}-{next(_counter)}")

    def run(self, argv, **kw):
        return self.session.run(list(argv), **kw)

    def worker(self, governed: bool = True, preopen=()) -> "Worker":
        w = Worker()
        for p in preopen:
            w.op("preopen", p)
        if governed:
            self.session.govern(w.pid)
        return w

    def drain(self):
        return self.session.drain()

    def rule_line(self, rule_id: int) -> str:
        for r in self.policy.rules:
            if r.id == rule_id:
                return str(r.span)
        raise KeyError(rule_id)

    def records(self, events) -> list[dict]:
        """The events as the audit log's event records (its manifest names their rules)."""
        from policyc.audit.schema import event_record

        from policyc.deploy import read_manifest

        manifest = read_manifest(Path(self.manifest_path))   # its rules from NAME.maps
        return [event_record(e, manifest, instance=self.policy.name, host="guest", offset_ns=0) for e in events]

    def audit_lines(self, events) -> list[str]:
        """The events as the audit log's text lines, printed whole too (pytest shows a failed
        test's output): what an assertion message shows of them."""
        from policyc.audit.schema import format_text

        lines = [format_text(r) for r in self.records(events)]
        print("\n".join(lines))
        return lines

    def rule_id_of(self, text_fragment: str) -> int:
        for r in self.policy.rules:
            if text_fragment in r.text:
                return r.id
        raise KeyError(text_fragment)

    def close(self):
        self.session.close()

    def __enter__(self) -> "Loaded":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def governed_worker(pol: Loaded, preopen=()):
    """A fixture body: a worker governed by `pol`, its start-up events drained, closed after."""
    w = pol.worker(preopen=preopen)
    pol.drain()
    yield w
    w.close()


class _Zygote:
    """policyc/probe.py's zygote (`--zygote`): one Python started and made ready, forked for
    each worker. A worker started afresh costs 2-3 s under TCG (the interpreter and the
    probe's imports), and a kernel run starts about 85; forked, one costs a fork."""

    def __init__(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.proc = subprocess.Popen([sys.executable, str(WORKER), "--zygote", str(theirs.fileno())],
                                     pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        self.sock = ours

    def fork(self) -> tuple[int, int]:
        """(stdin write end, stdout read end) of a new worker."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            socket.send_fds(self.sock, [b"w"], [in_r, out_w])
        except OSError:
            for fd in (in_r, in_w, out_r, out_w):
                os.close(fd)
            raise
        os.close(in_r)
        os.close(out_w)
        return in_w, out_r

    def alive(self) -> bool:
        return self.proc.poll() is None


_zygote: _Zygote | None = None


def _worker_pipes() -> tuple[int, int]:
    global _zygote
    if _zygote is None or not _zygote.alive():
        _zygote = _Zygote()
    try:
        return _zygote.fork()
    except OSError:   # a zygote that went away: a new one
        _zygote = _Zygote()
        return _zygote.fork()


class Worker:
    """A probe process (policyc/probe.py) forked by the zygote: ungoverned until
    `Loaded.worker` governs it by pid."""

    def __init__(self):
        in_w, out_r = _worker_pipes()
        self.stdin = os.fdopen(in_w, "w", buffering=1)
        self.stdout = os.fdopen(out_r, "r")
        line = self.stdout.readline()
        assert line, "the worker did not start"
        hello = json.loads(line)
        assert hello.get("ready"), hello
        self.pid = hello["pid"]
        self.pidfd = os.pidfd_open(self.pid)

    def op(self, op: str, path: str | None = None, **kw) -> dict:
        req = {"op": op, **({"path": path} if path is not None else {}), **kw}
        self.stdin.write(json.dumps(req) + "\n")
        self.stdin.flush()
        line = self.stdout.readline()
        assert line, f"worker died during {req}"
        return json.loads(line)

    def close(self):
        try:
            self.stdin.close()
        except OSError:
            pass
        try:   # it exits at the end of its input; not a child of ours: its pidfd says when
            ready, _, _ = select.select([self.pidfd], [], [], 30)
            assert ready, f"worker {self.pid} did not exit within 30 s of its input's end"
        finally:
            os.close(self.pidfd)
            self.stdout.close()


def tree(root: str, files: dict[str, str | None]) -> None:
    """Make files (content) and directories (None) under root, as the ungoverned test."""
    for rel, content in files.items():
        p = Path(root) / rel
        if content is None:
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)


def copy_true(dest: str) -> None:
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    data = Path("/bin/true").read_bytes()
    Path(dest).write_bytes(data)
    os.chmod(dest, 0o755)
