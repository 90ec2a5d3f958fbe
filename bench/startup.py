"""Start-up: the wall time of `policyc --help` and of `policyc check` on a 10-rule policy, each
a whole process from start to exit (target: under 0.15 s each).

    python bench/startup.py [--runs N] [--warmup W] [--against DIR] [--output FILE]

Runs the `policyc` beside this Python (the venv's entry point; `python -m policyc` when there
is none), W times unmeasured then N times, and prints min, median and max wall seconds per
command, its median CPU seconds (user + system: less moved than the wall time by other jobs
on a shared machine), and the modules each one imports (`-X importtime`, the ten
costliest). Also times the interpreter alone and importing typer (the floor of any
`policyc` command) and records the load average before and after, so a run on a loaded
machine can be told from a slower policyc. Writes bench/results/startup.json (or `--output FILE`).

`--against DIR`: DIR is another copy of the source tree (say this one with some files as they
were before a change); each run of this tree is paired with one of DIR's, alternating, so both
see the same load on a shared machine, and the two are printed side by side with the ratios
of their medians. Both then run as `python -m policyc` in their own tree. What the two import
is compared too (`-X importtime`, the median of `--import-runs` runs of each): the modules
only one of them imports (the first of each such subtree, with its cumulative time) and the
modules whose own time changed.

Which parser `check` used is recorded (`parser`: "standalone" when the Lark standalone module
in the cache was used, policyc/parse/standalone.py; "lark" otherwise): the unmeasured runs
write that module, so the measured runs use it.

The commands run with bytecode writing on (PYTHONDONTWRITEBYTECODE removed from their
environment): the unmeasured runs leave each module's .pyc, as an installed wheel has them,
so what is measured is start-up, not compiling.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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


BASELINES = {"python -c pass": "pass", "python -c 'import typer.main'": "import typer.main"}


def fmt_load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def policyc_command() -> list[str]:
    exe = Path(sys.executable).parent / "policyc"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "policyc"]


def child_env(tree: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [env.get("PYTHONPATH")])])
    return env


CPU: dict[int, float] = {}   # id(list of wall times) -> the CPU seconds (user + system) of those runs


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_once(argv: list[str], env: dict[str, str], cwd: Path | None = None, cpu: list[float] | None = None) -> float:
    """The wall seconds of one run; its CPU seconds appended to `cpu` (less moved by other
    jobs on a shared machine than the wall time)."""
    c0, t0 = _cpu(), time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                       cwd=cwd)
    dt = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(_cpu() - c0)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.decode()[-500:]}")
    return dt


def time_runs(argv: list[str], runs: int, warmup: int, env: dict[str, str] | None = None) -> list[float]:
    env = env or child_env()
    out, cpu = [], []
    for i in range(warmup + runs):
        dt = run_once(argv, env, cpu=cpu)
        if i >= warmup:
            out.append(dt)
    CPU[id(out)] = statistics.median(cpu[warmup:])
    return out


def time_pairs(tree: Path, args: list[str], runs: int, warmup: int) -> tuple[list[float], list[float]]:
    """`policyc ARGS` of this tree and of source tree `tree` alternately (which goes first
    alternates too): paired runs. Both run as `python -m policyc` in their tree (`-m` puts the
    working directory first on sys.path, before PYTHONPATH and the venv's editable install)."""
    argv = [sys.executable, "-m", "policyc", *args]
    env, other_env = child_env(ROOT), child_env(tree)
    mine, theirs, mine_cpu, their_cpu = [], [], [], []
    for i in range(warmup + runs):
        if i % 2:
            b, a = run_once(argv, other_env, tree, their_cpu), run_once(argv, env, ROOT, mine_cpu)
        else:
            a, b = run_once(argv, env, ROOT, mine_cpu), run_once(argv, other_env, tree, their_cpu)
        if i >= warmup:
            mine.append(a)
            theirs.append(b)
    CPU[id(mine)], CPU[id(theirs)] = statistics.median(mine_cpu[warmup:]), statistics.median(their_cpu[warmup:])
    return mine, theirs


def import_tree(args: list[str], tree: Path | None = None) -> dict[str, tuple[float, float, str | None]]:
    """One `python -X importtime -m policyc ARGS` run (in source tree `tree`, else this one):
    module -> (its own seconds, cumulative seconds, the module that imported it)."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "policyc", *args], capture_output=True,
                       text=True, env=child_env(tree), cwd=tree or ROOT)
    out: dict[str, tuple[float, float, str | None]] = {}
    # the lines come children first, each indented two spaces deeper than its importer
    waiting: dict[int, list[str]] = {}
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        own, cumulative, name = line.split(":", 1)[1].split("|")
        try:
            own_s, cum_s = int(own) / 1e6, int(cumulative) / 1e6
        except ValueError:
            continue
        depth = (len(name) - len(name.lstrip(" "))) // 2
        name = name.strip()
        for child in waiting.pop(depth + 1, []):
            out[child] = (*out[child][:2], name)
        out[name] = (own_s, cum_s, None)
        waiting.setdefault(depth, []).append(name)
    return out


def median_imports(args: list[str], runs: int, tree: Path | None = None) -> dict[str, dict]:
    """The median own and cumulative seconds of each module over `runs` runs."""
    trees = [import_tree(args, tree) for _ in range(runs)]
    names = {n for t in trees for n in t}
    out = {}
    for n in names:
        seen = [t[n] for t in trees if n in t]
        if len(seen) * 2 > runs:   # imported in most runs
            out[n] = {"own_s": statistics.median(s[0] for s in seen),
                      "cumulative_s": statistics.median(s[1] for s in seen), "parent": seen[0][2]}
    return out


def import_changes(mine: dict[str, dict], theirs: dict[str, dict], threshold_s: float = 0.0005) -> dict:
    """What one tree imports and the other does not (the top of each such subtree, with its
    cumulative time), and the modules both import whose own time moved by `threshold_s` or
    more."""
    def only(a: dict, b: dict) -> list[tuple[str, float]]:
        tops = [(n, m["cumulative_s"]) for n, m in a.items()
                if n not in b and (m["parent"] is None or m["parent"] in b)]
        return sorted(tops, key=lambda t: -t[1])

    moved = [(n, theirs[n]["own_s"], m["own_s"]) for n, m in mine.items()
             if n in theirs and abs(m["own_s"] - theirs[n]["own_s"]) >= threshold_s]
    return {"only_this_tree": only(mine, theirs), "only_against": only(theirs, mine),
            "own_time_moved": sorted(moved, key=lambda t: t[2] - t[1]),
            "total_own_s": (sum(m["own_s"] for m in theirs.values()), sum(m["own_s"] for m in mine.values()))}


def parser_kind(tree: Path | None = None) -> str:
    """Which parser policyc/parse uses in `tree` now: "standalone" or "lark"."""
    code = "from policyc import parse as P; print(getattr(P._parser(), 'kind', 'lark'))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(tree),
                       cwd=tree or ROOT)
    return r.stdout.strip() or f"unknown ({r.stderr.strip()[-200:]})"


def costliest_imports(args: list[str], n: int = 10) -> list[tuple[str, float]]:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "policyc", *args], capture_output=True, text=True,
                       env=child_env())
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
    ap.add_argument("--output", metavar="FILE", type=Path, default=ROOT / "bench" / "results" / "startup.json",
                    help="where the results go (default: bench/results/startup.json)")
    ap.add_argument("--against", metavar="DIR", type=Path,
                    help="another source tree, run alternately with this one (paired runs)")
    ap.add_argument("--import-runs", type=int, default=9, metavar="N",
                    help="with --against: -X importtime runs of each tree whose medians are compared")
    a = ap.parse_args()
    cmd = policyc_command()
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "app.policy"
        policy.write_text(POLICY)
        cases = {"policyc --help": ["--help"], "policyc check (10 rules)": ["check", str(policy)]}
        load_before = os.getloadavg()
        # What no policyc command can go below, timed the same way: the interpreter alone and
        # the interpreter importing typer (the CLI's framework). On a loaded machine every
        # figure grows; the ratios to these grow much less (docs/benchmarks.md, Start-up).
        baseline = {name: time_runs([sys.executable, "-c", code], a.runs, a.warmup)
                    for name, code in BASELINES.items()}
        results = {}
        for name, args in cases.items():
            if a.against is not None:
                times, other = time_pairs(a.against.resolve(), args, a.runs, a.warmup)
            else:
                times, other = time_runs(cmd + args, a.runs, a.warmup), None
            results[name] = {"min_s": min(times), "median_s": statistics.median(times), "max_s": max(times),
                             "cpu_median_s": CPU[id(times)], "runs": a.runs,
                             "under_target": statistics.median(times) < TARGET_S,
                             "imports": costliest_imports(args)}
            if other is not None:
                results[name]["against"] = {"tree": str(a.against), "min_s": min(other),
                                            "median_s": statistics.median(other), "max_s": max(other),
                                            "cpu_median_s": CPU[id(other)]}
                results[name]["import_changes"] = import_changes(
                    median_imports(args, a.import_runs), median_imports(args, a.import_runs, a.against.resolve()))
        parsers = {"this tree": parser_kind(None if a.against is None else ROOT)}
        if a.against is not None:
            parsers["against"] = parser_kind(a.against.resolve())
    load_after = os.getloadavg()
    base = {name: {"min_s": min(t), "median_s": statistics.median(t), "cpu_median_s": CPU[id(t)]}
            for name, t in baseline.items()}
    floor = base["python -c 'import typer.main'"]["median_s"]
    for r in results.values():
        r["x_typer_import"] = r["median_s"] / floor
    out = a.output   # written before anything is printed: a closed stdout (| head) loses no run
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"python": platform.python_version(), "machine": platform.machine(),
                               "cpus": os.cpu_count(), "command": cmd,
                               "load_average": {"before": load_before, "after": load_after},
                               "parser": parsers,
                               "baseline": base, "results": results}, indent=2) + "\n")
    print(f"load average (1, 5, 15 min) before {fmt_load(load_before)}, after {fmt_load(load_after)}; "
          f"{os.cpu_count()} CPUs")
    print(f"{'command':<28} {'min':>7} {'median':>7} {'max':>7} {'cpu':>7}   "
          f"(wall seconds, {a.runs} runs; cpu: median user+sys; target {TARGET_S})")
    for name, r in results.items():
        print(f"{name:<28} {r['min_s']:7.3f} {r['median_s']:7.3f} {r['max_s']:7.3f} {r['cpu_median_s']:7.3f}")
        if "against" in r:
            o = r["against"]
            print(f"{'  against ' + str(a.against):<28} {o['min_s']:7.3f} {o['median_s']:7.3f} {o['max_s']:7.3f}"
                  f" {o['cpu_median_s']:7.3f}   (this tree / it, medians: wall "
                  f"{r['median_s'] / o['median_s']:.2f}, cpu {r['cpu_median_s'] / o['cpu_median_s']:.2f})")
    for name, b in base.items():
        print(f"{name:<28} {b['min_s']:7.3f} {b['median_s']:7.3f} {'':>7} {b['cpu_median_s']:7.3f}   (baseline)")
    print("median / median of `import typer.main`: "
          + ", ".join(f"{name} {r['x_typer_import']:.2f}" for name, r in results.items()))
    print("check's parser: " + ", ".join(f"{k} {v}" for k, v in parsers.items()))
    for name, r in results.items():
        print(f"\n{name}: costliest top-level imports (cumulative s)")
        for mod, s in r["imports"]:
            print(f"  {mod:<40} {s:.3f}")
        ch = r.get("import_changes")
        if ch:
            theirs, mine = ch["total_own_s"]
            print(f"{name}: imports against {a.against} (-X importtime, median of {a.import_runs} runs; "
                  f"all modules' own time {theirs * 1e3:.1f} ms there, {mine * 1e3:.1f} ms here)")
            for label, rows in (("only there", ch["only_against"]), ("only here", ch["only_this_tree"])):
                shown = ", ".join(f"{m} {s * 1e3:.1f}" for m, s in rows if s >= 0.0003) or "nothing over 0.3 ms"
                print(f"  {label} (ms, cumulative): {shown}")
            moved = ", ".join(f"{m} {t * 1e3:.1f} -> {o * 1e3:.1f}" for m, t, o in ch["own_time_moved"])
            print(f"  own time moved (ms, there -> here): {moved or 'none by 0.5 ms'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
