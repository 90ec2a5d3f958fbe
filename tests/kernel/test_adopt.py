"""Processes that run before their policy loads (policyc/adopt.py; docs/semantics.md,
"Processes running before load"), through the command line as an operator loads it.

A daemon (a copy of sh under R, running a small command loop) and a worker it started are
running before `policyc load`; with no program loaded both read the secret. After the load, the
daemon's own open, the worker's, and a child the daemon starts after the load are denied with
EACCES, and `policyc audit` has one deny event per open naming the rule; a control shell (a copy
of sh under another name, also started before) still reads it. `load --sync` says the same in
text, `--no-adopt` leaves the daemon alone. A multi-threaded daemon (a copy of the Python
interpreter) shows the thread rule: a thread it had before the load is governed on Linux 6.9+
(PIDFD_THREAD), reported as not governed before that.

The commands run with their own pin root and state directory, and every test unloads what it
loaded. (No module-level text but the POLICY_* ones may hold both words tests/kernel/prebuild.py
looks for.)"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policyc import deploy, runtime

from .harness import tree

# userspace over the kernel (the CLI) like test_host_ops, but the thread rule differs by kernel
# version (PIDFD_THREAD, 6.9): runs on every kernel of the suite
pytestmark = [pytest.mark.kernel]

R = "/tmp/pk-adopt"
REPO = Path(__file__).resolve().parents[2]
PIN_ROOT = "/sys/fs/bpf/policyc-adopt"
STATE = f"{R}/state"
POLICYC = [sys.executable, "-m", "policyc"]
SECRET = f"{R}/secret"

POLICY_ADOPT = (f'policy adopt-a {{\n    subject exe "{R}/bin/daemon-*"\n    default allow\n'
                f'    deny file read "{SECRET}"\n}}\n')

# The command loop every shell here runs: one reply per command line, ended by `END`. `read`
# opens the secret in the shell itself (a builtin: no child); `spawn` starts a child (the
# worker interpreter) that opens it; `worker` starts a long-lived child running this loop on
# the FIFOs R/w.in and R/w.out; `pid` says the shell's pid.
LOOP = r'''
S="$1"; W="$2"
while read -r cmd; do
  case "$cmd" in
    read) if read x < "$S"; then echo "ok:$x"; else echo "fail"; fi 2>&1 ;;
    spawn) "$W" -c 'if read x < "$1"; then echo "ok:$x"; else echo "fail"; fi 2>&1' child "$S" ;;
    worker) "$W" "$0" "$S" "$W" < "$3.in" > "$3.out" 2>&1 & ;;
    pid) echo "pid:$$" ;;
  esac
  echo END
done
'''

# The threaded daemon: a thread started before the load opens the secret on `thread`, the
# main thread on `read`; replies as LOOP's.
THREADED = r'''
import os, queue, sys, threading
S = sys.argv[1]
jobs, done = queue.Queue(), queue.Queue()

def try_open():
    try:
        with open(S) as f:
            return "ok:" + f.read().strip()
    except OSError as e:
        return "fail " + os.strerror(e.errno)

def worker():
    while jobs.get() is not None:
        done.put(try_open())

t = threading.Thread(target=worker, daemon=True)
t.start()
print("tid:%d" % t.native_id, flush=True)
print("END", flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "read":
        print(try_open(), flush=True)
    elif cmd == "thread":
        jobs.put(1)
        print(done.get(), flush=True)
    print("END", flush=True)
'''


def env() -> dict[str, str]:
    return {**os.environ, "POLICYC_PIN_ROOT": PIN_ROOT, "POLICYC_STATE_DIR": STATE,
            "PYTHONDONTWRITEBYTECODE": "1"}


def policyc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([*POLICYC, *args], cwd=str(REPO), env=env(), capture_output=True, text=True, timeout=600)
    if check:
        assert p.returncode == 0, f"policyc {' '.join(args)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def build() -> Path:
    src = Path(f"{R}/src")
    src.mkdir(parents=True, exist_ok=True)
    (src / "adopt-a.policy").write_text(POLICY_ADOPT)
    out = Path(f"{R}/out")
    policyc("build", str(src), "-o", str(out))
    return out


def deny_rule_location(out: Path) -> str:
    man = deploy.read_manifest(out / "adopt-a.manifest.json")   # its rules from NAME.maps
    (rule,) = [r for r in man["rules"] if r["decision"] == "deny"]
    return rule["location"]


class Chan:
    """Line replies from a process, each ended by `END`, with a timeout (a hung process fails
    the test instead of the whole boot)."""

    def __init__(self, write_fd: int, read_fd: int):
        self.w, self.r, self.buf = write_fd, read_fd, b""

    def reply(self, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while b"END\n" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no reply within {timeout}s (so far: {self.buf!r})"
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 4096)
                assert chunk, f"the process closed its output (so far: {self.buf!r})"
                self.buf += chunk
        head, _, self.buf = self.buf.partition(b"END\n")
        return head.decode().splitlines()

    def ask(self, cmd: str) -> list[str]:
        os.write(self.w, (cmd + "\n").encode())
        return self.reply()

    def reads(self, cmd: str = "read") -> bool:
        """True when the process read the secret; False when the open was refused with EACCES."""
        lines = self.ask(cmd)
        if lines == ["ok:s3cret"]:
            return True
        assert lines[-1].startswith("fail") and "Permission denied" in "\n".join(lines), lines
        return False


class Shell:
    """A copy of sh at EXE running LOOP, started now (by this test: its parent is pytest)."""

    def __init__(self, exe: str):
        self.proc = subprocess.Popen([exe, f"{R}/loop.sh", SECRET, f"{R}/bin/worker-sh", f"{R}/w"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.chan = Chan(self.proc.stdin.fileno(), self.proc.stdout.fileno())
        self.pid = self.proc.pid
        assert self.chan.ask("pid") == [f"pid:{self.pid}"]
        self.worker: Chan | None = None
        self._fifo_files = []

    def start_worker(self) -> int:
        """A long-lived child of this shell (worker-sh running LOOP on the FIFOs); its pid."""
        for end in ("in", "out"):
            if os.path.exists(f"{R}/w.{end}"):
                os.unlink(f"{R}/w.{end}")
            os.mkfifo(f"{R}/w.{end}")
        assert self.chan.ask("worker") == []
        w = os.open(f"{R}/w.in", os.O_WRONLY)      # meets the worker's `< w.in`
        r = os.open(f"{R}/w.out", os.O_RDONLY)     # then its `> w.out`
        self._fifo_files = [w, r]
        self.worker = Chan(w, r)
        (line,) = self.worker.ask("pid")
        pid = int(line.removeprefix("pid:"))
        assert ppid(pid) == self.pid
        return pid

    def close(self) -> None:
        for fd in self._fifo_files:
            os.close(fd)                           # the worker reads EOF and ends
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[1])


def audit_events() -> list[dict]:
    """The events the loaded policies sent since the last call (`policyc audit` drains them)."""
    log = Path(f"{R}/audit.jsonl")
    if log.exists():
        log.unlink()
    policyc("audit", "--no-journal", "--output", str(log))
    recs = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    return [r for r in recs if r["type"] == "event"]


def loaded() -> list[str]:
    return runtime.list_loaded(PIN_ROOT)


@pytest.fixture(autouse=True)
def files():
    shutil.rmtree(R, ignore_errors=True)
    tree(R, {"secret": "s3cret\n", "loop.sh": LOOP, "threaded.py": THREADED})
    Path(f"{R}/bin").mkdir()
    sh = os.path.realpath("/bin/sh")
    for name in ("daemon-sh", "worker-sh", "other-sh"):
        shutil.copy(sh, f"{R}/bin/{name}")
        os.chmod(f"{R}/bin/{name}", 0o755)
    shells: list[Shell] = []
    yield shells
    for s in shells:
        s.close()
    policyc("unload", "--all", check=False)
    leftovers = loaded()
    if os.path.isdir(PIN_ROOT) and not leftovers:
        os.rmdir(PIN_ROOT)
    assert leftovers == [], f"the test left policies loaded: {leftovers}"


def test_a_daemon_running_before_load_is_governed_with_its_children(files):
    out = build()
    daemon = Shell(f"{R}/bin/daemon-sh")
    files.append(daemon)
    other = Shell(f"{R}/bin/other-sh")
    files.append(other)
    worker_pid = daemon.start_worker()
    # no policy yet: every probe reads the secret
    assert daemon.chan.reads() and daemon.worker.reads() and daemon.chan.reads("spawn") and other.chan.reads()

    p = policyc("load", "--json", str(out / "adopt-a.manifest.json"))
    (doc,) = json.loads(p.stdout)["loaded"]
    assert doc["name"] == "adopt-a" and doc["adopt_error"] is None, doc
    adopted = {a["pid"]: a for a in doc["adopted"]}
    assert adopted[daemon.pid]["exe"] == f"{R}/bin/daemon-sh" and adopted[daemon.pid]["via"] is None
    assert adopted[worker_pid]["exe"] == f"{R}/bin/worker-sh" and adopted[worker_pid]["via"] == daemon.pid
    assert other.pid not in adopted
    # nothing else of the VM runs a daemon-* program
    assert set(adopted) == {daemon.pid, worker_pid}, adopted
    info = json.loads(Path(f"{STATE}/adopt-a.load.json").read_text())
    assert {a["pid"] for a in info["adopted"]} == {daemon.pid, worker_pid}

    audit_events()                                   # start from an empty ring buffer
    assert not daemon.chan.reads()                   # the daemon itself: EACCES
    assert not daemon.worker.reads()                 # its child from before the load
    assert not daemon.chan.reads("spawn")            # a child it starts after the load (task_alloc)
    assert other.chan.reads()                        # the control: not a subject
    evs = audit_events()
    rule = deny_rule_location(out)
    denials = [(e["process"]["exe"], e["decision"], e["object"]["path"], e["rule"], e["policy"]) for e in evs]
    assert sorted(denials) == sorted([
        (f"{R}/bin/daemon-sh", "deny", SECRET, rule, "adopt-a"),
        (f"{R}/bin/worker-sh", "deny", SECRET, rule, "adopt-a"),
        (f"{R}/bin/worker-sh", "deny", SECRET, rule, "adopt-a"),
    ]), evs
    assert [e["errno"] for e in evs] == ["EACCES"] * 3, evs
    pids = {e["process"]["pid"] for e in evs}
    assert daemon.pid in pids and worker_pid in pids and len(pids) == 3    # the third: the spawned child
    # a second load of the same policy (a replace) finds them governed already: nothing to adopt
    p = policyc("load", "--replace", "--json", str(out / "adopt-a.manifest.json"))
    assert json.loads(p.stdout)["loaded"][0]["adopted"] == []
    assert not daemon.chan.reads()


# the CLI's report and flag over the same kernel path the first test proves on every kernel
@pytest.mark.oldest_only
def test_load_sync_says_what_it_adopted(files):
    out = build()
    daemon = Shell(f"{R}/bin/daemon-sh")
    files.append(daemon)
    assert daemon.chan.reads()
    p = policyc("load", "--sync", str(out))
    lines = p.stdout.splitlines()
    assert lines[0].startswith("loaded adopt-a ("), p.stdout
    assert lines[1:3] == ["  governed 1 running process:", f"    {daemon.pid} {R}/bin/daemon-sh"], p.stdout
    assert lines[-1] == "sync: 1 loaded"
    assert not daemon.chan.reads()
    assert [e["process"]["pid"] for e in audit_events()] == [daemon.pid]


# the CLI's report and flag over the same kernel path the first test proves on every kernel
@pytest.mark.oldest_only
def test_no_adopt_leaves_a_running_daemon_alone(files):
    out = build()
    daemon = Shell(f"{R}/bin/daemon-sh")
    files.append(daemon)
    p = policyc("load", "--no-adopt", str(out / "adopt-a.manifest.json"))
    assert len(p.stdout.splitlines()) == 1 and "governed" not in p.stdout, p.stdout
    assert daemon.chan.reads()                       # not governed: it never exec'd under the policy
    # a daemon started now is governed by its exec, as always
    late = Shell(f"{R}/bin/daemon-sh")
    files.append(late)
    assert not late.chan.reads()


def _kernel_at_least(major: int, minor: int) -> bool:
    rel = os.uname().release.split("-")[0].split(".")
    return (int(rel[0]), int(rel[1])) >= (major, minor)


def test_threads_the_daemon_had_before_load(files):
    # a copy of the real interpreter (the venv's python is a symlink to it); PYTHONHOME: the
    # copy finds its standard library where the original does
    py = os.path.realpath(sys.executable)
    shutil.copy(py, f"{R}/bin/daemon-py")
    os.chmod(f"{R}/bin/daemon-py", 0o755)
    out = build()
    proc = subprocess.Popen([f"{R}/bin/daemon-py", "-S", f"{R}/threaded.py", SECRET],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={"PYTHONHOME": sys.base_prefix, "PATH": "/usr/bin:/bin"})
    try:
        chan = Chan(proc.stdin.fileno(), proc.stdout.fileno())
        (line,) = chan.reply()
        tid = int(line.removeprefix("tid:"))
        assert os.path.isdir(f"/proc/{proc.pid}/task/{tid}")
        assert chan.ask("read") == ["ok:s3cret"] and chan.ask("thread") == ["ok:s3cret"]
        p = policyc("load", "--json", str(out / "adopt-a.manifest.json"))
        (a,) = [a for a in json.loads(p.stdout)["loaded"][0]["adopted"] if a["pid"] == proc.pid]
        assert chan.ask("read") == ["fail Permission denied"]         # the leader: always
        if _kernel_at_least(6, 9):
            # PIDFD_THREAD: the thread is marked as its leader
            assert a["threads"] >= 1 and a["threads_not_governed"] == 0, a
            assert chan.ask("thread") == ["fail Permission denied"]
        else:
            # no pidfd for a thread: said in the output, and the thread is indeed not governed
            assert a["threads_not_governed"] >= 1 and a["threads"] == 0, a
            assert chan.ask("thread") == ["ok:s3cret"]
            p = policyc("unload", "--all")
            p = policyc("load", str(out / "adopt-a.manifest.json"))
            assert "threads NOT governed" in p.stdout, p.stdout
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait()
        proc.stdout.close()
