"""`policyc unload NAME|--all`: detach and unpin loaded policies."""

from __future__ import annotations

import sys
from typing import List, Optional, TextIO

import typer

from ..deploy import DeployError, loaded_names, unload
from .common import EXIT_BAD_INPUT, EXIT_OK, guarded
from .kernel_common import print_deploy_error


def run_unload(names: list[str], all_: bool, out: TextIO, err: TextIO) -> int:
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
            out.write(f"unloaded {n}\n")
    except DeployError as e:
        return print_deploy_error(e, err)
    return EXIT_OK


def command(
    names: Optional[List[str]] = typer.Argument(None, metavar="NAME...", help="loaded policies to unload"),
    all_: bool = typer.Option(False, "--all", help="unload every policyc policy"),
) -> None:
    """Unload policies: their programs detach and their pins go."""
    guarded(run_unload, list(names or []), all_, out=sys.stdout, err=sys.stderr)
