"""`policyc load DIR|PATH... [--replace]`: attach built policies (or build .policy files
first). Checks that BPF LSM is usable before anything is loaded; a failed load prints the
verifier's log and leaves nothing attached or pinned."""

from __future__ import annotations

import sys
from typing import List, Optional, TextIO

import typer

from ..deploy import DeployError, check_kernel, load_manifest, read_manifest
from .common import EXIT_OK, guarded
from .kernel_common import manifests_for, print_deploy_error


def run_load(paths: list[str], names: list[str] | None, replace: bool, out: TextIO, err: TextIO) -> int:
    try:
        code, manifests = manifests_for(paths, names, out, err)
        if code:
            return code
        check_kernel()
        for m in manifests:
            loaded = load_manifest(m, replace=replace)
            man = read_manifest(m)
            out.write(f"loaded {loaded.name} ({man['mode']}, {len(man['rules'])} rules, "
                      f"{len(loaded.links)} hooks) pinned at {loaded.pin_dir}\n")
    except DeployError as e:
        return print_deploy_error(e, err)
    return EXIT_OK


def command(
    paths: List[str] = typer.Argument(..., metavar="DIR|PATH...", help="build directories, manifests or .policy files"),
    policy: Optional[List[str]] = typer.Option(None, "--policy", "-p", metavar="NAME", help="only these policies"),
    replace: bool = typer.Option(False, "--replace", help="replace a loaded policy of the same name"),
) -> None:
    """Load policies into the kernel (BPF LSM) and pin them under /sys/fs/bpf/policyc."""
    guarded(run_load, paths, policy, replace, out=sys.stdout, err=sys.stderr)
