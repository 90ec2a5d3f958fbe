"""`policyc unload NAME|--all [--format text|json]`: detach and unpin loaded policies."""

from __future__ import annotations

import json
import sys
from typing import List, Optional, TextIO

import typer

from ..deploy import DeployError, loaded_names, unload
from .common import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, guarded
from .kernel_common import print_deploy_error


JSON_VERSION = 1   # `version` of `unload --format json`'s object: raised when a field changes meaning


def run_unload(names: list[str], all_: bool, out: TextIO, err: TextIO, fmt: str = "text") -> int:
    """`fmt` json: `{"version": 1, "unloaded": [NAME...]}` on stdout, what was unloaded (also
    when a later name fails: the error is on stderr, the exit code 2)."""
    if fmt not in ("text", "json"):
        err.write(f"policyc: error: unknown format `{fmt}` (text or json)\n")
        return EXIT_USAGE
    done: list[str] = []
    code = _unload(names, all_, done, out if fmt == "text" else None, err)
    if fmt == "json":
        out.write(json.dumps({"version": JSON_VERSION, "unloaded": done}, indent=2) + "\n")
    return code


def _unload(names: list[str], all_: bool, done: list[str], out: TextIO | None, err: TextIO) -> int:
    try:
        loaded = loaded_names()
        targets = loaded if all_ else names
        if not targets and not all_:
            err.write("policyc: error: name a policy to unload, or use --all\n")
            return EXIT_BAD_INPUT
        for n in targets:
            if n not in loaded:
                err.write(f"policyc: error: policy `{n}` is not loaded"
                          + (f" (loaded: {', '.join(loaded)})" if loaded else "") + "\n")
                return EXIT_BAD_INPUT
            unload(n)
            done.append(n)
            if out is not None:
                out.write(f"unloaded {n}\n")
    except DeployError as e:
        return print_deploy_error(e, err)
    return EXIT_OK


def command(
    names: Optional[List[str]] = typer.Argument(None, metavar="NAME...", help="loaded policies to unload"),
    all_: bool = typer.Option(False, "--all", help="unload every policyc policy"),
    fmt: str = typer.Option("text", "--format", metavar="text|json",
                            help="text (a line per policy) or json (one document on stdout)"),
) -> None:
    """Unload policies: their programs detach and their pins go."""
    guarded(run_unload, list(names or []), all_, out=sys.stdout, err=sys.stderr, fmt=fmt)
