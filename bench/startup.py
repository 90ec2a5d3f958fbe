"""Start-up: the wall time of `policyc --help` and of `policyc check` on a 10-rule policy, each
a whole process from start to exit (target: under 0.15 s each).

    python bench/startup.py [--runs N] [--warmup W]

Runs the `policyc` beside this Python (the venv's entry point; `python -m policyc` when there
is none), W times unmeasured then N times, and prints min, median and max wall seconds per
command, and the modules each one imports (`-X importtime`, the ten costliest). Writes
bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.15

POLICY = """\
policy app {
    subject exe "/usr/bin/app"
    default deny
    allow file read "/etc/app/**", "/usr/share/app/**"
    allow file write, create "/var/log/app/*.log"
    deny file write "/etc/**"
    allow exec "/usr/bin/app"
    deny exec "/usr/bin/{curl,wget}"
    allow net bind tcp port 8080
    allow net connect tcp 10.0.0.0/8 port 5432
    allow capability net_bind_service
    deny signal kill to exe "/usr/sbin/policyc*"
    deny ptrace
}
"""


def policyc_command() -> list[str]:
    exe = Path(sys.executable).parent / "policyc"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "policyc"]


def time_runs(argv: list[str], runs: int, warmup: int) -> list[float]:
    out = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.decode()[-500:]}")
        if i >= warmup:
            out.append(dt)
    return out


def costliest_imports(args: list[str], n: int = 10) -> list[tuple[str, float]]:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "policyc", *args], capture_output=True, text=True)
    rows = []
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        try:
            us = int(cumulative.strip())
        except ValueError:
            continue
        if not name.startswith("  "):     # top-level imports only: their times include their children
            rows.append((name.strip(), us / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    cmd = policyc_command()
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "app.policy"
        policy.write_text(POLICY)
        cases = {"policyc --help": ["--help"], "policyc check (10 rules)": ["check", str(policy)]}
        results = {}
        for name, args in cases.items():
            times = time_runs(cmd + args, a.runs, a.warmup)
            results[name] = {"min_s": min(times), "median_s": statistics.median(times), "max_s": max(times),
                             "runs": a.runs, "under_target": statistics.median(times) < TARGET_S,
                             "imports": costliest_imports(args)}
    print(f"{'command':<28} {'min':>7} {'median':>7} {'max':>7}   (wall seconds, {a.runs} runs; target {TARGET_S})")
    for name, r in results.items():
        print(f"{name:<28} {r['min_s']:7.3f} {r['median_s']:7.3f} {r['max_s']:7.3f}")
    for name, r in results.items():
        print(f"\n{name}: costliest top-level imports (cumulative s)")
        for mod, s in r["imports"]:
            print(f"  {mod:<40} {s:.3f}")
    out = ROOT / "bench" / "results" / "startup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"python": platform.python_version(), "machine": platform.machine(),
                               "cpus": os.cpu_count(), "command": cmd, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
