#!/usr/bin/env python
"""In-kernel cost of one `file_open` event for policies of 1 to 10,000 file rules (target: the
10,000-rule cost within 1.25x of the 1-rule cost).

    .venv/bin/python bench/kernel_cost.py [--kernel 6.1] [--rules 1,100,1000,10000]
                                          [--iterations 2000] [--repeats 5]

On the host: generates one policy per rule count (exact paths, `dir/**` prefixes and mid-path
globs in many directories, plus one deep glob that the probe path "hit" matches), builds each
once (so the guest never runs clang), then boots ONE VM with one vCPU and QEMU instruction
counting (`-icount shift=0,sleep=off`: guest time is an instruction count, deterministic) and
runs bench/kernel_cost_guest.py in it. The guest measures, from the kernel's own accounting
(BPF run-time statistics, run_time_ns / run_cnt of the policy's file_open program), the cost
per event while a governed worker opens and closes files on tmpfs (/dev/shm), and the wall
time per open+close on the guest clock with no policy at all (baseline).

Prints a table and writes bench/results/kernel_cost.json. Figures are TCG "ns" (instructions
at shift=0), many times a real CPU's: compare the ratios, which come from one boot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policyc import deploy, mapsfile, pipeline  # noqa: E402
from policyc.vm import VmError, cache_dir, resolve_kernel, run_in_vm  # noqa: E402

GUEST = ROOT / "bench" / "kernel_cost_guest.py"
RESULTS = ROOT / "bench" / "results" / "kernel_cost.json"
RESULT_PREFIX = "KERNEL_COST_RESULT "
TARGET_RATIO = 1.25
QEMU_OPTS = "-icount shift=0,sleep=off"

# The probe paths (tmpfs: 9p I/O would break the guest clock's determinism). All three have
# the same length (39 bytes); what differs is how far the DFA walks and where it ends.
DEEP_GLOB = "/dev/shm/bench/**/logs/*.log"
PATHS = {
    # matched by DEEP_GLOB: the walk goes through `**` to the end and accepts
    "hit": "/dev/shm/bench/a/b/c/d/e/f/logs/app.log",
    # matched by no rule, but the walk stays alive to the last byte (inside `**`)
    "miss": "/dev/shm/bench/a/b/c/d/e/f/data/app.dat",
    # matched by no rule and leaves every pattern early (dead state after "/dev/shm/o")
    "outside": "/dev/shm/other/a/b/c/d/e/f/data/app.dat",
}

DIRS = ["/dev/shm", "/srv", "/var/lib", "/opt", "/etc", "/usr/share", "/home", "/var/log", "/data",
        "/usr/lib", "/mnt"]
NAMES = ["app", "svc", "cache", "store", "conf", "web", "db", "queue", "spool", "build"]
# a few globs across every tenant directory (kept few on purpose: each multiplies DFA states)
CROSS = [
    'deny file read "/home/*/.ssh/**"',
    'deny file write "/srv/*/private/**"',
    'audit file read "/var/log/*/secret*.log"',
    'deny file write "/etc/*/keys/*.pem"',
]


def file_rules(rnd: random.Random, n: int, decisions: list[str], cross: bool) -> list[str]:
    """n file rules in many tenant directories: exact paths, `dir/**` prefixes and mid-path
    globs (`*`, `**`, `?`, `{a,b}`), with the CROSS globs first when `cross`. Shared with
    bench/peers.py."""
    rules = []
    for i in range(n):
        if cross and i < len(CROSS):
            rules.append(CROSS[i])
            continue
        base = f"{rnd.choice(DIRS)}/{rnd.choice(NAMES)}{i}"
        kind = i % 3
        if kind == 0:
            path = f"{base}/{rnd.choice(['config.yaml', 'data/file.txt', 'run.pid', 'keys/id_ed25519'])}"
        elif kind == 1:
            path = f"{base}/**"
        else:
            path = rnd.choice([f"{base}/*/logs/*.log", f"{base}/**/tmp/*.lock", f"{base}/v?/*.json",
                               f"{base}/{{a,b}}/**/secret*"])
        decision = rnd.choice(decisions)
        ops = rnd.choice(["read", "write", "read, write", "write, create", "delete"])
        rules.append(f'{decision} file {ops} "{path}"')
    return rules


def generate(n: int, seed: int = 1) -> str:
    """A `default allow` policy of n file rules. Rule 1 is the deep glob; the rest cycle through
    exact paths, `dir/**` prefixes and mid-path globs (`*`, `**`, `?`, `{a,b}`), with the CROSS
    globs first when n >= 100. The worker opens read-only: rule 1 denies only writes, so every
    probe open is allowed and sends no event (the cost measured is the decision, not a ring
    buffer write), while the hit path's walk still ends in rule 1's accepting state."""
    rnd = random.Random(seed)
    rules = [f'deny file write "{DEEP_GLOB}"']
    rules += file_rules(rnd, n - 1, ["deny", "deny", "allow", "audit"], cross=n >= 100)
    body = "\n".join("    " + r for r in rules)
    return ("policy bench {\n"
            '    subject exe "/usr/local/bin/policyc-bench-subject"\n'
            "    mode enforce\n"
            "    default allow\n"
            f"{body}\n}}\n")


def rule_kinds(text: str) -> dict[str, int]:
    kinds = {"exact": 0, "dir/**": 0, "mid-path glob": 0}
    for line in text.splitlines():
        if " file " not in line:
            continue
        p = line.rsplit('"', 2)[1]
        if not any(c in p for c in "*?{"):
            kinds["exact"] += 1
        elif p.endswith("/**") and not any(c in p[:-3] for c in "*?{"):
            kinds["dir/**"] += 1
        else:
            kinds["mid-path glob"] += 1
    return kinds


# --- what the kernel will walk, read back from the build's maps (NAME.maps) ------------------------

DFA_STATE = struct.Struct("<IIIIIII")   # next[3], verdict, protect_rule, base, flags
DFA_EDGE = struct.Struct("<II")          # check, next
DFA_ABSORBING = 1
VERDICT_RULES = struct.Struct("<16I")
OP_READ, OP_WRITE = 0, 1


def kernel_walk(entries: dict, path: str) -> dict:
    """The walk templates/common/policy.h makes, on a build's maps (ENTRIES: name -> (key,
    value) pairs, policyc.mapsfile.read_entries): bpf_loop iterations (bytes consumed until the
    end or an absorbing state), comb hits (edges that are not the state's default), and the
    rule of the final state for read and write."""
    states = [DFA_STATE.unpack(v) for _, v in entries["dfa_states"]]
    comb = [DFA_EDGE.unpack(v) for _, v in entries["dfa_comb"]]
    classes = entries["dfa_classes"][0][1]
    verdicts = [VERDICT_RULES.unpack(v[:VERDICT_RULES.size]) for _, v in entries["verdicts"]]
    state, steps, edge_hits = 1, 0, 0
    for b in path.encode():
        st = states[state]
        if st[6] & DFA_ABSORBING:
            break
        steps += 1
        i = st[5] + classes[b]
        if i < len(comb) and comb[i][0] == state:
            edge_hits += 1
            state = comb[i][1]
        else:
            state = st[0 if b == 0x2F else 1 if 0x80 <= b <= 0xBF else 2]
    rules = verdicts[states[state][3]]
    return {"bytes_walked": steps, "edge_hits": edge_hits, "final_state": state,
            "rule_read": rules[OP_READ], "rule_write": rules[OP_WRITE]}


# --- host: build ---------------------------------------------------------------------------------


def build_all(counts: list[int], out_root: Path) -> list[dict]:
    # untimed warm-up: the parser tables and the BPF object (the same for every rule count:
    # rules are map data) are then cached, so the times below are the rules' own
    warm = out_root / "warm-up"
    warm.mkdir(parents=True, exist_ok=True)
    (warm / "bench.policy").write_text(generate(1))
    front = pipeline.front_end([str(warm / "bench.policy")])
    pipeline.build(front, front.program.policies[0], warm / "out")
    built = []
    for n in counts:
        d = out_root / f"rules-{n}"
        d.mkdir(parents=True, exist_ok=True)
        src = d / "bench.policy"
        text = generate(n)
        src.write_text(text)
        # timed as `policyc build` runs: front end, checks, code generation
        cpu, wall = time.process_time(), time.perf_counter()
        front = pipeline.front_end([str(src)])
        if not front.ok:
            raise SystemExit(f"kernel_cost: generated policy of {n} rules does not check: "
                             f"{[str(x) for x in front.diags.items][:3]}")
        (policy,) = front.program.policies
        res = pipeline.build(front, policy, d / "out")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        manifest = deploy.read_manifest(res.manifest_path)   # its rules from NAME.maps
        assert len(manifest["rules"]) == n, (n, len(manifest["rules"]))
        assert "file_open" in manifest["hooks"], manifest["hooks"]
        maps = manifest["maps"]
        entries = mapsfile.read_entries(manifest, res.manifest_path.parent)
        rec = {
            "rules": n,
            "rule_kinds": rule_kinds(text),
            "manifest": str(res.manifest_path),
            "dfa_states": maps["dfa_states"]["count"],
            "dfa_comb": maps["dfa_comb"]["count"],
            "verdicts": maps["verdicts"]["count"],
            "manifest_bytes": res.manifest_path.stat().st_size,
            "build_cpu_seconds": round(cpu, 3),
            "build_wall_seconds": round(wall, 3),
            "maps_file_bytes": res.maps_path.stat().st_size,
            "walks": {label: kernel_walk(entries, p) for label, p in PATHS.items()},
        }
        print(f"kernel_cost: built {n} rules: {rec['dfa_states']} states, {rec['dfa_comb']} comb slots, "
              f"{cpu:.2f} s CPU", file=sys.stderr, flush=True)
        built.append(rec)
    return built


def check_walks(built: list[dict]) -> None:
    """The probe paths mean what the table says in every policy."""
    for rec in built:
        w = rec["walks"]
        assert w["hit"]["rule_write"] == 1 and w["hit"]["rule_read"] == 0, (rec["rules"], w["hit"])
        assert w["miss"]["rule_write"] == 0 and w["miss"]["rule_read"] == 0, (rec["rules"], w["miss"])
        assert w["miss"]["bytes_walked"] == len(PATHS["miss"]), (rec["rules"], w["miss"])
        assert w["outside"]["final_state"] == 0, (rec["rules"], w["outside"])


# --- host: run, report ---------------------------------------------------------------------------


def run_guest(plan_path: Path, kernel: str, timeout: float, verbose: bool):
    image = resolve_kernel(kernel)
    env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    res = run_in_vm([sys.executable, str(GUEST), str(plan_path)], kernel=image, env=env, cpus=1,
                    extra_qemu_opts=QEMU_OPTS, timeout=timeout,
                    stream=sys.stderr if verbose else None, cwd=str(ROOT))
    lines = [ln for ln in res.output.splitlines() if ln.startswith(RESULT_PREFIX)]
    if res.returncode != 0 or not lines:
        tail = "\n".join(res.output.strip().splitlines()[-30:])
        raise SystemExit(f"kernel_cost: the guest failed (exit {res.returncode}):\n{tail}")
    return image, res, json.loads(lines[-1][len(RESULT_PREFIX):])


def table(result: dict) -> str:
    pols = result["policies"]
    base = pols[0]
    labels = list(PATHS)
    head = (f"{'rules':>6} {'DFA states':>10} {'edges':>8} {'build s':>7} "
            + " ".join(f"{'ns/ev ' + lb:>13}" for lb in labels)
            + " " + " ".join(f"{'x1 ' + lb:>10}" for lb in labels)
            + f" {'loop ns/op hit':>15}")
    rows = [head]
    bl = result["baseline"]
    rows.append(f"{'0':>6} {'-':>10} {'-':>8} {'-':>7} " + " ".join(f"{'-':>13}" for _ in labels)
                + " " + " ".join(f"{'-':>10}" for _ in labels)
                + f" {bl['hit']['loop_ns_per_op']['median']:>15,.0f}")
    for p in pols:
        cells = [f"{p['rules']:>6,} {p['dfa_states']:>10,} {p['dfa_comb']:>8,} {p['build_cpu_seconds']:>7.2f}"]
        cells += [f"{p['paths'][lb]['file_open_ns_per_event']['median']:>13,.0f}" for lb in labels]
        cells += [f"{p['paths'][lb]['file_open_ns_per_event']['median'] / base['paths'][lb]['file_open_ns_per_event']['median']:>10.3f}"
                  for lb in labels]
        cells.append(f"{p['paths']['hit']['loop_ns_per_op']['median']:>15,.0f}")
        rows.append(" ".join(cells))
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="6.1", help='"6.1", "6.12" or DIR/boot/vmlinuz-V (default 6.1)')
    ap.add_argument("--rules", default="1,100,1000,10000", help="rule counts, comma-separated; the first is the reference")
    ap.add_argument("--iterations", type=int, default=2000, help="open+close per round (2000)")
    ap.add_argument("--repeats", type=int, default=5, help="rounds per policy and path (5)")
    ap.add_argument("--warmup", type=int, default=200, help="open+close before the rounds (200)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds for the boot (1800)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("-v", "--verbose", action="store_true", help="stream the guest's output")
    args = ap.parse_args()
    counts = [int(x) for x in args.rules.split(",")]

    build_root = cache_dir() / "bench" / "kernel_cost"
    built = build_all(counts, build_root)
    check_walks(built)
    plan = {
        "repo": str(ROOT),
        "iterations": args.iterations,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "paths": PATHS,
        "policies": [{"rules": b["rules"], "manifest": b["manifest"]} for b in built],
    }
    plan_path = build_root / "plan.json"
    plan_path.write_text(json.dumps(plan, indent=1))
    try:
        image, res, guest = run_guest(plan_path, args.kernel, args.timeout, args.verbose)
    except VmError as e:
        print(f"kernel_cost: {e}", file=sys.stderr)
        return 2
    for b, g in zip(built, guest["policies"]):
        assert b["rules"] == g["rules"]
        b.update({k: v for k, v in g.items() if k != "rules"})
    result = {
        "kernel": guest["kernel"],
        "kernel_package": image.package,
        "qemu": {"accel": "tcg", "cpus": 1, "opts": QEMU_OPTS},
        "clock": "guest ns under -icount shift=0 (one instruction = 1 ns): compare ratios only",
        "iterations": guest["iterations"],
        "warmup": guest["warmup"],
        "repeats": guest["repeats"],
        "paths": PATHS,
        "deep_glob": DEEP_GLOB,
        "target_ratio": TARGET_RATIO,
        "baseline": guest["baseline"],
        "policies": built,
        "boot_seconds": round(res.seconds, 1),
        "boots": res.boots,
        "host_python": platform.python_version(),
        "command": "python bench/kernel_cost.py " + " ".join(sys.argv[1:]),
    }
    ref = built[0]["paths"]
    last = built[-1]["paths"]
    result["ratio_last_vs_first"] = {
        lb: round(last[lb]["file_open_ns_per_event"]["median"] / ref[lb]["file_open_ns_per_event"]["median"], 4)
        for lb in PATHS}
    # per DFA byte: hit and outside have the same length and the same 11 components, so they
    # differ only in how many bytes the DFA walks
    result["ns_per_walked_byte"] = {}
    for b in built:
        w = b["walks"]
        extra = w["hit"]["bytes_walked"] - w["outside"]["bytes_walked"]
        cost = (b["paths"]["hit"]["file_open_ns_per_event"]["median"]
                - b["paths"]["outside"]["file_open_ns_per_event"]["median"])
        result["ns_per_walked_byte"][str(b["rules"])] = round(cost / extra, 1)
    stray = [(b["rules"], lb, c) for b in built for lb, m in b["paths"].items()
             for c in m["run_cnt_per_round"] if c != guest["iterations"]]
    result["stray_runs"] = stray
    result["target_met"] = all(r <= TARGET_RATIO for r in result["ratio_last_vs_first"].values())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")

    print(f"policyc kernel cost per file_open event, {guest['kernel']} under TCG "
          f"({QEMU_OPTS}, 1 vCPU), median of {guest['repeats']} rounds of {guest['iterations']} "
          "open+close")
    print(table(result))
    for lb, r in result["ratio_last_vs_first"].items():
        print(f"{lb}: {built[-1]['rules']:,} rules / {built[0]['rules']:,} rule = {r:.3f} "
              f"({'within' if r <= TARGET_RATIO else 'OVER'} the {TARGET_RATIO}x target)")
    print("DFA cost per walked byte (hit - outside, 29 bytes): "
          + ", ".join(f"{k} rules {v:,.0f} ns" for k, v in result["ns_per_walked_byte"].items()))
    print(f"a process outside the subjects: {built[-1]['ungoverned']['file_open_ns_per_event']['median']:,.0f} "
          f"ns/event at {built[-1]['rules']:,} rules")
    if stray:
        print(f"WARNING: rounds whose run_cnt is not {guest['iterations']} (another process opened "
              f"files during the round): {stray}")
    print(f"wrote {out}")
    return 0 if result["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
