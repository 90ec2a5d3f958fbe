"""`policyc doctor [--format text|json] [--no-trial]`: can this host enforce policies
(policyc/doctor.py). Exit 0 when it can, 1 when a required check fails. `--format json`
(`--json`): `{"version": 1, "can_enforce": bool, "checks": [{name, status, required, detail,
fix}]}`."""

from __future__ import annotations

import json
import sys
from typing import Optional, TextIO

import typer

from .. import doctor
from .common import EXIT_FAIL, EXIT_OK, EXIT_USAGE, guarded

JSON_VERSION = 1   # `version` of the json format's object: raised when a field changes meaning


def run_doctor(as_json: bool, trial: bool, out: TextIO, err: TextIO, host: doctor.Host | None = None) -> int:
    host = host or doctor.Host()
    if not trial:
        host.trial = None
    checks = doctor.examine(host)
    if as_json:
        out.write(json.dumps({"version": JSON_VERSION, **doctor.to_json(checks)}, indent=2, sort_keys=True) + "\n")
    else:
        out.write(doctor.render_text(checks))
    return EXIT_OK if doctor.can_enforce(checks) else EXIT_FAIL


def command(
    as_json: bool = typer.Option(False, "--json", help="one JSON document: can_enforce and the checks"),
    fmt: Optional[str] = typer.Option(None, "--format", metavar="text|json", help="text or json (--json is json)"),
    trial: bool = typer.Option(True, "--trial/--no-trial",
                               help="as root, load (never attach) a two-instruction LSM program to prove it"),
) -> None:
    """Can this host enforce? Each check ok or its fix; exit 0 when it can, 1 otherwise."""
    if fmt is not None and fmt not in ("text", "json"):
        sys.stderr.write(f"policyc: error: unknown format `{fmt}` (text or json)\n")
        raise typer.Exit(EXIT_USAGE)
    guarded(run_doctor, as_json or fmt == "json", trial, out=sys.stdout, err=sys.stderr)
