"""How long `policyc check` takes on a 10,000-rule policy (target: about a second).

    python bench/check_speed.py [--rules N] [--repeat R]

Generates a policy of N rules of every family (paths in many directories with `*`, `**`,
`?` and `{a,b}`, networks, ports, capabilities, signals; some rules shadowed, duplicated or
overridden so the checks have work), then times the phases of `check` in CPU seconds: parse, lower
(includes parse), the checks, and the whole command, best of R runs (and one wall-clock run). Prints a table and
writes bench/results/check_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policyc import pipeline  # noqa: E402
from policyc.checks import PIPELINE  # noqa: E402
from policyc.diagnostics import Diagnostics  # noqa: E402
from policyc.ir.vocab import CAPABILITIES, SIGNALS  # noqa: E402
from policyc.lower import load_program, paused_gc  # noqa: E402
from policyc.parse import parse_file  # noqa: E402

DIRS = ["/srv", "/var/lib", "/opt", "/etc", "/usr/share", "/home", "/var/log", "/data", "/run", "/usr/lib"]
NAMES = ["app", "svc", "cache", "store", "conf", "web", "db", "queue", "tmp", "build"]


def generate(n: int, seed: int = 1) -> str:
    rnd = random.Random(seed)
    lines = ["policy big {", '    subject exe "/usr/bin/bigapp"', "    mode enforce", "    default deny", ""]

    def path(i: int) -> str:
        d = rnd.choice(DIRS)
        base = f"{d}/{rnd.choice(NAMES)}{i}"
        kind = rnd.randrange(6)
        return [f"{base}/**", f"{base}/*.conf", f"{base}/data/file{i}.txt", f"{base}/{{a,b}}/?.log",
                f"{base}/x/**/y", f"{base}"][kind]

    for i in range(n):
        k = rnd.randrange(100)
        decision = "deny" if k % 7 == 0 else "audit" if k % 11 == 0 else "allow"
        if k < 55:
            ops = ", ".join(rnd.sample(["read", "write", "create", "append", "delete", "exec-map"], rnd.randint(1, 3)))
            paths = ", ".join(f'"{path(i * 3 + j)}"' for j in range(rnd.randint(1, 3)))
            lines.append(f"    {decision} file {ops} {paths}")
        elif k < 70:
            lines.append(f'    {decision} exec "/opt/tool{i}/bin/{{run,start}}*"')
        elif k < 85:
            a, b = rnd.randrange(256), rnd.randrange(256)
            proto = rnd.choice(["tcp", "udp", "any"])
            lines.append(f"    {decision} net connect {proto} 10.{a}.{b}.0/24 port {1024 + i % 60000}")
        elif k < 90:
            lines.append(f"    {decision} net bind tcp port {1024 + i % 60000}")
        elif k < 95:
            lines.append(f"    {decision} capability {rnd.choice(CAPABILITIES)}")
        else:
            lines.append(f'    {decision} signal {rnd.choice(list(SIGNALS))} to exe "/usr/bin/peer{i % 50}"')
        if i % 500 == 0:   # something for the checks to find
            lines.append(f'    allow file read "/srv/app{i}/**"')
            lines.append(f'    allow file read "/srv/app{i}/index.html"')
            lines.append(f'    deny file write "/srv/app{i}/**"')
            lines.append(f'    allow file write "/srv/app{i}/upload/x"')
    lines.append("}")
    return "\n".join(lines) + "\n"


CLOCK = time.process_time   # CPU seconds: steadier than wall time on a shared machine


def best(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = CLOCK()
        result = fn()
        times.append(CLOCK() - t)
    return min(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "check_speed.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.policy")
        Path(path).write_text(generate(args.rules))
        parse_file(path, Diagnostics())  # build the parser once (cached), as a long run would

        with paused_gc():
            t_parse, _ = best(lambda: parse_file(path, Diagnostics()), args.repeat)
        t_lower, program = best(lambda: load_program([path], Diagnostics()), args.repeat)
        per_check = {}
        for check in PIPELINE:
            name = check.__name__.rsplit(".", 1)[-1]
            program = load_program([path], Diagnostics())   # fresh objects: no cached analysis
            with paused_gc():
                per_check[name], _ = best(lambda: check.run(program, Diagnostics()), 1)

        def whole():   # what `policyc check` runs (the phases above are timed one by one)
            return pipeline.front_end([path]).diags

        t_check, diags = best(whole, args.repeat)
        wall = time.perf_counter()
        whole()
        wall = time.perf_counter() - wall
        n_rules = len(program.policies[0].rules)

    rows = [("parse", t_parse), ("parse + lower", t_lower)]
    rows += [(f"  check {k}", v) for k, v in per_check.items()]
    rows += [("checks (all)", sum(per_check.values())), ("check (whole command)", t_check)]
    print(f"policyc check, {n_rules} rules, CPU seconds, best of {args.repeat}")
    print(f"{'phase':<32} {'seconds':>8}")
    for name, t in rows:
        print(f"{name:<32} {t:>8.3f}")
    print(f"{'check, wall clock (one run)':<32} {wall:>8.3f}")
    print(f"diagnostics: {len(diags.items)} ({', '.join(sorted({d.code for d in diags.items}))})")
    result = {
        "rules": n_rules,
        "repeat": args.repeat,
        "cpu_seconds": {name.strip(): round(t, 4) for name, t in rows},
        "wall_seconds_whole": round(wall, 4),
        "diagnostics": len(diags.items),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "target_seconds": 1.0,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
