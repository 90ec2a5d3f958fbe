"""States, build time and peak memory of the path automaton for the rule shapes that used to
explode (#12), at growing sizes: a regression in the automaton shows as a table.

    python bench/dfa_shapes.py [--quick] [--apparmor]

Each shape is one policy (`subject exe "/usr/bin/x"` and the rules) lowered by the front end
and built into the DFA as `check` and `build` build it (policyc/ir/dfa.py `policy_dfa`; no
clang). Each size runs in a subprocess, so peak memory (ru_maxrss, less the interpreter's
own) is that size's alone and a size that would need too much is stopped at the state cap
(policyc/ir/dfa.py MAX_STATES) or the time limit, never by running out of memory. Prints a
table and writes bench/results/dfa_shapes.json.

--apparmor also compiles each size's rules as an AppArmor profile (`/** rw,` and the same
rules as `deny PATTERN r,` or `w,`) with `apparmor_parser -Q -K -o FILE` (Debian's apparmor
package; it builds its DFA from every rule's pattern too), and records its CPU seconds, peak
memory, exit status and binary policy size beside policyc's: the peer's answer to the same
shapes, under the same time limit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRETS = [".ssh", ".aws", ".gnupg", ".kube", ".docker", ".azure", ".password-store", ".vault", ".config/gh",
           ".netrc.d", ".git-credentials.d", ".npmrc.d", ".pypirc.d", ".terraform.d", ".vagrant.d", ".minikube",
           ".helm", ".oci", ".gcloud", ".m2", ".ivy2", ".cargo", ".rustup", ".local/share/keyrings", ".mozilla",
           ".thunderbird", ".purple", ".irssi", ".weechat", ".ssh2", ".pki", ".certs"]

SHAPES = {
    # "deny the usual secret directories anywhere": one rule, n names
    "secrets-anywhere": (lambda n: ['deny file read "/**/{' + ",".join(SECRETS[:n]) + '}/**"'], [8, 12, 16, 32]),
    # n rules with a mid-path `**`
    "home-**-dN": (lambda n: [f'deny file read "/home/*/**/.d{i}/**"' for i in range(n)], [8, 16, 100, 1000]),
    # one rule, `/**/x*` then n components: the automaton must remember n positions
    "x*-then-n-components": (lambda n: ['deny file read "/**/x*' + "/*" * n + '"'], [8, 12, 17]),
    # n rules `/**/wN/*`
    "**-wN-*": (lambda n: [f'deny file read "/**/w{i}/*"' for i in range(n)], [50, 100, 200, 1000]),
    # n rules sharing a leading wildcard
    "home-*-pN-**": (lambda n: [f'deny file write "/home/*/p{i}/**"' for i in range(n)], [100, 1000]),
}
QUICK = {"secrets-anywhere": [8, 32], "home-**-dN": [16, 100], "x*-then-n-components": [8],
         "**-wN-*": [50], "home-*-pN-**": [100]}

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from policyc import pipeline
from policyc.ir.dfa import DfaTooLarge, policy_dfa
program = pipeline.front_end([sys.argv[2]], checks=False).program
t = time.process_time()
out = {}
try:
    out["states"] = len(policy_dfa(program.policies[0]).states)
except DfaTooLarge as e:
    out["states"] = None
    out["too_large"] = f"{e} (largest alone: {e.source}, {e.states} states)"
out["cpu_s"] = round(time.process_time() - t, 3)
out["peak_mb"] = round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, 1)
print(json.dumps(out))
"""


def run(shape: str, n: int, timeout: float) -> dict:
    rules = SHAPES[shape][0](n)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "p.policy"
        p.write_text('policy p {\n    subject exe "/usr/bin/x"\n' + "".join(f"    {r}\n" for r in rules) + "}\n")
        try:
            proc = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(p)], capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"shape": shape, "n": n, "states": None, "timeout_s": timeout}
    if proc.returncode != 0:
        return {"shape": shape, "n": n, "states": None, "error": proc.stderr.strip().splitlines()[-1:]}
    return {"shape": shape, "n": n, **json.loads(proc.stdout)}


def apparmor_profile(rules: list[str]) -> str:
    """The AppArmor profile of policyc rules `deny file read|write "PATTERN"`: everything
    allowed, the same patterns denied (AppArmor's `*` and `**` are policyc's)."""
    lines = ["abi <abi/3.0>,", "profile x /usr/bin/x {", "  /** rw,"]
    for r in rules:
        m = re.fullmatch(r'deny file (read|write) "(.*)"', r)
        assert m, r
        lines.append(f"  deny {m.group(2)} {'r' if m.group(1) == 'read' else 'w'},")
    return "\n".join(lines + ["}"]) + "\n"


def run_apparmor(parser: str, shape: str, n: int, timeout: float) -> dict:
    rules = SHAPES[shape][0](n)
    with tempfile.TemporaryDirectory() as tmp:
        prof, out = Path(tmp) / "x.aa", Path(tmp) / "x.bin"
        prof.write_text(apparmor_profile(rules))
        proc = subprocess.Popen([parser, "-Q", "-K", "-o", str(out), str(prof)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            _, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            timed_out = True
        size = out.stat().st_size if out.exists() else None
    return {"exit": None if timed_out else proc.returncode, "timeout_s": timeout if timed_out else None,
            "bytes": size, "error": (err or "").strip().splitlines()[-1:] if proc.returncode else []}


def timed_apparmor(parser: str, shape: str, n: int, timeout: float) -> dict:
    """run_apparmor's result with the CPU seconds and peak memory of that run alone: each in
    a process of its own, whose children's usage is the parser's (none for a run stopped at
    the time limit: a killed parser's usage is not counted)."""
    code = ("import json, resource, sys; sys.path.insert(0, sys.argv[1]); import dfa_shapes as d; "
            "r = d.run_apparmor(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])); "
            "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
            "r.update(cpu_s=round(u.ru_utime + u.ru_stime, 3), peak_mb=round(u.ru_maxrss / 1024, 1)) "
            "if r['timeout_s'] is None else r.update(cpu_s=None, peak_mb=None); "
            "print(json.dumps(r))")
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "bench"), parser, shape, str(n), str(timeout)],
                          capture_output=True, text=True)
    return json.loads(proc.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few sizes per shape")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per size (default 120)")
    ap.add_argument("--apparmor", action="store_true",
                    help="also apparmor_parser -Q -K on the same rules (Debian's apparmor package)")
    args = ap.parse_args()
    parser = None
    if args.apparmor:
        parser = shutil.which("apparmor_parser") or next(
            (p for p in ("/usr/sbin/apparmor_parser", "/sbin/apparmor_parser") if os.path.exists(p)), None)
        if parser is None:
            print("apparmor_parser not found: install Debian's `apparmor` package", file=sys.stderr)
            return 2
    rows = []
    print(f"{'shape':24} {'n':>6} {'states':>9} {'cpu s':>8} {'peak MB':>8}"
          + (f" | {'apparmor':>9} {'cpu s':>8} {'peak MB':>8} {'bytes':>9}" if parser else ""))
    for shape, (_, sizes) in SHAPES.items():
        for n in (QUICK[shape] if args.quick else sizes):
            r = run(shape, n, args.timeout)
            states = r["states"] if r["states"] is not None else (
                "cap" if "too_large" in r else "timeout" if "timeout_s" in r else "error")
            line = f"{shape:24} {n:>6} {states!s:>9} {r.get('cpu_s', '-')!s:>8} {r.get('peak_mb', '-')!s:>8}"
            if parser:
                a = timed_apparmor(parser, shape, n, args.timeout)
                r["apparmor"] = a
                what = "ok" if a["exit"] == 0 else "timeout" if a["timeout_s"] else f"exit {a['exit']}"
                line += f" | {what:>9} {a['cpu_s']!s:>8} {a['peak_mb']!s:>8} {a['bytes'] or '-'!s:>9}"
            rows.append(r)
            print(line, flush=True)
    out = ROOT / "bench" / "results" / "dfa_shapes.json"
    out.write_text(json.dumps({"machine": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                               "rows": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
