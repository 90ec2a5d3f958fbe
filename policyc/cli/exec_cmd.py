"""`policyc exec -p PATH -- CMD...`: run a command, and all it starts, under a policy as if it
were the policy's subject; denials and audit hits are printed to stderr as they happen.
Exits with the command's exit code (2 when the policy cannot be built or loaded)."""

from __future__ import annotations

import sys
from typing import List, Optional, TextIO

import typer

from ..deploy import DeployError
from ..execute import run_command
from .common import EXIT_BAD_INPUT, guarded
from .kernel_common import manifests_for, print_deploy_error


def run_exec(path: str, names: list[str] | None, argv: list[str], json_events: bool, out: TextIO, err: TextIO) -> int:
    if not argv:
        err.write("policyc: error: no command given: policyc exec -p POLICY -- CMD...\n")
        return EXIT_BAD_INPUT
    try:
        code, manifests = manifests_for([path], names, out, err)
        if code:
            return code
        if len(manifests) != 1:
            err.write(f"policyc: error: `{path}` holds {len(manifests)} policies; choose one with --policy NAME\n")
            return EXIT_BAD_INPUT
        return run_command(manifests[0], argv, err, json_events=json_events)
    except DeployError as e:
        return print_deploy_error(e, err)


def command(
    path: str = typer.Option(..., "-p", "--policy-file", metavar="PATH", help="a .policy file, manifest or build dir"),
    name: Optional[List[str]] = typer.Option(None, "--policy", metavar="NAME", help="the policy, when PATH holds several"),
    json_events: bool = typer.Option(False, "--json", help="print events as JSON lines"),
    argv: Optional[List[str]] = typer.Argument(None, metavar="-- CMD...", help="the command to run"),
) -> None:
    """Run one command under a policy, as its subject (needs BPF LSM: use `policyc vm` here)."""
    guarded(run_exec, path, name, list(argv or []), json_events, out=sys.stdout, err=sys.stderr)
