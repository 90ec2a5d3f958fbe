"""States, build time and peak memory of the path automaton for the rule shapes that used to
explode (#12), at growing sizes: a regression in the automaton shows as a table.

    python bench/dfa_shapes.py [--quick]

Each shape is one policy (`subject exe "/usr/bin/x"` and the rules) lowered by the front end
and built into the DFA as `check` and `build` build it (policyc/ir/dfa.py `policy_dfa`; no
clang). Each size runs in a subprocess, so peak memory (ru_maxrss, less the interpreter's
own) is that size's alone and a size that would need too much is stopped at the state cap
(policyc/ir/dfa.py MAX_STATES) or the time limit, never by running out of memory. Prints a
table and writes bench/results/dfa_shapes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few sizes per shape")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per size (default 120)")
    args = ap.parse_args()
    rows = []
    print(f"{'shape':24} {'n':>6} {'states':>9} {'cpu s':>8} {'peak MB':>8}")
    for shape, (_, sizes) in SHAPES.items():
        for n in (QUICK[shape] if args.quick else sizes):
            r = run(shape, n, args.timeout)
            rows.append(r)
            states = r["states"] if r["states"] is not None else (
                "cap" if "too_large" in r else "timeout" if "timeout_s" in r else "error")
            print(f"{shape:24} {n:>6} {states!s:>9} {r.get('cpu_s', '-')!s:>8} {r.get('peak_mb', '-')!s:>8}",
                  flush=True)
    out = ROOT / "bench" / "results" / "dfa_shapes.json"
    out.write_text(json.dumps({"machine": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                               "rows": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
