"""Guest side of bench/load_reload.py: runs inside the VM (as root), never on the host.

    <venv python> bench/load_reload_guest.py PLAN.json

PLAN.json (written by the host script) names, per size, two prebuilt manifests of one policy
(v1, v2: they differ in one rule that no probe touches) and the load name. Per round, every
size in turn:

  fresh load   deploy.load_manifest(v1) timed on the guest clock (time.monotonic) and in guest
               CPU (time.process_time: user + system of this process), then deploy.unload,
               also timed; then, with plan["cli"], `python -m policyc load --no-adopt v1` as a
               subprocess (guest clock, and the child's CPU from RUSAGE_CHILDREN), unloaded
               through deploy.unload;
  under fire   load v1; fork a prober that the policy governs (its task marked GOVERNED in the
               policy's `subjects` map, as Session.govern does) and that opens the denied file
               for reading in a loop, counting opens that succeeded, EACCES and other errors in
               a shared page; once it has been denied a few times, replace the policy
               plan["replaces"] times (v2, v1, v2, ...: every replace changes the maps), each
               timed, reading the prober's counts before and after each one (attempts during
               the replace); a few more attempts after the last; stop it; unload.

The prober pauses plan["pause_s"] between attempts, as tests/kernel/test_reload.py's looper does:
a task that never blocks holds up the RCU-tasks grace period that a BPF trampoline update waits
for, which under TCG stalled reloads for minutes. A replace that takes longer than
plan["replace_deadline_s"] ends the run (exit 3) with a message instead of hanging the boot.

One JSON line on stdout prefixed with RESULT_PREFIX; progress on stderr.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import platform
import resource
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

RESULT_PREFIX = "LOAD_RELOAD_RESULT "

# The prober's shared page: go flag, stop flag, then its counts (ok, eacces, other errors).
GO, STOP, COUNTS = 0, 8, 16
FLAG = struct.Struct("<Q")
COUNT = struct.Struct("<QQQ")
SETTLE_ATTEMPTS = 20      # denied opens before the first replace: the prober runs and is governed
AFTER_ATTEMPTS = 20       # and after the last: it is still governed
WAIT_DEADLINE_S = 120     # guest seconds to reach either


def log(msg: str) -> None:
    print(f"load_reload_guest: {msg}", file=sys.stderr, flush=True)


def cpu_of_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(fn) -> tuple[object, dict]:
    """fn()'s value and {"wall": guest-clock s, "cpu": this process's CPU s}."""
    t, cpu = time.monotonic(), time.process_time()
    value = fn()
    return value, {"wall": round(time.monotonic() - t, 4), "cpu": round(time.process_time() - cpu, 4)}


def counts_dict(c: tuple[int, int, int]) -> dict:
    ok, eacces, other = c
    return {"attempts": ok + eacces + other, "ok": ok, "eacces": eacces, "other": other}


def delta(after: tuple, before: tuple) -> dict:
    return counts_dict(tuple(a - b for a, b in zip(after, before)))


class Prober:
    """A forked child that, once told to go, opens `path` read-only in a loop and keeps its
    counts in a shared anonymous page. After the fork it opens no file but `path`."""

    def __init__(self, path: str, pause_s: float) -> None:
        self.page = mmap.mmap(-1, mmap.PAGESIZE)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:   # the child: never returns
            code = 0
            try:
                self._loop(path, pause_s)
            except BaseException:
                code = 1
            os._exit(code)
        self.pid = pid

    def _loop(self, path: str, pause_s: float) -> None:
        page, unpack, pack = self.page, FLAG.unpack_from, COUNT.pack_into
        opn, cls, rd, sleep = os.open, os.close, os.O_RDONLY, time.sleep
        while not unpack(page, GO)[0]:
            sleep(0.001)
        ok = eacces = other = 0
        while not unpack(page, STOP)[0]:
            try:
                cls(opn(path, rd))
                ok += 1
            except OSError as e:
                if e.errno == errno.EACCES:
                    eacces += 1
                else:
                    other += 1
            pack(page, COUNTS, ok, eacces, other)
            if pause_s:
                sleep(pause_s)

    def go(self) -> None:
        FLAG.pack_into(self.page, GO, 1)

    def counts(self) -> tuple[int, int, int]:
        return COUNT.unpack_from(self.page, COUNTS)

    def wait_for(self, attempts: int, since: tuple) -> bool:
        """Until `attempts` more attempts than `since` were made (False at the deadline)."""
        end = time.monotonic() + WAIT_DEADLINE_S
        while sum(self.counts()) - sum(since) < attempts:
            if time.monotonic() > end:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> tuple[int, int, int]:
        FLAG.pack_into(self.page, STOP, 1)
        _, status = os.waitpid(self.pid, 0)
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
            raise SystemExit(f"load_reload_guest: the prober ended badly (status {status:#x})")
        final = self.counts()
        self.page.close()
        return final

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass


def fresh_load(size: dict, deploy, plan: dict) -> dict:
    """Load v1 and unload it, both timed; then the same through the CLI (plan["cli"])."""
    loaded, load = timed(lambda: deploy.load_manifest(Path(size["v1"]), name=size["name"]))
    _, unload = timed(lambda: deploy.unload(size["name"]))
    out = {"load": load, "unload": unload, "cli_load": None}
    if plan["cli"]:
        t, cpu = time.monotonic(), cpu_of_children()
        r = subprocess.run([sys.executable, "-m", "policyc", "load", "--no-adopt", size["v1"]],
                           cwd=plan["repo"], capture_output=True, text=True)
        out["cli_load"] = {"wall": round(time.monotonic() - t, 4), "cpu": round(cpu_of_children() - cpu, 4),
                           "returncode": r.returncode,
                           "stderr": r.stderr[-2000:] if r.returncode else ""}
        if r.returncode == 0:
            deploy.unload(size["name"])
    return out


def under_fire(size: dict, runtime, deploy, abi, plan: dict) -> dict:
    """Replace the policy plan["replaces"] times while a governed prober opens the denied file."""
    name = size["name"]
    deploy.load_manifest(Path(size["v1"]), name=name)
    prober = None
    try:
        prober = Prober(plan["secret"], plan["pause_s"])
        subjects = os.path.join(deploy.PIN_ROOT, name, "maps", "subjects")
        runtime.mark_task(prober.pid, subjects, abi.SUBJECT_STATE.pack_fields(state=abi.SUBJECT_GOVERNED))
        prober.go()
        zero = (0, 0, 0)
        settled = prober.wait_for(SETTLE_ATTEMPTS, zero)
        before = prober.counts()
        replaces = []
        for i in range(plan["replaces"]):
            manifest = size["v2"] if i % 2 == 0 else size["v1"]

            def stalled(i=i) -> None:
                prober.kill()
                sys.stderr.write(f"load_reload_guest: FAILED: replace {i + 1} of {name} did not finish within "
                                 f"{plan['replace_deadline_s']} s: the kernel stalled it\n")
                sys.stderr.flush()
                os._exit(3)

            watchdog = threading.Timer(plan["replace_deadline_s"], stalled)
            watchdog.start()
            c0 = prober.counts()
            try:
                loaded, t = timed(lambda: deploy.load_manifest(Path(manifest), replace=True, name=name))
            finally:
                watchdog.cancel()
            c1 = prober.counts()
            replaces.append({"version": "v2" if i % 2 == 0 else "v1", **t, "replaced": bool(loaded.replaced),
                             "during": delta(c1, c0)})
        last = prober.counts()
        after_ok = prober.wait_for(AFTER_ATTEMPTS, last)
        final = prober.stop()
        prober = None
        return {"settled": settled, "after_reached": after_ok,
                "before": counts_dict(before), "replaces": replaces,
                "after": delta(final, last), "total": counts_dict(final)}
    finally:
        if prober is not None:
            prober.kill()
            os.waitpid(prober.pid, 0)
        deploy.unload(name)


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text())
    sys.path.insert(0, plan["repo"])
    from policyc import abi, deploy, runtime

    status = runtime.check_bpf_lsm()
    if not status.usable:
        log(f"BPF LSM not usable: {status.reason}")
        return 3
    secret = Path(plan["secret"])
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("secret\n")
    os.close(os.open(secret, os.O_RDONLY))   # ungoverned, it opens: a denial is the policy's
    for size in plan["sizes"]:               # leftovers of an earlier run
        if size["name"] in deploy.loaded_names():
            deploy.unload(size["name"])
    res = {str(s["rules"]): {"name": s["name"], "rounds": []} for s in plan["sizes"]}
    started = time.monotonic()
    for rnd in range(plan["rounds"]):
        for size in plan["sizes"]:
            rec = fresh_load(size, deploy, plan)
            rec["fire"] = under_fire(size, runtime, deploy, abi, plan)
            res[str(size["rules"])]["rounds"].append(rec)
            f = rec["fire"]
            cli = rec["cli_load"]
            log(f"round {rnd + 1}/{plan['rounds']} {size['rules']} rules: load {rec['load']['wall']:.2f} s "
                f"(cpu {rec['load']['cpu']:.2f})"
                + (f", cli {cli['wall']:.2f} s (exit {cli['returncode']})" if cli else "")
                + ", replaces " + ", ".join(f"{r['wall']:.2f}" for r in f["replaces"])
                + f" s; attempts during {sum(r['during']['attempts'] for r in f['replaces'])}, "
                f"got through {f['total']['ok']} ({time.monotonic() - started:.0f} s)")
    out = {"kernel": platform.release(), "rounds": plan["rounds"], "replaces": plan["replaces"],
           "pause_s": plan["pause_s"], "sizes": res, "guest_seconds": round(time.monotonic() - started, 1)}
    print(RESULT_PREFIX + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
