"""`policyc status [--json]`: loaded policies, their mode, rule count, per-hook counters and
the events rule limits held back."""

from __future__ import annotations

import json
import sys
from typing import TextIO

import typer

from ..deploy import DeployError, status
from .common import EXIT_OK, guarded
from .kernel_common import print_deploy_error


def run_status(as_json: bool, out: TextIO, err: TextIO) -> int:
    try:
        rows = status()
    except DeployError as e:
        return print_deploy_error(e, err)
    if as_json:
        out.write(json.dumps({"policies": rows}, indent=2, sort_keys=True) + "\n")
        return EXIT_OK
    if not rows:
        out.write("no policyc policies are loaded\n")
        return EXIT_OK
    for r in rows:
        out.write(f"{r['name']}: mode {r['mode']}, default {r['default']}, {r['rules']} rules, "
                  f"{len(r['hooks'])} hooks ({r['pin_dir']})\n")
        for hook, c in sorted(r["counters"].items()):
            out.write(f"  {hook:<22} checked {c['checked']:>8}  denied {c['denied']:>6}  audited {c['audited']:>6}"
                      f"  failed-closed {c['failed_closed']:>4}  dropped {c['dropped']:>4}\n")
        for s in r.get("suppressed", ()):
            out.write(f"  suppressed by `limit {s['limit'] or '?'}` of {s['rule'] or 'rule ' + str(s['rule_id'])}: "
                      f"{s['count']}\n")
    return EXIT_OK


def command(as_json: bool = typer.Option(False, "--json", help="one JSON document")) -> None:
    """Show loaded policies and their per-hook counters."""
    guarded(run_status, as_json, out=sys.stdout, err=sys.stderr)
