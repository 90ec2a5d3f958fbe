"""`policyc exec -p POLICY [--json] [--events FILE] -- CMD...`: run a command, and all it starts,
under a policy as if it were the policy's subject; denials and audit hits are printed to
stderr as they happen (`--json`: as the audit log's JSON records, one a line), or with
`--events FILE` written to FILE as JSON records. Never to stdout: that is the command's.
Exits with the command's exit code (2 when the policy cannot be built or loaded)."""

from __future__ import annotations

import sys
from typing import List, Optional, TextIO

import typer

from ..deploy import DeployError
from ..execute import run_command
from .common import DASH_P_HELP, EXIT_BAD_INPUT, EXIT_USAGE, guarded, select_policies
from .kernel_common import manifests_for, print_deploy_error


class _Events:
    """`--events FILE`: the event records (JSON lines) to FILE, everything else policyc says
    (notes, errors) to stderr."""

    def __init__(self, events: TextIO, err: TextIO):
        self.events, self.err = events, err

    def write(self, s: str) -> int:
        return (self.events if s.startswith("{") else self.err).write(s)

    def flush(self) -> None:
        self.events.flush()
        self.err.flush()


def run_exec(path: str | None, names: list[str] | None, argv: list[str], json_events: bool, out: TextIO,
             err: TextIO, events: str | None = None, dash_p: list[str] | None = None) -> int:
    if events is not None:
        try:
            f = open(events, "a", encoding="utf-8")
        except OSError as e:
            err.write(f"policyc: error: cannot write events to `{events}`: {e.strerror or e}\n")
            return EXIT_BAD_INPUT
        with f:
            return run_exec(path, names, argv, True, out, _Events(f, err), dash_p=dash_p)
    paths = [path] if path is not None else []
    if dash_p:
        paths, names = select_policies(paths, names, dash_p, None, err)
    if not paths:
        err.write("policyc: error: name the policy's file: -p PATH or --policy-file PATH "
                  "(with --policy NAME when it holds several)\n")
        return EXIT_USAGE
    if not argv:
        err.write("policyc: error: no command given: policyc exec -p POLICY -- CMD...\n")
        return EXIT_BAD_INPUT
    try:
        code, manifests = manifests_for(paths, names, out, err)
        if code:
            return code
        if len(manifests) != 1:
            held = " and ".join(f"`{p}`" for p in paths)
            err.write(f"policyc: error: {held} {'hold' if len(paths) > 1 else 'holds'} {len(manifests)} "
                      "policies; choose one with --policy NAME\n")
            return EXIT_BAD_INPUT
        return run_command(manifests[0], argv, err, json_events=json_events)
    except DeployError as e:
        return print_deploy_error(e, err)


def command(
    path: Optional[str] = typer.Option(None, "--policy-file", metavar="PATH", help="a .policy file, manifest or build dir"),
    name: Optional[List[str]] = typer.Option(None, "--policy", metavar="NAME", help="the policy, when PATH holds several"),
    dash_p: Optional[List[str]] = typer.Option(None, "-p", metavar="POLICY", help=DASH_P_HELP),
    json_events: bool = typer.Option(False, "--json", help="print events as JSON lines (on stderr)"),
    fmt: Optional[str] = typer.Option(None, "--format", help="text or json: how events are printed (--json is json)"),
    events: Optional[str] = typer.Option(None, "--events", metavar="FILE",
                                         help="append the events to FILE as JSON lines instead (stderr keeps "
                                              "policyc's notes; stdout is always the command's)"),
    argv: Optional[List[str]] = typer.Argument(None, metavar="-- CMD...", help="the command to run"),
) -> None:
    """Run one command under a policy, as its subject (needs BPF LSM: use `policyc vm` here)."""
    if fmt is not None and fmt not in ("text", "json"):
        sys.stderr.write(f"policyc: error: unknown format `{fmt}` (text or json)\n")
        raise typer.Exit(EXIT_USAGE)
    guarded(run_exec, path, name, list(argv or []), json_events or fmt == "json", out=sys.stdout, err=sys.stderr,
            events=events, dash_p=dash_p)
