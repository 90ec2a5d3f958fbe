"""Guest side of bench/peers.py: runs inside the VM (as root), never on the host.

    <venv python> bench/peers_guest.py PLAN.json

PLAN.json (written by the host script) names the prebuilt objects: the floor programs
(bench/peers/floor.bpf.c), the Landlock helper (bench/peers/landlock_exec.c), the static
binary the exec probe runs, and policyc's manifests (1 and 10,000 rules). Per round, every
variant in turn (interleaved): set it up (load the floor or the policy, or start the worker
under Landlock), start a fresh worker, run each operation `warmup` times and then
`iterations` times timed on the guest clock, read run_time_ns / run_cnt of every program of the
variant before and after each timed loop (BPF statistics on), tear the variant down. One JSON
line on stdout prefixed with RESULT_PREFIX; progress on stderr.

The worker imports nothing after it says "ready": while it is governed, every hook run is one
of its operations (run_cnt of the probed program is checked against the iteration count).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULT_PREFIX = "PEERS_RESULT "
FLOOR_PIN_ROOT = "/sys/fs/bpf/policyc-peers"

# The worker. Started with -S -I (loads as little as possible); after "ready" it touches no
# file but the probes. Commands: "open PATH N", "stat PATH N", "exec PATH N", "connect - N",
# "mkfifo PATH 1" and "refused PORT 1" (proofs that a Landlock domain is in force).
# connect: a TCP connect to its own loopback listener, accept, close both; the client closes
# with SO_LINGER 0 (RST: no TIME_WAIT piles up to change the port search between variants).
WORKER = r"""
import os, sys, socket, struct
rd, wr = sys.stdin.readline, sys.stdout.write
op, cl, st, O = os.open, os.close, os.stat, os.O_RDONLY
spawn, waitpid = os.posix_spawn, os.waitpid
from time import perf_counter_ns as now
PORT = int(sys.argv[1])
lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", PORT)); lst.listen(64)
ADDR = ("127.0.0.1", PORT)
LINGER = struct.pack("ii", 1, 0)
S, SOL, SO_LINGER, AF, ST = socket.socket, socket.SOL_SOCKET, socket.SO_LINGER, socket.AF_INET, socket.SOCK_STREAM
acc = lst.accept
env = {}
wr("ready %d\n" % os.getpid()); sys.stdout.flush()
while True:
    line = rd()
    if not line:
        break
    cmd, arg, n = line.rstrip("\n").split(" ")
    n = int(n)
    fails = 0
    if cmd == "open":
        t = now()
        for _ in range(n):
            try:
                cl(op(arg, O))
            except OSError:
                fails += 1
        t = now() - t
    elif cmd == "stat":
        t = now()
        for _ in range(n):
            try:
                st(arg)
            except OSError:
                fails += 1
        t = now() - t
    elif cmd == "exec":
        argv = [arg]
        t = now()
        for _ in range(n):
            try:
                if waitpid(spawn(arg, argv, env), 0)[1] != 0:
                    fails += 1
            except OSError:
                fails += 1
        t = now() - t
    elif cmd == "connect":
        t = now()
        for _ in range(n):
            c = S(AF, ST)
            try:
                c.connect(ADDR)
                a = acc()[0]
                c.setsockopt(SOL, SO_LINGER, LINGER)
                c.close()
                a.close()
            except OSError:
                fails += 1
                c.close()
        t = now() - t
    elif cmd == "mkfifo":
        t = 0
        try:
            os.mkfifo(arg)
            os.unlink(arg)
            fails = 0
        except PermissionError:
            fails = 1
        except OSError:
            fails = 2
    elif cmd == "refused":
        t = 0
        c = S(AF, ST)
        try:
            c.connect(("127.0.0.1", int(arg)))
        except PermissionError:
            fails = 1
        except OSError:
            fails = 2
        c.close()
    else:
        t, fails = 0, -1
    wr("%d %d\n" % (t, fails)); sys.stdout.flush()
"""


def log(msg: str) -> None:
    print(f"peers_guest: {msg}", file=sys.stderr, flush=True)


class Worker:
    def __init__(self, port: int, prefix: list[str] = ()) -> None:
        self.proc = subprocess.Popen([*prefix, sys.executable, "-S", "-I", "-c", WORKER, str(port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        hello = self.proc.stdout.readline().split()
        if not hello or hello[0] != "ready":
            raise SystemExit(f"peers_guest: the worker did not start ({hello}, exit {self.proc.poll()})")
        self.pid = int(hello[1])

    def run(self, cmd: str, arg: str, n: int) -> tuple[int, int]:
        """(guest-clock ns of n operations, failures)."""
        self.proc.stdin.write(f"{cmd} {arg} {n}\n")
        self.proc.stdin.flush()
        t, fails = self.proc.stdout.readline().split()
        return int(t), int(fails)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


class Programs:
    """run_time_ns and run_cnt of every program of one loaded object, read through
    BPF_OBJ_GET_INFO_BY_FD on descriptors taken once (reading opens nothing)."""

    def __init__(self, runtime, pin_root: str, name: str) -> None:
        from policyc.runtime.loader import _prog_fd_by_id
        from policyc.runtime.stats import _prog_info

        self._info = _prog_info
        self.fds = {p["name"]: _prog_fd_by_id(p["id"]) for p in runtime.prog_stats(pin_root, name)}

    def snapshot(self) -> dict[str, tuple[int, int]]:
        out = {}
        for name, fd in self.fds.items():
            info = self._info(fd)
            out[name] = (info.run_time_ns, info.run_cnt)
        return out

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


class Variant:
    """Set-up and tear-down of one variant; programs() is None when no BPF program of ours runs."""

    def __init__(self, spec: dict, plan: dict) -> None:
        self.spec, self.plan = spec, plan
        self.progs = None
        self.session = None
        self.floor = None
        self.load_seconds = None
        self.load_cpu_seconds = None

    def setup(self, runtime, deploy, Session) -> None:
        kind = self.spec["kind"]
        t, cpu = time.monotonic(), time.process_time()
        if kind == "floor":
            runtime.load(self.spec["object"], "floor", pin_root=FLOOR_PIN_ROOT)
            self.floor = True
            self.progs = Programs(runtime, FLOOR_PIN_ROOT, "floor")
        elif kind == "policyc":
            self.session = Session(Path(self.spec["manifest"]), name=f"peers{self.spec['rules']}")
            self.progs = Programs(runtime, deploy.PIN_ROOT, self.session.name)
        self.load_seconds = time.monotonic() - t
        self.load_cpu_seconds = time.process_time() - cpu

    def worker(self) -> Worker:
        kind = self.spec["kind"]
        prefix = []
        if kind == "landlock":
            prefix = [self.plan["landlock_exec"], str(self.spec["rules"]), str(self.plan["port"]),
                      self.plan["decoy_dir"], "--"]
        w = Worker(self.plan["port"], prefix)
        if self.session is not None:
            self.session.govern(w.pid)
        return w

    def teardown(self, runtime) -> None:
        if self.progs is not None:
            self.progs.close()
            self.progs = None
        if self.session is not None:
            self.session.drain()
            self.session.close()
            self.session = None
        if self.floor:
            runtime.unload("floor", pin_root=FLOOR_PIN_ROOT)
            self.floor = None


def prepare(plan: dict) -> None:
    for op in plan["ops"]:
        if op["cmd"] in ("open", "stat"):
            p = Path(op["arg"])
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("x\n")
    # the static binary on tmpfs: an exec from the host's 9p tree would break the clock
    exe = Path(plan["exec_target"])
    exe.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plan["exec_source"], exe)
    exe.chmod(0o755)


def landlock_proofs(w: Worker, plan: dict, rules: int) -> dict:
    """A Landlock worker must be unable to make a FIFO (the one right rule 1 withholds) and,
    where Landlock governs TCP connect (ABI 4+), to connect to a port no rule grants."""
    _, fifo = w.run("mkfifo", plan["fifo_probe"], 1)
    _, refused = w.run("refused", str(plan["port"] + rules + 7), 1)
    return {"mkfifo_denied": fifo == 1, "connect_denied": refused == 1}


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    sys.path.insert(0, plan["repo"])
    from policyc import runtime
    from policyc import deploy
    from policyc.execute import Session

    status = runtime.check_bpf_lsm()
    if not status.usable:
        log(f"BPF LSM not usable: {status.reason}")
        return 3
    prepare(plan)
    # the guest's ASLR off: a worker's (and each exec'd child's) layout would otherwise differ
    # from one round to the next, and with it the instruction count of an exec (guest only)
    Path("/proc/sys/kernel/randomize_va_space").write_text("0\n")
    ops = plan["ops"]
    variants = [Variant(v, plan) for v in plan["variants"]]
    res = {v.spec["label"]: {"kind": v.spec["kind"], "rules": v.spec.get("rules"), "load_seconds": [],
                             "load_cpu_seconds": [],
                             "ops": {op["label"]: {"ns_per_op": [], "fails": 0, "programs": []} for op in ops}}
           for v in variants}
    proofs: dict[str, list] = {}
    started = time.monotonic()
    with runtime.enable_stats():
        for rnd in range(plan["rounds"]):
            for v in variants:
                label = v.spec["label"]
                v.setup(runtime, deploy, Session)
                if v.spec["kind"] in ("floor", "policyc"):
                    # guest clock: an I/O wait (9p reads of the manifest) warps it forward under
                    # -icount sleep=off; the loader's CPU time (user + system) does not wait
                    res[label]["load_seconds"].append(round(v.load_seconds, 3))
                    res[label]["load_cpu_seconds"].append(round(v.load_cpu_seconds, 3))
                try:
                    w = v.worker()
                    try:
                        if v.spec["kind"] == "landlock":
                            proofs.setdefault(label, []).append(landlock_proofs(w, plan, v.spec["rules"]))
                        for op in ops:
                            n = op["iterations"]
                            w.run(op["cmd"], op["arg"], op["warmup"])
                            before = v.progs.snapshot() if v.progs else None
                            t, fails = w.run(op["cmd"], op["arg"], n)
                            after = v.progs.snapshot() if v.progs else None
                            r = res[label]["ops"][op["label"]]
                            r["ns_per_op"].append(t / n)
                            r["fails"] += fails
                            if before is not None:
                                r["programs"].append({
                                    name: [after[name][0] - before[name][0], after[name][1] - before[name][1]]
                                    for name in after if after[name][1] != before[name][1]})
                    finally:
                        w.close()
                finally:
                    v.teardown(runtime)
                summary = ", ".join(f"{k} {statistics.median(x['ns_per_op']):,.0f}"
                                    for k, x in res[label]["ops"].items())
                log(f"round {rnd + 1}/{plan['rounds']} {label}: {summary} "
                    f"({time.monotonic() - started:.0f} s)")
    out = {"kernel": platform.release(), "rounds": plan["rounds"], "variants": res,
           "landlock_proofs": proofs, "guest_seconds": round(time.monotonic() - started, 1)}
    print(RESULT_PREFIX + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
