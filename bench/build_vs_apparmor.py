"""`policyc build` against `apparmor_parser -Q -K` on the same rules (#12).

    python bench/build_vs_apparmor.py [--sizes 10,1000,10000] [--runs 6] [--quick]

For each size N, one policy of N file rules and the AppArmor profile that says the same:
a third exact paths (`allow file read "/srv/appK/fileI.conf"` / `/srv/appK/fileI.conf r,`),
a third directory trees (`allow file read, write "/srv/appK/dataI/**"` / `.../dataI/** rw,`),
a third shared libraries (`allow file read, exec-map "/srv/appK/libI/*.so"` /
`.../libI/*.so rm,`), one program (`subject exe "/usr/bin/bench"` / `profile bench
/usr/bin/bench`), everything else denied. Three commands, each a whole process (start-up
included), run in turn (interleaved: apparmor, cold, warm, apparmor, ...) so a drift of the
machine's speed touches all three alike:

  * apparmor: `apparmor_parser -Q -K -o FILE PROFILE`: compile to the binary policy
    without loading it (-Q) or touching its cache (-K); no kernel needed;
  * policyc cold: `policyc build` with POLICYC_CACHE pointed at a new empty directory (the
    object is compiled by clang, the grammar analysed);
  * policyc warm: the same policy built into a new output directory with the cache filled
    (the object is reused: rules are map data and the C depends on the hook families alone);
  * policyc unchanged: the same policy built again into the directory of its last build
    (nothing changed: `policyc build` leaves the outputs as they are, lowering nothing).

Cold is clang's unless policyc ships the object (a wheel does, for `default deny` policies:
policyc/codegen/prebuilt.py): --wheel times the policyc of a wheel built from this tree
(POLICYC_PREBUILT=require) and installed in a new venv, as a user gets it.

CPU is the child's user + system seconds (the kernel's accounting, os.wait4), wall a
monotonic clock around it; medians and minimums over --runs. Sizes: policyc's object,
manifest and maps file (NAME.maps) against AppArmor's binary policy. Prints a table and writes
bench/results/build_vs_apparmor.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def generate(n: int) -> tuple[str, str]:
    """(policyc policy, AppArmor profile) of n equivalent file rules."""
    pol = ["policy bench {", '    subject exe "/usr/bin/bench"', "    default deny"]
    aa = ["abi <abi/3.0>,", "profile bench /usr/bin/bench {"]
    for i in range(n):
        d = f"/srv/app{i // 10}"
        k = i % 3
        if k == 0:
            pol.append(f'    allow file read "{d}/file{i}.conf"')
            aa.append(f"  {d}/file{i}.conf r,")
        elif k == 1:
            pol.append(f'    allow file read, write "{d}/data{i}/**"')
            aa.append(f"  {d}/data{i}/** rw,")
        else:
            pol.append(f'    allow file read, exec-map "{d}/lib{i}/*.so"')
            aa.append(f"  {d}/lib{i}/*.so rm,")
    pol.append("}")
    aa.append("}")
    return "\n".join(pol) + "\n", "\n".join(aa) + "\n"


def policyc_command() -> list[str]:
    exe = shutil.which("policyc", path=str(Path(sys.executable).parent)) or shutil.which("policyc")
    return [exe] if exe else [sys.executable, "-m", "policyc"]


def install_wheel(work: Path) -> list[str]:
    """Build this tree's wheel (with its shipped objects) and install it, with its
    dependencies, in a new venv under WORK; the `policyc` command of that venv."""
    src = work / "src"
    src.mkdir(parents=True)
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True).stdout.split(b"\0")
    for rel in filter(None, (f.decode() for f in files)):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    env = dict(os.environ, POLICYC_PREBUILT="require", PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(work / "dist")],
                   cwd=src, env=env, check=True)
    (wheel,) = (work / "dist").glob("policyc-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    subprocess.run([str(work / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], env=env,
                   check=True)
    return [str(work / "venv" / "bin" / "policyc")]


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """One whole process: CPU (user + system, the kernel's accounting), wall, peak RSS."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err}")
    return {"cpu": ru.ru_utime + ru.ru_stime, "wall": wall, "peak_mb": ru.ru_maxrss / 1024}


def summary(runs: list[dict]) -> dict:
    out = {}
    for k in ("cpu", "wall", "peak_mb"):
        xs = [r[k] for r in runs]
        out[k] = {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10,1000,10000", help="rule counts (default 10,1000,10000)")
    ap.add_argument("--runs", type=int, default=6, help="runs of each command per size (default 6)")
    ap.add_argument("--quick", action="store_true", help="10 and 1000 rules, 3 runs")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "build_vs_apparmor.json"))
    ap.add_argument("--policyc", default=None,
                    help="the policyc command to time, one string split as a shell splits words "
                         "(default: this checkout's); e.g. an older tree's `python -m policyc`")
    ap.add_argument("--wheel", action="store_true",
                    help="time the policyc of this tree's wheel, installed in a new venv (with its shipped objects)")
    args = ap.parse_args()
    sizes = [10, 1000] if args.quick else [int(x) for x in args.sizes.split(",")]
    runs = 3 if args.quick else args.runs
    aa = shutil.which("apparmor_parser") or next(
        (p for p in ("/usr/sbin/apparmor_parser", "/sbin/apparmor_parser") if os.path.exists(p)), None)
    if aa is None:
        print("apparmor_parser not found: install Debian's `apparmor` package", file=sys.stderr)
        return 2
    aa_version = subprocess.run([aa, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    results = {}
    kinds = ("apparmor", "policyc_cold", "policyc_warm", "policyc_unchanged")
    with tempfile.TemporaryDirectory(prefix="policyc-bench-") as tmp:
        tmp = Path(tmp)
        if args.wheel:
            policyc = install_wheel(tmp / "wheel")
        else:
            policyc = shlex.split(args.policyc) if args.policyc else policyc_command()
        warm_cache = tmp / "warm-cache"
        for n in sizes:
            pol, prof = generate(n)
            (tmp / f"p{n}.policy").write_text(pol)
            (tmp / f"aa{n}").write_text(prof)
        env = dict(os.environ)
        times: dict = {n: {k: [] for k in kinds} for n in sizes}
        # the warm cache filled once (and every command run once) before anything is counted
        for n in sizes:
            timed(policyc + ["build", str(tmp / f"p{n}.policy"), "-o", str(tmp / f"warm{n}")],
                  env | {"POLICYC_CACHE": str(warm_cache)})
            timed([aa, "-Q", "-K", "-q", "-o", str(tmp / f"aa{n}.bin"), str(tmp / f"aa{n}")])
        for r in range(runs):
            for n in sizes:
                times[n]["apparmor"].append(
                    timed([aa, "-Q", "-K", "-q", "-o", str(tmp / f"aa{n}.bin"), str(tmp / f"aa{n}")]))
                cold = tmp / f"cold-{n}-{r}"   # an empty cache and a new output directory
                times[n]["policyc_cold"].append(
                    timed(policyc + ["build", str(tmp / f"p{n}.policy"), "-o", str(cold / "out")],
                          env | {"POLICYC_CACHE": str(cold / "cache")}))
                shutil.rmtree(cold, ignore_errors=True)
                fresh = tmp / f"warm-{n}-{r}"   # a new output directory: the build is done
                times[n]["policyc_warm"].append(
                    timed(policyc + ["build", str(tmp / f"p{n}.policy"), "-o", str(fresh)],
                          env | {"POLICYC_CACHE": str(warm_cache)}))
                shutil.rmtree(fresh, ignore_errors=True)
                times[n]["policyc_unchanged"].append(
                    timed(policyc + ["build", str(tmp / f"p{n}.policy"), "-o", str(tmp / f"warm{n}")],
                          env | {"POLICYC_CACHE": str(warm_cache)}))
        for n in sizes:
            obj = (tmp / f"warm{n}" / "bench.bpf.o").stat().st_size
            man = (tmp / f"warm{n}" / "bench.manifest.json").stat().st_size
            # NAME.maps: the maps' bytes (policyc/mapsfile.py); none from a policyc before it
            # (--policyc of an older tree), whose manifest held them as hex
            maps_file = tmp / f"warm{n}" / "bench.maps"
            maps_size = maps_file.stat().st_size if maps_file.exists() else 0
            aab = (tmp / f"aa{n}.bin").stat().st_size
            maps = json.loads((tmp / f"warm{n}" / "bench.manifest.json").read_text())["maps"]
            # the key+value bytes the kernel is given, whichever way the build stored them
            map_bytes = sum(m["count"] * (m["key_size"] + m["value_size"]) for m in maps.values())
            results[n] = {k: summary(v) for k, v in times[n].items()}
            results[n]["sizes"] = {"policyc_object": obj, "policyc_manifest": man, "policyc_maps_file": maps_size,
                                   "policyc_map_data": map_bytes, "apparmor_binary": aab,
                                   "dfa_states": maps["dfa_states"]["count"],
                                   "dfa_comb": maps["dfa_comb"]["count"]}
            results[n]["ratio_cpu_apparmor_over_warm"] = round(
                results[n]["apparmor"]["cpu"]["median"] / results[n]["policyc_warm"]["cpu"]["median"], 2)
    print(f"{'rules':>6} {'command':17} {'cpu med':>8} {'cpu min':>8} {'wall med':>9} {'wall min':>9} {'peak MB':>8}")
    for n in sizes:
        for k in kinds:
            s = results[n][k]
            print(f"{n:>6} {k:17} {s['cpu']['median']:>8.3f} {s['cpu']['min']:>8.3f} {s['wall']['median']:>9.3f} "
                  f"{s['wall']['min']:>9.3f} {s['peak_mb']['median']:>8.1f}")
    print()
    print(f"{'rules':>6} {'policyc .o':>11} {'manifest':>11} {'.maps':>10} {'map data':>11} {'apparmor':>10} "
          f"{'all/aa':>7} {'aa/warm cpu':>12}")
    for n in sizes:
        z = results[n]["sizes"]
        total = z["policyc_object"] + z["policyc_manifest"] + z["policyc_maps_file"]
        z["policyc_total"] = total
        print(f"{n:>6} {z['policyc_object']:>11,} {z['policyc_manifest']:>11,} {z['policyc_maps_file']:>10,} "
              f"{z['policyc_map_data']:>11,} {z['apparmor_binary']:>10,} {total / z['apparmor_binary']:>7.1f} "
              f"{results[n]['ratio_cpu_apparmor_over_warm']:>12.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.node(), "cpus": os.cpu_count(),
                               "python": platform.python_version(), "apparmor_parser": aa_version,
                               "policyc": policyc, "runs": runs, "date": time.strftime("%Y-%m-%d", time.gmtime()),
                               "results": {str(n): v for n, v in results.items()}}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
