"""`policyc load DIR|PATH... [--replace]`: attach built policies (or build .policy files
first). Checks that BPF LSM is usable before anything is loaded; a failed load prints the
verifier's log and leaves nothing of that policy attached or pinned (policies loaded before
it stay).

`policyc load --sync DIR [--prune]`: make the kernel match build directory DIR (policyc/sync.py):
load what is new, replace what changed without a gap, leave what is unchanged, and with
--prune unload what DIR no longer has. It keeps going past a policy that fails (reported on
stderr with its reason) and then exits 1; what policyc.service runs at boot.

Both govern the processes already running that a loaded policy's `subject exe` patterns
match, and their descendants, once its programs are attached (policyc/adopt.py, docs/semantics.md
"Processes running before load"), and list them under the policy's line; `--no-adopt` leaves
them ungoverned. `--format json` (`--json`; not with --sync): one JSON document,
`{"version": 1, "loaded": [...]}`, per policy its `adopted` processes."""

from __future__ import annotations

import json
import sys
from typing import List, Optional, TextIO

import typer

from ..deploy import DeployError, check_kernel, load_manifest, read_manifest
from .common import DASH_P_HELP, EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, guarded, select_policies
from .kernel_common import manifests_for, print_deploy_error

JSON_VERSION = 1   # `version` of `load --json`'s object: raised when a field changes meaning


def run_load(paths: list[str], names: list[str] | None, replace: bool, out: TextIO, err: TextIO,
             sync: str | None = None, prune: bool = False, adopt: bool = True, as_json: bool = False,
             dash_p: list[str] | None = None, policy_files: list[str] | None = None) -> int:
    if sync is not None:
        problem = ("give either --sync DIR or DIR|PATH..., not both" if paths or policy_files else
                   "--sync loads every policy of DIR: -p does not apply" if names or dash_p else
                   "--sync replaces changed policies itself: drop --replace" if replace else
                   "--json does not go with --sync (its output is one line per policy)" if as_json else None)
        if problem:
            err.write(f"policyc: error: {problem}\n")
            return EXIT_BAD_INPUT
        from ..sync import sync as run_sync

        try:
            return run_sync(sync, prune, out, err, adopt=adopt)
        except DeployError as e:
            return print_deploy_error(e, err)
    if prune:
        err.write("policyc: error: --prune goes with --sync DIR\n")
        return EXIT_BAD_INPUT
    if dash_p or policy_files:
        paths, names = select_policies(list(paths), names, dash_p, policy_files, err)
    if not paths:
        err.write("policyc: error: name build directories, manifests or .policy files (or --sync DIR)\n")
        return EXIT_BAD_INPUT
    docs: list[dict] = []
    try:
        code, manifests = manifests_for(paths, names, out, err)
        if code:
            return code
        check_kernel()
        from ..adopt import Report

        for m in manifests:
            report = Report() if adopt else None
            loaded = load_manifest(m, replace=replace, adopt=report)
            man = read_manifest(m)
            if as_json:
                docs.append({"name": loaded.name, "policy": man["policy"], "mode": man["mode"],
                             "rules": len(man["rules"]), "hooks": len(loaded.links), "pin_dir": loaded.pin_dir,
                             "replaced": bool(replace and loaded.replaced),
                             "adopted": report.to_json() if report is not None else None,
                             "not_adopted": report.skipped if report is not None else [],
                             "adopt_error": report.error if report is not None else None})
                continue
            out.write(f"loaded {loaded.name} ({man['mode']}, {len(man['rules'])} rules, "
                      f"{len(loaded.links)} hooks) pinned at {loaded.pin_dir}\n")
            if report is not None:
                for line in report.lines():
                    out.write(line + "\n")
            out.flush()
    except DeployError as e:
        if as_json and docs:
            out.write(json.dumps({"version": JSON_VERSION, "loaded": docs}, indent=2) + "\n")
        return print_deploy_error(e, err)
    if as_json:
        out.write(json.dumps({"version": JSON_VERSION, "loaded": docs}, indent=2) + "\n")
    return EXIT_OK


def command(
    paths: Optional[List[str]] = typer.Argument(None, metavar="DIR|PATH...",
                                                help="build directories, manifests or .policy files"),
    policy: Optional[List[str]] = typer.Option(None, "--policy", metavar="NAME", help="only these policies"),
    dash_p: Optional[List[str]] = typer.Option(None, "-p", metavar="POLICY", help=DASH_P_HELP),
    policy_files: Optional[List[str]] = typer.Option(None, "--policy-file", metavar="PATH",
                                                     help="one more build directory, manifest or .policy file "
                                                          "(as DIR|PATH)"),
    replace: bool = typer.Option(False, "--replace", help="replace a loaded policy of the same name"),
    sync: Optional[str] = typer.Option(None, "--sync", metavar="DIR",
                                       help="make the kernel match build directory DIR: load new policies, "
                                            "replace changed ones without a gap, leave unchanged ones; keeps "
                                            "going past failures (exit 1 if any)"),
    prune: bool = typer.Option(False, "--prune", help="with --sync: unload loaded policies DIR does not have"),
    no_adopt: bool = typer.Option(False, "--no-adopt",
                                  help="do not govern processes already running a subject executable "
                                       "(they stay ungoverned until they exec one again)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON document: per policy its `adopted` processes"),
    fmt: Optional[str] = typer.Option(None, "--format", metavar="text|json", help="text or json (--json is json)"),
) -> None:
    """Load policies into the kernel (BPF LSM) and pin them under /sys/fs/bpf/policyc."""
    if fmt is not None and fmt not in ("text", "json"):
        sys.stderr.write(f"policyc: error: unknown format `{fmt}` (text or json)\n")
        raise typer.Exit(EXIT_USAGE)
    guarded(run_load, list(paths or []), policy, replace, out=sys.stdout, err=sys.stderr, sync=sync, prune=prune,
            adopt=not no_adopt, as_json=as_json or fmt == "json", dash_p=dash_p, policy_files=policy_files)
