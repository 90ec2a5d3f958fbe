"""How much of Debian's AppArmor policy `policyc import-apparmor` converts (issue #16).

    .venv/bin/python bench/import_apparmor.py [--refresh] [--out FILE]

Downloads (once) the .debs of apparmor (abstractions, tunables), apparmor-profiles and
apparmor-profiles-extra with `apt-get download` (no root; run in a directory under /tmp)
into ${POLICYC_CACHE:-~/.cache/policyc}/apparmor/debs, extracts each with `dpkg-deb -x`
into apparmor/pkgs/PACKAGE, and merges their /etc/apparmor.d into apparmor/base (the
`--base` of the conversion). `--refresh` downloads and extracts again.

Then converts every profile file of apparmor-profiles and apparmor-profiles-extra:

- each file alone, through the command's own code (`run_import`: convert, format, `policyc
  check`): exit 0 and no traceback for every file, or this script fails (exit 1);
- all of them in one run (as `policyc import-apparmor /etc/apparmor.d` would: a signal or
  ptrace peer named by profile resolves across files), which gives the figures: profiles,
  rules seen (each AppArmor rule once per profile it lands in, so an abstraction counts in
  every profile that includes it), converted exactly / approximately / in part / not, by
  rule kind, and the reasons for what is not converted; also per distinct rule
  (file:line:col, its worst status over the profiles it lands in).

Prints a table and writes bench/results/import_apparmor.json. Exit 0, 1 on a crash or a
converted policy that fails `policyc check`, 2 when the packages cannot be fetched.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policyc.cli.import_cmd import run_import  # noqa: E402
from policyc.importers.apparmor import APPROX, KINDS, REASONS, import_apparmor  # noqa: E402

PACKAGES = ("apparmor", "apparmor-profiles", "apparmor-profiles-extra")
PROFILE_PACKAGES = ("apparmor-profiles", "apparmor-profiles-extra")
NOT_PROFILES = {"abstractions", "tunables", "abi", "local", "disable", "force-complain"}
WORST = {"converted": 0, "approximate": 1, "partial": 2, "not": 3}


def cache_dir() -> Path:
    return Path(os.environ.get("POLICYC_CACHE") or Path.home() / ".cache" / "policyc") / "apparmor"


def fetch(cache: Path, refresh: bool) -> dict[str, str]:
    """The packages downloaded and extracted; {package: version}."""
    debs, pkgs, base = cache / "debs", cache / "pkgs", cache / "base"
    debs.mkdir(parents=True, exist_ok=True)
    need = [p for p in PACKAGES if refresh or not list(debs.glob(f"{p}_*.deb"))]
    if need:
        with tempfile.TemporaryDirectory(prefix="policyc-apparmor-", dir="/tmp") as tmp:
            print(f"apt-get download {' '.join(need)}", flush=True)
            subprocess.run(["apt-get", "download", *need], cwd=tmp, check=True)
            for p in need:
                for old in debs.glob(f"{p}_*.deb"):
                    old.unlink()
            for deb in Path(tmp).glob("*.deb"):
                shutil.move(str(deb), debs / deb.name)
    versions = {}
    for p in PACKAGES:
        (deb,) = sorted(debs.glob(f"{p}_*.deb"))[-1:]
        versions[p] = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                                     capture_output=True, text=True).stdout.strip()
        dest = pkgs / p
        if refresh or need or not dest.is_dir():
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    if refresh or need or not base.is_dir():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        for p in PACKAGES:
            etc = pkgs / p / "etc" / "apparmor.d"
            if etc.is_dir():
                shutil.copytree(etc, base, dirs_exist_ok=True)
    return versions


def profiles_of(cache: Path, package: str) -> list[str]:
    """The profile files a package ships: /etc/apparmor.d (not abstractions, tunables, ...)
    and /usr/share/apparmor/extra-profiles."""
    root = cache / "pkgs" / package
    out: list[str] = []
    etc = root / "etc" / "apparmor.d"
    if etc.is_dir():
        out += [str(p) for p in sorted(etc.rglob("*"))
                if p.is_file() and p.relative_to(etc).parts[0] not in NOT_PROFILES]
    extra = root / "usr" / "share" / "apparmor" / "extra-profiles"
    if extra.is_dir():
        out += [str(p) for p in sorted(extra.iterdir()) if p.is_file() and p.name != "README"]
    return out


def one_by_one(paths: list[str], base: Path) -> tuple[list[str], float]:
    """Each file alone through the command; the failures (crash, exit 3, parse error)."""
    failures = []
    worst = 0.0
    for p in paths:
        out, err = io.StringIO(), io.StringIO()
        t = time.perf_counter()
        try:
            code = run_import([p], None, str(base), False, out, err)
        except Exception as e:  # noqa: BLE001 - a crash is what this looks for
            failures.append(f"{p}: crash: {type(e).__name__}: {e}")
            continue
        worst = max(worst, time.perf_counter() - t)
        if code != 0 or "Traceback" in err.getvalue():
            failures.append(f"{p}: exit {code}: {err.getvalue().strip().splitlines()[:3]}")
    return failures, worst


def share(n: int, d: int) -> float:
    return round(100.0 * n / d, 1) if d else 0.0


def figures(result) -> dict:
    entries = result.entries
    status = Counter(e.status for e in entries)
    seen = len(entries)
    distinct: dict[tuple, str] = {}
    distinct_reasons: dict[str, set] = defaultdict(set)
    for e in entries:
        key = (e.loc.file, e.loc.line, e.loc.col)
        if key not in distinct or WORST[e.status] > WORST[distinct[key]]:
            distinct[key] = e.status
        for k, _ in e.reasons:
            distinct_reasons[k].add(key)
    dstatus = Counter(distinct.values())
    kinds = {}
    for kind in KINDS:
        es = [e for e in entries if e.kind == kind]
        if es:
            c = Counter(e.status for e in es)
            kinds[kind] = {"seen": len(es), "converted": c["converted"] + c["approximate"],
                           "partial": c["partial"], "not": c["not"]}
    where = {}
    for label, es in (("profile_files", [e for e in entries if e.via is None]),
                      ("via_includes", [e for e in entries if e.via is not None])):
        c = Counter(e.status for e in es)
        where[label] = {"seen": len(es), "converted": c["converted"] + c["approximate"],
                        "partial": c["partial"], "not": c["not"],
                        "share_converted_pct": share(c["converted"] + c["approximate"], len(es))}
    reasons = Counter(k for e in entries if e.status in ("partial", "not") for k in dict(e.reasons))
    approx = Counter(k for e in entries for k in dict(e.approx))
    profiles = [p for f in result.files for p in f.profiles]

    return {
        "profile_files": len(result.files),
        "profiles": len(profiles),
        "policies": sum(1 for p in profiles if p.policy),
        "profiles_not_converted": {p.name: p.reason for p in profiles if not p.policy},
        "rules_seen": seen,
        "converted": status["converted"] + status["approximate"],
        "converted_exactly": status["converted"],
        "approximately": status["approximate"],
        "in_part": status["partial"],
        "not_converted": status["not"],
        "share_converted_pct": share(status["converted"] + status["approximate"], seen),
        "share_at_least_in_part_pct": share(seen - status["not"], seen),
        "deny_rules_not_wholly_converted": result.counts()["deny_not_converted"],
        "distinct_rules": len(distinct),
        "distinct_converted": dstatus["converted"] + dstatus["approximate"],
        "distinct_in_part": dstatus["partial"],
        "distinct_not_converted": dstatus["not"],
        "distinct_share_converted_pct": share(dstatus["converted"] + dstatus["approximate"], len(distinct)),
        "by_kind": kinds,
        "by_where": where,
        "reasons": [{"reason": k, "rules": n, "distinct": len(distinct_reasons[k]), "text": REASONS.get(k, k)}
                    for k, n in reasons.most_common()],
        "approximations": [{"kind": k, "rules": n, "text": APPROX.get(k, k)} for k, n in approx.most_common()],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refresh", action="store_true", help="download and extract the packages again")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "import_apparmor.json"))
    args = ap.parse_args()

    cache = cache_dir()
    try:
        versions = fetch(cache, args.refresh)
    except (OSError, subprocess.CalledProcessError, ValueError) as e:
        print(f"cannot fetch the packages: {e}", file=sys.stderr)
        return 2
    base = cache / "base"
    by_package = {p: profiles_of(cache, p) for p in PROFILE_PACKAGES}
    paths = [p for ps in by_package.values() for p in ps]
    print(f"{len(paths)} profile files ({', '.join(f'{p} {versions[p]}: {len(v)}' for p, v in by_package.items())})")

    t = time.perf_counter()
    failures, worst_one = one_by_one(paths, base)
    t_each = time.perf_counter() - t

    t = time.perf_counter()
    result = import_apparmor(paths, base)
    t_convert = time.perf_counter() - t
    out, err = io.StringIO(), io.StringIO()
    t = time.perf_counter()
    code = run_import(paths, None, str(base), False, out, err)
    t_command = time.perf_counter() - t
    if code != 0:
        failures.append(f"all profiles in one run: exit {code}: {err.getvalue()[-2000:]}")
    if not result.ok:
        failures += [f.error for f in result.files if f.error]
    warnings = next((ln for ln in err.getvalue().splitlines() if "passes `policyc check`" in ln), "")

    fig = figures(result)
    fig.update({
        "packages": versions,
        "files_by_package": {p: len(v) for p, v in by_package.items()},
        "seconds_convert_all": round(t_convert, 2),
        "seconds_command_all": round(t_command, 2),
        "seconds_each_file_total": round(t_each, 2),
        "seconds_worst_file": round(worst_one, 2),
        "output_lines": out.getvalue().count("\n"),
        "check": warnings.removeprefix("policyc: "),
        "failures": failures,
        "python": platform.python_version(),
        "machine": platform.machine(),
    })

    print(f"{fig['profile_files']} files, {fig['profiles']} AppArmor profiles, {fig['policies']} policies")
    print(f"{'':<22} {'rules':>8} {'converted':>10} {'share':>7} {'in part':>8} {'not':>7}")
    print(f"{'as they land (per profile)':<22} {fig['rules_seen']:>8} {fig['converted']:>10} "
          f"{fig['share_converted_pct']:>6}% {fig['in_part']:>8} {fig['not_converted']:>7}")
    print(f"{'distinct (file:line)':<22} {fig['distinct_rules']:>8} {fig['distinct_converted']:>10} "
          f"{fig['distinct_share_converted_pct']:>6}% {fig['distinct_in_part']:>8} {fig['distinct_not_converted']:>7}")
    for label, v in fig["by_where"].items():
        print(f"{'  ' + label:<22} {v['seen']:>8} {v['converted']:>10} {v['share_converted_pct']:>6}% "
              f"{v['partial']:>8} {v['not']:>7}")
    print(f"\n{'kind':<16} {'seen':>7} {'converted':>10} {'in part':>8} {'not':>7}")
    for k, v in fig["by_kind"].items():
        print(f"{k:<16} {v['seen']:>7} {v['converted']:>10} {v['partial']:>8} {v['not']:>7}")
    print(f"\n{'reason (not converted, whole or part)':<40} {'rules':>7} {'distinct':>9}")
    for r in fig["reasons"][:15]:
        print(f"{r['reason']:<40} {r['rules']:>7} {r['distinct']:>9}")
    print(f"\nprofiles not converted: {fig['profiles_not_converted']}")
    print(f"convert all: {fig['seconds_convert_all']} s; command (convert, format, check): "
          f"{fig['seconds_command_all']} s; {fig['check']}")
    print(f"each file alone: {fig['seconds_each_file_total']} s in all, worst {fig['seconds_worst_file']} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(fig, indent=2) + "\n")
    print(f"wrote {args.out}")
    if failures:
        print("FAILURES:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
