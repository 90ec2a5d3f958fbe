"""Guest side of bench/kernel_cost.py: runs inside the VM (as root), never on the host.

    <venv python> bench/kernel_cost_guest.py PLAN.json

PLAN.json (written by the host script) names the prebuilt manifests (one per rule count), the
probe paths and the loop sizes. For each probe path, under no policy (the baseline) and then
under each policy in turn, a small governed worker process opens and closes the path
`iterations` times per round; we read `run_time_ns` / `run_cnt` of the policy's `file_open`
program before and after each round (kernel BPF statistics on) and the worker reports the
round's wall time on the guest clock. Everything goes to stdout as one JSON line prefixed with
RESULT_PREFIX; progress lines go to stderr.

The worker imports nothing after it says it is ready, so every open it makes while governed
is one of ours: run_cnt per round should be exactly `iterations` (it is reported, so a stray
open by another process during a round would show).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULT_PREFIX = "KERNEL_COST_RESULT "

# The worker: a loop of open+close on request. Started with -S -I so that it loads as little
# as possible; after "ready" it touches no file but the probe path.
WORKER = r"""
import os, sys, time
rd, wr, O = sys.stdin.readline, sys.stdout.write, os.O_RDONLY
op, cl, now = os.open, os.close, time.perf_counter_ns
wr("ready %d\n" % os.getpid()); sys.stdout.flush()
while True:
    line = rd()
    if not line:
        break
    path, n = line.rstrip("\n").rsplit(" ", 1)
    n = int(n)
    fails = 0
    t = now()
    for _ in range(n):
        try:
            cl(op(path, O))
        except OSError:
            fails += 1
    t = now() - t
    wr("%d %d\n" % (t, fails)); sys.stdout.flush()
"""


def log(msg: str) -> None:
    print(f"kernel_cost_guest: {msg}", file=sys.stderr, flush=True)


class Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-S", "-I", "-c", WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        hello = self.proc.stdout.readline().split()
        assert hello and hello[0] == "ready", hello
        self.pid = int(hello[1])

    def loop(self, path: str, n: int) -> tuple[int, int]:
        """(wall ns of n open+close on the guest clock, failed opens)."""
        self.proc.stdin.write(f"{path} {n}\n")
        self.proc.stdin.flush()
        t, fails = self.proc.stdout.readline().split()
        return int(t), int(fails)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


class FileOpenStats:
    """run_time_ns and run_cnt of a loaded policy's file_open program.

    runtime.prog_stats() lists the policy's pin directory, and that listing is itself an open
    that runs file_open (as an ungoverned process: a ~200 ns early exit), which would land in
    the round being measured. So we find the program once, keep a descriptor for it, and read
    its statistics through BPF_OBJ_GET_INFO_BY_FD alone, which opens nothing.
    """

    def __init__(self, runtime, pin_root: str, name: str) -> None:
        from policyc.runtime.loader import _prog_fd_by_id
        from policyc.runtime.stats import _prog_info

        self._info = _prog_info
        ids = [p["id"] for p in runtime.prog_stats(pin_root, name) if p["name"].endswith("file_open")]
        if len(ids) != 1:
            raise SystemExit(f"policy {name}: expected one file_open program, found {len(ids)}")
        self.fd = _prog_fd_by_id(ids[0])

    def __call__(self) -> tuple[int, int]:
        info = self._info(self.fd)
        return info.run_time_ns, info.run_cnt

    def close(self) -> None:
        os.close(self.fd)


def summarize(values: list[float]) -> dict:
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values),
            "spread": (max(values) - min(values)) / med if med else 0.0, "rounds": values}


def measure(worker: Worker, path: str, plan: dict, stats=None) -> dict:
    """Warm up, then `repeats` rounds; stats() -> (run_time_ns, run_cnt) or None."""
    n = plan["iterations"]
    worker.loop(path, plan["warmup"])
    loop_ns, bpf_ns, cnts = [], [], []
    fails = 0
    for _ in range(plan["repeats"]):
        before = stats() if stats else None
        t, f = worker.loop(path, n)
        after = stats() if stats else None
        fails += f
        loop_ns.append(t / n)
        if stats:
            d_ns, d_cnt = after[0] - before[0], after[1] - before[1]
            cnts.append(d_cnt)
            bpf_ns.append(d_ns / d_cnt if d_cnt else 0.0)
    out = {"loop_ns_per_op": summarize(loop_ns), "failed_opens": fails}
    if stats:
        out["file_open_ns_per_event"] = summarize(bpf_ns)
        out["run_cnt_per_round"] = cnts
    return out


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
    for path in plan["paths"].values():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("x\n")
    out = {"kernel": platform.release(), "iterations": plan["iterations"], "warmup": plan["warmup"],
           "repeats": plan["repeats"], "paths": plan["paths"], "baseline": {}, "policies": []}
    with runtime.enable_stats():
        # 0 rules: no policy loaded at all, so no BPF program on file_open: the syscall's own cost
        log("baseline: no policy loaded")
        w = Worker()
        try:
            for label, path in plan["paths"].items():
                out["baseline"][label] = measure(w, path, plan)
        finally:
            w.close()
        for pol in plan["policies"]:
            name = f"kcost{pol['rules']}"
            t = time.monotonic()
            session = Session(Path(pol["manifest"]), name=name)
            load_s = time.monotonic() - t
            log(f"{pol['rules']} rules: loaded in {load_s:.1f} s (guest clock)")
            rec = {"rules": pol["rules"], "load_seconds": round(load_s, 3), "paths": {}}
            try:
                stats = FileOpenStats(runtime, deploy.PIN_ROOT, name)
                w = Worker()
                try:
                    session.govern(w.pid)
                    for label, path in plan["paths"].items():
                        rec["paths"][label] = measure(w, path, plan, stats)
                        log(f"  {label}: {rec['paths'][label]['file_open_ns_per_event']['median']:.0f} ns/event")
                finally:
                    w.close()
                # a process outside the policy's subjects: the program runs and exits early
                w = Worker()
                try:
                    label = next(iter(plan["paths"]))
                    rec["ungoverned"] = measure(w, plan["paths"][label], plan, stats)
                    rec["ungoverned"]["path"] = label
                finally:
                    w.close()
                    stats.close()
                rec["events"] = len(session.drain())
            finally:
                session.close()
            out["policies"].append(rec)
    print(RESULT_PREFIX + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
