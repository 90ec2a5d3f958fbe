#!/usr/bin/env python
"""policyc beside its peers, per operation, in one boot per kernel (issue #11's benchmark):
no policy, a floor LSM program, Landlock (1 and 100 rules), policyc (1 and 10,000 rules).

    .venv/bin/python bench/peers.py [--kernel 6.1[,6.12]] [--rounds 5] [--scale 1.0] [-v]
    .venv/bin/python bench/peers.py --report bench/results/peers-6.1.json   # re-analyse, no VM

One kernel takes about 6 minutes of wall time here (boot included, defaults).

On the host: compiles the floor programs (bench/peers/floor.bpf.c, clang-19 -target bpf against
templates/common/vmlinux_min.h), the Landlock helper (bench/peers/landlock_exec.c) and a static
binary for the exec probe (bench/peers/true.c, `cc -static`), generates two `default allow`
policies whose rules never match a probe and builds them with policyc's pipeline (the guest
never runs clang). Then, per kernel, boots ONE VM with one vCPU and QEMU instruction counting
(`-icount shift=0,sleep=off`: guest ns = instructions) and runs bench/peers_guest.py, which
measures in rounds, every variant in turn per round:

  open+close of a tmpfs file at directory depth 2 and 32, stat (depth 2), fork+exec of the
  static binary (posix_spawn + waitpid), TCP connect to a loopback listener (+ accept, close)

Variants: none; floor (file_open: bpf_d_path into a per-CPU buffer; bprm_check_security: the
same on bprm->file; socket_connect: read the sockaddr; each returns 0); Landlock with 1 and
100 rules (helper: ruleset, no_new_privs, restrict_self, exec the worker; rule 1 grants "/"
all handled rights but MAKE_FIFO, the others are decoys; TCP connect is governed from ABI 4,
6.7+, so not on 6.1); policyc with 1 rule per probed family (one file, one exec, one net rule)
and with 10,000 rules (8,000 file, 1,000 exec, 1,000 net). Checks that every probe ran: the
probed program's run_cnt grew by at least the iteration count (exactly, for open and connect),
and that each Landlock worker was confined (mkfifo denied; connect to an ungranted port denied
where Landlock governs connect).

Prints, per operation: ns/op, ratio to no policy, overhead (ns/op minus no policy), overhead
over Landlock's (1 rule) and over the floor's; and run_time_ns/run_cnt of each program that
ran. Writes bench/results/peers-<kernel>.json. Medians over the rounds. TCG figures are many
times a real CPU's: compare ratios from one boot.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policyc import deploy, pipeline  # noqa: E402
from policyc.vm import VmError, cache_dir, resolve_kernel, run_in_vm  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from kernel_cost import NAMES, file_rules  # noqa: E402

GUEST = ROOT / "bench" / "peers_guest.py"
SRC = ROOT / "bench" / "peers"
RESULTS = ROOT / "bench" / "results"
RESULT_PREFIX = "PEERS_RESULT "
QEMU_OPTS = "-icount shift=0,sleep=off"
PORT = 47000

BASE = "/dev/shm/peers"
DEPTH2 = "/dev/shm/peers2.dat"   # two directories: dev, shm


def deep_path(depth: int) -> str:
    """A file below `depth` directories: /dev/shm/peers/d03/.../d{depth-1}/peers{depth}.dat"""
    dirs = ["dev", "shm", "peers"] + [f"d{i:02d}" for i in range(3, depth)]
    assert len(dirs) == depth
    return "/" + "/".join(dirs) + f"/peers{depth}.dat"


# label, worker command, argument, iterations at scale 1, program suffixes of the probed hook
OPS = [
    ("open d2", "open", DEPTH2, 2000, ("file_open",)),
    ("open d32", "open", deep_path(32), 1000, ("file_open",)),
    ("stat", "stat", DEPTH2, 2000, ()),
    ("exec", "exec", f"{BASE}/true", 300, ("bprm_check_security", "bprm_check")),
    ("connect", "connect", "-", 1500, ("socket_connect",)),
]
# ops whose probed program runs exactly once per operation (exec also opens the binary, etc.)
EXACT = {"open", "connect"}

VARIANTS = [
    {"label": "none", "kind": "none"},
    {"label": "floor", "kind": "floor"},
    {"label": "landlock 1", "kind": "landlock", "rules": 1},
    {"label": "landlock 100", "kind": "landlock", "rules": 100},
    {"label": "policyc 1", "kind": "policyc", "rules": 1},
    {"label": "policyc 10000", "kind": "policyc", "rules": 10000},
]

# --- policies -------------------------------------------------------------------------------------

# the file rules are bench/kernel_cost.py's (its tenant directories, names and cross globs)


def split_rules(n: int) -> tuple[int, int, int]:
    """(file, exec, net) rule counts: one of each for n == 1 (every probed hook is attached),
    else 80% / 10% / 10%."""
    if n == 1:
        return 1, 1, 1
    e = nt = n // 10
    return n - e - nt, e, nt


def generate(n: int, seed: int = 1) -> str:
    """A `default allow` policy of about n rules (see split_rules) that never match a probe: file
    rules as bench/kernel_cost.py makes them (exact paths, `dir/**`, mid-path globs; none under
    /dev/shm/peers), exec rules on tool paths outside /dev/shm, net rules on 10.0.0.0/8 and
    192.168.0.0/16 (never loopback)."""
    rnd = random.Random(seed)
    nf, ne, nn = split_rules(n)
    rules = file_rules(rnd, nf, ["deny", "deny", "audit"], cross=nf >= 100)
    for i in range(ne):
        tool = f"{rnd.choice(['/opt', '/usr/local', '/srv'])}/{rnd.choice(NAMES)}{i}"
        path = f"{tool}/bin/run" if i % 2 == 0 else f"{tool}/**"
        rules.append(f'{rnd.choice(["deny", "audit"])} exec "{path}"')
    for i in range(nn):
        if i % 2 == 0:
            addr = f"10.{(i >> 8) & 255}.{i & 255}.{rnd.randrange(1, 255)}"
        else:
            addr = f"192.168.{i % 256}.0/24"
        rules.append(f'{rnd.choice(["deny", "audit"])} net connect tcp {addr} port {1000 + i % 50000}')
    body = "\n".join("    " + r for r in rules)
    return ("policy bench {\n"
            '    subject exe "/usr/local/bin/policyc-bench-subject"\n'
            "    mode enforce\n"
            "    default allow\n"
            f"{body}\n}}\n")


def build_policyc_variant(n: int, out_root: Path) -> dict:
    d = out_root / f"rules-{n}"
    d.mkdir(parents=True, exist_ok=True)
    src = d / "bench.policy"
    src.write_text(generate(n))
    t = time.perf_counter()
    front = pipeline.front_end([str(src)])
    if not front.ok:
        raise SystemExit(f"peers: the generated policy of {n} rules does not check: "
                         f"{[str(x) for x in front.diags.items][:3]}")
    (policy,) = front.program.policies
    res = pipeline.build(front, policy, d / "out")
    manifest = deploy.read_manifest(res.manifest_path)   # its rules from NAME.maps
    for hook in ("file_open", "bprm_check_security", "socket_connect"):
        assert hook in manifest["hooks"], (n, hook, manifest["hooks"])
    print(f"peers: built policyc {n} rules ({len(manifest['rules'])} in the manifest) in "
          f"{time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    return {"manifest": str(res.manifest_path), "manifest_rules": len(manifest["rules"]),
            "split": dict(zip(("file", "exec", "net"), split_rules(n)))}


# --- C helpers -----------------------------------------------------------------------------------


def run(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"peers: {' '.join(cmd)} failed:\n{r.stderr}")


def clang() -> str:
    for c in ("clang-19", "clang"):
        if shutil.which(c):
            return c
    raise SystemExit("peers: no clang (apt-get install clang-19)")


def build_c(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    floor = out / "floor.bpf.o"
    run([clang(), "-target", "bpf", "-O2", "-g", "-D__TARGET_ARCH_x86", "-Wall",
         "-I", str(ROOT / "templates" / "common"), "-c", str(SRC / "floor.bpf.c"), "-o", str(floor)])
    ll = out / "landlock_exec"
    run(["cc", "-O2", "-Wall", "-o", str(ll), str(SRC / "landlock_exec.c")])
    true = out / "true"
    try:
        run(["cc", "-static", "-O2", "-o", str(true), str(SRC / "true.c")])
    except SystemExit:  # no static libc: a _start that calls exit(0)
        (out / "true.S").write_text(".globl _start\n_start:\n mov $60, %eax\n xor %edi, %edi\n syscall\n")
        run(["cc", "-nostdlib", "-static", "-o", str(true), str(out / "true.S")])
    return {"floor": str(floor), "landlock_exec": str(ll), "true": str(true)}


# --- results -------------------------------------------------------------------------------------


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def analyse(guest: dict, iterations: dict[str, int], landlock_abi: int | None = None) -> dict:
    """Per op and variant: ns/op (median), ratio to none, overhead, overhead over Landlock 1's
    and the floor's; per program ns/run and runs/op; the probe check.

    noise_ns of an op is the largest spread (max - min over the rounds) of any variant's ns/op;
    an overhead ratio whose denominator is below twice that is kept but marked unreliable
    (`overhead_x_*_reliable`: false; `?` in the table), one whose denominator is <= 0 is None.
    Landlock governs TCP connect only from ABI 4 (6.7): below that, connect's ratio to
    Landlock is None."""
    v = guest["variants"]
    out: dict = {}
    problems = []
    for label, cmd, _arg, _n, probe in OPS:
        n = iterations[label]
        noise = max((max(r["ops"][label]["ns_per_op"]) - min(r["ops"][label]["ns_per_op"]))
                    for r in v.values())
        none = med(v["none"]["ops"][label]["ns_per_op"])
        floor_ov = med(v["floor"]["ops"][label]["ns_per_op"]) - none
        ll_ov = med(v["landlock 1"]["ops"][label]["ns_per_op"]) - none
        ll_governs = not (cmd == "connect" and landlock_abi is not None and landlock_abi < 4)
        rows = {}
        for vl, rec in v.items():
            o = rec["ops"][label]
            ns = med(o["ns_per_op"])
            ov = ns - none
            row = {"ns_per_op": round(ns, 1), "rounds": [round(x, 1) for x in o["ns_per_op"]],
                   "spread": round((max(o["ns_per_op"]) - min(o["ns_per_op"])) / ns, 4) if ns else None,
                   "x_none": round(ns / none, 3) if none else None,
                   "overhead": round(ov, 1) if vl != "none" else None,
                   "fails": o["fails"]}
            for key, den, ok in (("landlock1", ll_ov, ll_governs), ("floor", floor_ov, True)):
                good = vl != "none" and ok and den > 0
                row[f"overhead_x_{key}"] = round(ov / den, 2) if good else None
                row[f"overhead_x_{key}_reliable"] = bool(good and den >= 2 * noise)
            if o["fails"]:
                problems.append(f"{vl} {label}: {o['fails']} failed operations")
            if o["programs"]:
                names = sorted({p for rnd in o["programs"] for p in rnd})
                progs = {}
                for p in names:
                    t = [rnd.get(p, [0, 0])[0] for rnd in o["programs"]]
                    c = [rnd.get(p, [0, 0])[1] for rnd in o["programs"]]
                    progs[p] = {"ns_per_run": round(med([a / b for a, b in zip(t, c) if b]), 1),
                                "runs_per_op": round(med(c) / n, 3),
                                "ns_per_op": round(med(t) / n, 1), "run_cnt_per_round": c}
                row["programs"] = progs
                row["bpf_ns_per_op"] = round(sum(p["ns_per_op"] for p in progs.values()), 1)
                if probe:
                    hit = [p for p in names if p.endswith(probe)]
                    row["probe_program"] = hit[0] if hit else None
                    if not hit:
                        problems.append(f"{vl} {label}: no {probe[0]} program ran")
                    else:
                        cnts = progs[hit[0]]["run_cnt_per_round"]
                        bad = [c for c in cnts if (c != n if cmd in EXACT else c < n)]
                        if bad:
                            problems.append(f"{vl} {label}: {hit[0]} run_cnt per round {cnts}, "
                                            f"expected {'exactly' if cmd in EXACT else 'at least'} {n}")
            elif rec["kind"] in ("floor", "policyc") and probe:
                problems.append(f"{vl} {label}: no program of the variant ran")
            rows[vl] = row
        # the probed hook against the floor's program on the same hook
        fp = rows["floor"].get("probe_program")
        for vl, row in rows.items():
            pp = row.get("probe_program")
            if pp and fp and vl != "floor":
                row["probe_x_floor"] = round(row["programs"][pp]["ns_per_run"]
                                             / rows["floor"]["programs"][fp]["ns_per_run"], 2)
        out[label] = {"noise_ns": round(noise, 1), "landlock_governs": ll_governs, "variants": rows}
    for vl, props in guest.get("landlock_proofs", {}).items():
        if not all(p["mkfifo_denied"] for p in props):
            problems.append(f"{vl}: the worker could make a FIFO: Landlock not in force")
        if landlock_abi is not None and landlock_abi >= 4 and not all(p["connect_denied"] for p in props):
            problems.append(f"{vl}: connect to an ungranted port was not denied (Landlock ABI {landlock_abi})")
    return {"ops": out, "problems": problems}


def fmt(x, spec: str = ",.0f", width: int = 9) -> str:
    return f"{'-':>{width}}" if x is None else f"{x:>{width}{spec}}"


def ratio(r: dict, key: str) -> str:
    x = r[f"overhead_x_{key}"]
    if x is None:
        return "-"
    return f"{x:.2f}" + ("" if r[f"overhead_x_{key}_reliable"] else "?")


def table(analysis: dict) -> str:
    lines = ["ov/LL1, ov/floor: overhead over Landlock 1's, over the floor's; `?`: that overhead is "
             "under twice the op's noise (largest round spread); probe: the probed hook's program, "
             "run_time_ns/run_cnt, and over the floor's program on the same hook"]
    for label, op in analysis["ops"].items():
        lines.append(f"\n{label} (noise {op['noise_ns']:,.0f} ns"
                     + ("" if op["landlock_governs"] else "; Landlock does not govern it on this kernel")
                     + ")")
        lines.append(f"  {'variant':<14}{'ns/op':>9}{'spread':>7}{'x none':>7}{'overhead':>9}{'ov/LL1':>8}"
                     f"{'ov/floor':>9}{'bpf/op':>8}  probe ns/run (x floor)")
        for vl, r in op["variants"].items():
            probe = ""
            if r.get("probe_program"):
                p = r["programs"][r["probe_program"]]
                probe = f"{r['probe_program']} {p['ns_per_run']:,.0f}"
                if "probe_x_floor" in r:
                    probe += f" ({r['probe_x_floor']:.2f}x)"
            lines.append(f"  {vl:<14}{fmt(r['ns_per_op'])}{r['spread'] * 100:>6.1f}%{fmt(r['x_none'], '.3f', 7)}"
                         f"{fmt(r['overhead'], ',.0f', 9)}{ratio(r, 'landlock1'):>8}{ratio(r, 'floor'):>9}"
                         f"{fmt(r.get('bpf_ns_per_op'), ',.0f', 8)}  {probe}")
    lines.append("\nper program, run_time_ns/run_cnt (runs per op), programs that ran")
    for label, op in analysis["ops"].items():
        for vl, r in op["variants"].items():
            if r.get("programs"):
                cells = ", ".join(f"{p} {x['ns_per_run']:,.0f} ({x['runs_per_op']:g})"
                                  for p, x in r["programs"].items())
                lines.append(f"  {label:<9} {vl:<14} {cells}")
    return "\n".join(lines)


def landlock_abi(output: str) -> int | None:
    """The ABI the helper reported (its stderr line reaches the VM's output)."""
    found = re.findall(r"^landlock abi=(\d+) ", output, re.M)
    return int(found[0]) if found else None


def report(result: dict) -> None:
    g = result["guest"]
    print(f"\npolicyc and its peers, {result['kernel']} under TCG ({QEMU_OPTS}, 1 vCPU), median of "
          f"{result['rounds']} interleaved rounds; iterations: "
          + ", ".join(f"{op['label']} {op['iterations']}" for op in result["ops"]))
    print(table({"ops": result["results"]}))
    print("\nload, guest CPU s (user+system of the loader; the guest clock jumps over I/O waits) per round: "
          + "; ".join(f"{k} {v['cpu']}" for k, v in result["load_seconds_guest"].items()))
    print(f"landlock ABI {result['landlock_abi']}; proofs (first round): "
          + "; ".join(f"{k} {v[0]}" for k, v in g["landlock_proofs"].items()))
    for p in result["problems"]:
        print(f"PROBLEM: {p}")
    print(f"wall time of the boot and run: {result.get('vm_seconds', result['wall_seconds']):.0f} s")


def write_result(out_dir: Path, short: str, result: dict, tool: str = "peers") -> Path:
    """OUT_DIR/TOOL-SHORT.json, the directory made when it does not exist yet (bench/load_reload.py
    writes its own through it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{tool}-{short}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    return out


def boot_guest(tool: str, guest_script: Path, result_prefix: str, image, plan_path: Path, args):
    """One icount boot of IMAGE running GUEST_SCRIPT on PLAN_PATH: (guest result, run_in_vm's
    result, wall seconds), or None after saying why (TOOL names the benchmark). The guest
    prints its result as one JSON line after RESULT_PREFIX. bench/load_reload.py uses it too."""
    env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    wall = time.monotonic()
    try:
        res = run_in_vm([sys.executable, str(guest_script), str(plan_path)], kernel=image, env=env, cpus=1,
                        extra_qemu_opts=QEMU_OPTS, timeout=args.timeout,
                        stream=sys.stderr if args.verbose else None, cwd=str(ROOT))
    except VmError as e:
        print(f"{tool}: {e}", file=sys.stderr)
        return None
    wall = time.monotonic() - wall
    lines = [ln for ln in res.output.splitlines() if ln.startswith(result_prefix)]
    if res.returncode != 0 or not lines:
        tail = "\n".join(res.output.strip().splitlines()[-40:])
        print(f"{tool}: the guest failed (exit {res.returncode}):\n{tail}", file=sys.stderr)
        return None
    return json.loads(lines[-1][len(result_prefix):]), res, wall


def run_kernel(kernel: str, plan: dict, plan_path: Path, args, build_info: dict) -> int:
    image = resolve_kernel(kernel)
    booted = boot_guest("peers", GUEST, RESULT_PREFIX, image, plan_path, args)
    if booted is None:
        return 2
    guest, res, wall = booted
    iterations = {op["label"]: op["iterations"] for op in plan["ops"]}
    abi = landlock_abi(res.output)
    analysis = analyse(guest, iterations, abi)
    load = {vl: {"guest_clock": rec["load_seconds"], "cpu": rec.get("load_cpu_seconds")}
            for vl, rec in guest["variants"].items() if rec["kind"] in ("floor", "policyc")}
    result = {
        "kernel": guest["kernel"],
        "kernel_package": image.package,
        "qemu": {"accel": "tcg", "cpus": 1, "opts": QEMU_OPTS},
        "clock": "guest ns under -icount shift=0 (one instruction = 1 ns): compare ratios only",
        "rounds": guest["rounds"],
        "ops": plan["ops"],
        "variants": plan["variants"],
        "policies": build_info,
        "landlock_abi": abi,
        "results": analysis["ops"],
        "load_seconds_guest": load,
        "problems": analysis["problems"],
        "guest": guest,
        "wall_seconds": round(wall, 1),       # includes waiting for another VM to finish
        "vm_seconds": round(res.seconds, 1),  # the boot and the run
        "boots": res.boots,
        "host_python": platform.python_version(),
        "command": "python bench/peers.py " + " ".join(sys.argv[1:]),
    }
    short = kernel if kernel in ("6.1", "6.12") else guest["kernel"].split("-")[0]
    out = write_result(Path(args.out_dir), short, result)
    report(result)
    print(f"wrote {out}")
    return 1 if analysis["problems"] else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="6.1", help='"6.1", "6.12" (comma-separated: one boot each)')
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every iteration count (1.0)")
    ap.add_argument("--big", type=int, default=10000, help="rules of the big policyc variant (10000)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds for a boot (1800)")
    ap.add_argument("--out-dir", default=str(RESULTS))
    ap.add_argument("--work-dir", help="build output and plan (default: the policyc cache's bench/peers; "
                                       "must be visible to the guest)")
    ap.add_argument("-v", "--verbose", action="store_true", help="stream the guest's output")
    ap.add_argument("--report", metavar="JSON", help="re-analyse and print a saved result (no VM)")
    args = ap.parse_args()
    if args.report:
        result = json.loads(Path(args.report).read_text())
        iterations = {op["label"]: op["iterations"] for op in result["ops"]}
        analysis = analyse(result["guest"], iterations, result.get("landlock_abi"))
        result["results"], result["problems"] = analysis["ops"], analysis["problems"]
        Path(args.report).write_text(json.dumps(result, indent=1) + "\n")  # the same data, re-analysed
        report(result)
        return 1 if analysis["problems"] else 0

    work = Path(args.work_dir) if args.work_dir else cache_dir() / "bench" / "peers"
    objs = build_c(work / "bin")
    variants = [dict(v) for v in VARIANTS]
    build_info = {}
    for v in variants:
        if v["kind"] == "policyc":
            if v["rules"] != 1:
                v["rules"] = args.big
                v["label"] = f"policyc {args.big}"
            b = build_policyc_variant(v["rules"], work / "policies")
            v["manifest"] = b["manifest"]
            build_info[v["label"]] = b
        elif v["kind"] == "floor":
            v["object"] = objs["floor"]
    ops = [{"label": lb, "cmd": cmd, "arg": arg, "iterations": max(1, int(n * args.scale)),
            "warmup": max(1, int(n * args.scale) // 10)} for lb, cmd, arg, n, _ in OPS]
    plan = {
        "repo": str(ROOT), "rounds": args.rounds, "ops": ops, "variants": variants, "port": PORT,
        "landlock_exec": objs["landlock_exec"], "decoy_dir": f"{BASE}/decoys",
        "fifo_probe": f"{BASE}/fifo-probe", "exec_source": objs["true"], "exec_target": f"{BASE}/true",
    }
    plan_path = work / "plan.json"
    plan_path.write_text(json.dumps(plan, indent=1))
    rc = 0
    for k in args.kernel.split(","):
        rc = max(rc, run_kernel(k.strip(), plan, plan_path, args, build_info))
    return rc


if __name__ == "__main__":
    sys.exit(main())
