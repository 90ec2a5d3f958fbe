#!/usr/bin/env python
"""Load and reload (issue #12, target 3): load time of 10 and 10,000 rules on the guest clock,
and the enforcement gap during `load --replace` (must stay 0), in one boot per kernel.

    .venv/bin/python bench/load_reload.py [--kernel 6.1[,6.12]] [--rounds 3] [--replaces 3] [-v]
    .venv/bin/python bench/load_reload.py --dry-run      # build the policies and the plan, no VM
    .venv/bin/python bench/load_reload.py --report bench/results/load_reload-6.1.json   # no VM

On the host: generates, per size (10 and 10,000 rules), a `default allow` policy made of
bench/peers.py's rules (file rules as bench/kernel_cost.py makes them, plus exec and net rules;
the 10,000 split 8,000 / 1,000 / 1,000 as there), none of which any probe touches, plus one
`deny file read "/tmp/lr/secret"`, in two versions that differ in one more rule (`deny file
write "/tmp/lr/version-1"` or `-2`: a replace really changes the maps), and builds each with
policyc's pipeline (the guest never runs clang). Then, per kernel, boots ONE VM with one vCPU
and QEMU instruction counting (`-icount shift=0,sleep=off`: guest time is an instruction count,
deterministic) and runs bench/load_reload_guest.py, which per round and size:

  times a fresh load (deploy.load_manifest) and its unload, and `policyc load` as a command
  (without --no-cli); then loads v1, forks a prober the policy governs that opens the denied
  file in a loop (1 ms pause between attempts: see the guest's docstring), replaces the policy
  --replaces times (v2, v1, v2, ...), timing each and counting the prober's attempts during
  each, and counts every open that got through (the gap).

Prints a table per kernel and writes bench/results/load_reload-<kernel>.json (the raw numbers,
the kernel release, the machine, the date). Exits 1 when an open got through, an error was not
EACCES, the prober did not run (no denied attempt before, during or after the replaces) or a
replace did not replace; 2 when the VM or the guest failed. Guest-clock times include the
clock's jumps over I/O waits (9p reads of the manifests) under sleep=off; guest CPU (user +
system of the loading process) does not. TCG figures are many times a real CPU's.

Wall time: the builds take about 10 s here (10,000 rules, two versions; the prebuilt object is
shared, only the maps differ), a boot with the defaults several minutes (each replace of
10,000 rules is a whole object load and verification under TCG).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policyc import deploy, pipeline  # noqa: E402
from policyc.vm import cache_dir, resolve_kernel  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import peers  # noqa: E402  (its rule generator and split)

GUEST = ROOT / "bench" / "load_reload_guest.py"
RESULTS = ROOT / "bench" / "results"
RESULT_PREFIX = "LOAD_RELOAD_RESULT "
QEMU_OPTS = peers.QEMU_OPTS

PROBE_DIR = "/tmp/lr"
SECRET = f"{PROBE_DIR}/secret"
SIZES = (10, 10000)
PAUSE_S = 0.001             # the prober's pause between attempts (tests/kernel/test_reload.py's)
REPLACE_DEADLINE_S = 600    # a replace slower than this (guest clock) is a stall: the guest gives up


# --- policies ------------------------------------------------------------------------------------


def policy_name(rules: int) -> str:
    return f"loadreload{rules}"


def generate(rules: int, version: int) -> str:
    """bench/peers.py's `default allow` policy of `rules` rules (none matches the probe),
    renamed, plus the denied probe file and the version rule (v1 and v2 differ only there)."""
    text = peers.generate(rules)
    head, sep, rest = text.partition("policy bench {")
    assert sep and not head, "bench/peers.py's policy no longer starts with `policy bench {`"
    body = rest.rstrip()
    assert body.endswith("}")
    return (f"policy {policy_name(rules)} {{" + body[:-1]
            + f'    deny file read "{SECRET}"\n'
            + f'    deny file write "{PROBE_DIR}/version-{version}"\n'
            + "}\n")


def build_version(rules: int, version: int, out_root: Path) -> dict:
    d = out_root / f"rules-{rules}" / f"v{version}"
    d.mkdir(parents=True, exist_ok=True)
    src = d / f"{policy_name(rules)}.policy"
    src.write_text(generate(rules, version))
    t = time.perf_counter()
    front = pipeline.front_end([str(src)])
    if not front.ok:
        raise SystemExit(f"load_reload: the generated policy of {rules} rules (v{version}) does not check: "
                         f"{[str(x) for x in front.diags.items][:3]}")
    (policy,) = front.program.policies
    res = pipeline.build(front, policy, d / "out")
    seconds = time.perf_counter() - t
    manifest = deploy.read_manifest(res.manifest_path)   # its rules from NAME.maps
    print(f"load_reload: built {rules} rules v{version} ({len(manifest['rules'])} in the manifest) in "
          f"{seconds:.1f} s", file=sys.stderr, flush=True)
    return {"manifest": str(res.manifest_path), "manifest_rules": len(manifest["rules"]),
            "build_seconds": round(seconds, 2)}


def build_sizes(sizes, work: Path) -> tuple[list[dict], dict]:
    """The plan's sizes (name, v1, v2 manifests) and what the builds took."""
    plan_sizes, info = [], {}
    for n in sizes:
        v1, v2 = build_version(n, 1, work / "policies"), build_version(n, 2, work / "policies")
        plan_sizes.append({"rules": n, "name": policy_name(n), "v1": v1["manifest"], "v2": v2["manifest"]})
        info[str(n)] = {"split": dict(zip(("file", "exec", "net"), peers.split_rules(n))),
                        "extra_rules": ["deny file read (the probe)", "deny file write (the version rule)"],
                        "v1": v1, "v2": v2}
    return plan_sizes, info


# --- results -------------------------------------------------------------------------------------


def med(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 4) if xs else None


def low(xs: list[float]) -> float | None:
    return round(min(xs), 4) if xs else None


def analyse(guest: dict) -> dict:
    """Per size: fresh load (guest clock median and min, guest CPU median), unload, CLI load,
    replace (median, min, CPU), attempts during the replaces (total and the fewest in one
    replace), and the gap: opens that got through, in any phase. Problems: a gap, an error
    other than EACCES, a prober that made no denied attempt before, during or after the
    replaces, a replace that did not replace, a failed CLI load."""
    sizes, problems = {}, []
    for rules, rec in guest["sizes"].items():
        rounds = rec["rounds"]
        load = [r["load"]["wall"] for r in rounds]
        load_cpu = [r["load"]["cpu"] for r in rounds]
        unload = [r["unload"]["wall"] for r in rounds]
        cli = [r["cli_load"] for r in rounds if r.get("cli_load")]
        reps = [x for r in rounds for x in r["fire"]["replaces"]]
        during = [x["during"] for x in reps]
        gap = sum(r["fire"]["total"]["ok"] for r in rounds)
        other = sum(r["fire"]["total"]["other"] for r in rounds)
        for i, r in enumerate(rounds, 1):
            f = r["fire"]
            where = f"{rules} rules, round {i}"
            if f["total"]["ok"]:
                problems.append(f"{where}: {f['total']['ok']} opens of the denied file got through "
                                f"(before {f['before']['ok']}, during "
                                f"{[x['during']['ok'] for x in f['replaces']]}, after {f['after']['ok']})")
            if f["total"]["other"]:
                problems.append(f"{where}: {f['total']['other']} opens failed with an error other than EACCES")
            if not f["settled"] or not f["before"]["eacces"]:
                problems.append(f"{where}: the prober was not denied before the first replace "
                                f"({f['before']}): no probe ran")
            if not f["after_reached"] or not f["after"]["eacces"]:
                problems.append(f"{where}: the prober was not denied after the last replace ({f['after']})")
            for j, x in enumerate(f["replaces"], 1):
                if not x["replaced"]:
                    problems.append(f"{where}: replace {j} did not replace a loaded policy")
                if not x["during"]["attempts"]:
                    problems.append(f"{where}: no attempt overlapped replace {j}")
            c = r.get("cli_load")
            if c and c["returncode"] != 0:
                problems.append(f"{where}: `policyc load` exited {c['returncode']}: {c['stderr'].strip()[-300:]}")
        sizes[rules] = {
            "load_wall_s": {"median": med(load), "min": low(load), "rounds": load},
            "load_cpu_s": {"median": med(load_cpu), "min": low(load_cpu), "rounds": load_cpu},
            "unload_wall_s": {"median": med(unload), "rounds": unload},
            "cli_load_wall_s": {"median": med([c["wall"] for c in cli]), "rounds": [c["wall"] for c in cli]},
            "cli_load_cpu_s": {"median": med([c["cpu"] for c in cli]), "rounds": [c["cpu"] for c in cli]},
            "replace_wall_s": {"median": med([x["wall"] for x in reps]), "min": low([x["wall"] for x in reps]),
                               "all": [x["wall"] for x in reps]},
            "replace_cpu_s": {"median": med([x["cpu"] for x in reps]), "all": [x["cpu"] for x in reps]},
            "replaces": len(reps),
            "attempts_during_replaces": sum(d["attempts"] for d in during),
            "fewest_attempts_in_one_replace": min((d["attempts"] for d in during), default=0),
            "got_through": gap,
            "not_eacces": other,
        }
    return {"sizes": sizes, "problems": problems}


def fmt(x, spec: str = ".2f", width: int = 8) -> str:
    return f"{'-':>{width}}" if x is None else f"{x:>{width}{spec}}"


def table(analysis: dict) -> str:
    lines = [f"{'rules':>6} | {'load wall s':^17} | {'load CPU':>8} | {'cli load':>8} | {'replace wall s':^17} | "
             f"{'replace CPU':>11} | {'attempts during':>15} | {'got through':>11}",
             f"{'':>6} | {'median':>8}{'min':>9} | {'median':>8} | {'median':>8} | {'median':>8}{'min':>9} | "
             f"{'median':>11} | {'total (fewest)':>15} | {'(gap)':>11}"]
    for rules, s in sorted(analysis["sizes"].items(), key=lambda kv: int(kv[0])):
        att = f"{s['attempts_during_replaces']} ({s['fewest_attempts_in_one_replace']})"
        lines.append(f"{int(rules):>6,} | {fmt(s['load_wall_s']['median'])}{fmt(s['load_wall_s']['min'], width=9)} | "
                     f"{fmt(s['load_cpu_s']['median'])} | {fmt(s['cli_load_wall_s']['median'])} | "
                     f"{fmt(s['replace_wall_s']['median'])}{fmt(s['replace_wall_s']['min'], width=9)} | "
                     f"{fmt(s['replace_cpu_s']['median'], width=11)} | {att:>15} | {s['got_through']:>11}")
    return "\n".join(lines)


def report(result: dict) -> None:
    print(f"\nload and reload, {result['kernel']} under TCG ({QEMU_OPTS}, 1 vCPU), {result['rounds']} rounds of "
          f"a fresh load and {result['replaces']} replaces under fire per size; guest-clock seconds "
          f"(include the clock's jumps over I/O waits), guest CPU seconds of the loader; "
          f"machine {result['machine']['node']} ({result['machine']['cpu']}), {result['date']}")
    print(table({"sizes": result["results"]}))
    for p in result["problems"]:
        print(f"PROBLEM: {p}")
    if not result["problems"]:
        print("no open of the denied file got through during any replace")
    if "vm_seconds" in result:
        print(f"wall time of the boot and run: {result['vm_seconds']:.0f} s")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_kernel(kernel: str, plan: dict, plan_path: Path, args, build_info: dict) -> int:
    image = resolve_kernel(kernel)
    booted = peers.boot_guest("load_reload", GUEST, RESULT_PREFIX, image, plan_path, args)
    if booted is None:
        return 2
    guest, res, wall = booted
    analysis = analyse(guest)
    result = {
        "kernel": guest["kernel"],
        "kernel_package": image.package,
        "qemu": {"accel": "tcg", "cpus": 1, "opts": QEMU_OPTS},
        "clock": "guest seconds under -icount shift=0,sleep=off (one instruction = 1 ns; jumps over I/O waits)",
        "machine": {"node": platform.node(), "cpu": cpu_model(), "host_kernel": platform.release()},
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rounds": guest["rounds"],
        "replaces": guest["replaces"],
        "pause_s": guest["pause_s"],
        "secret": plan["secret"],
        "policies": build_info,
        "results": analysis["sizes"],
        "problems": analysis["problems"],
        "guest": guest,
        "wall_seconds": round(wall, 1),       # includes waiting for another VM to finish
        "vm_seconds": round(res.seconds, 1),  # the boot and the run
        "boots": res.boots,
        "host_python": platform.python_version(),
        "command": "python bench/load_reload.py " + " ".join(sys.argv[1:]),
    }
    short = kernel if kernel in ("6.1", "6.12") else guest["kernel"].split("-")[0]
    out = peers.write_result(Path(args.out_dir), short, result, tool="load_reload")
    report(result)
    print(f"wrote {out}")
    return 1 if analysis["problems"] else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--kernel", default="6.1", help='"6.1", "6.12" (comma-separated: one boot each)')
    ap.add_argument("--rounds", type=int, default=3, help="rounds, every size in turn (3)")
    ap.add_argument("--replaces", type=int, default=3, help="replaces under fire per round and size (3)")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="rule counts (10,10000)")
    ap.add_argument("--no-cli", action="store_true", help="do not time `policyc load` as a command")
    ap.add_argument("--timeout", type=float, default=2400, help="seconds for a boot (2400)")
    ap.add_argument("--out-dir", default=str(RESULTS))
    ap.add_argument("--work-dir", help="build output and plan (default: the policyc cache's bench/load_reload; "
                                       "must be visible to the guest)")
    ap.add_argument("--dry-run", action="store_true", help="build the policies, write the plan, print its path; no VM")
    ap.add_argument("-v", "--verbose", action="store_true", help="stream the guest's output")
    ap.add_argument("--report", metavar="JSON", help="re-analyse and print a saved result (no VM)")
    args = ap.parse_args(argv)
    if args.report:
        result = json.loads(Path(args.report).read_text())
        analysis = analyse(result["guest"])
        result["results"], result["problems"] = analysis["sizes"], analysis["problems"]
        Path(args.report).write_text(json.dumps(result, indent=1) + "\n")  # the same data, re-analysed
        report(result)
        return 1 if analysis["problems"] else 0

    work = Path(args.work_dir) if args.work_dir else cache_dir() / "bench" / "load_reload"
    started = time.perf_counter()
    sizes, build_info = build_sizes([int(x) for x in args.sizes.split(",")], work)
    plan = {"repo": str(ROOT), "rounds": args.rounds, "replaces": args.replaces, "sizes": sizes,
            "secret": SECRET, "pause_s": PAUSE_S, "replace_deadline_s": REPLACE_DEADLINE_S, "cli": not args.no_cli}
    plan_path = work / "plan.json"
    plan_path.write_text(json.dumps(plan, indent=1))
    if args.dry_run:
        print(f"load_reload: built {len(sizes)} sizes x 2 versions in {time.perf_counter() - started:.1f} s; "
              f"plan: {plan_path}")
        return 0
    rc = 0
    for k in args.kernel.split(","):
        rc = max(rc, run_kernel(k.strip(), plan, plan_path, args, build_info))
    return rc


if __name__ == "__main__":
    sys.exit(main())
