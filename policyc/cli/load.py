"""`policyc load DIR|PATH... [--replace]`: attach built policies (or build .policy files
first). Checks that BPF LSM is usable before anything is loaded; a failed load prints the
verifier's log and leaves nothing of that policy attached or pinned (policies loaded before
it stay).

`policyc load --sync DIR [--prune]`: make the kernel match build directory DIR (policyc/sync.py):
load what is new, replace what changed without a gap, leave what is unchanged, and with
--prune unload what DIR no longer has. It keeps going past a policy that fails (reported on
stderr with its reason) and then exits 1; what policyc.service runs at boot."""

from __future__ import annotations

import sys
from typing import List, Optional, TextIO

import typer

from ..deploy import DeployError, check_kernel, load_manifest, read_manifest
from .common import EXIT_BAD_INPUT, EXIT_OK, guarded
from .kernel_common import manifests_for, print_deploy_error


def run_load(paths: list[str], names: list[str] | None, replace: bool, out: TextIO, err: TextIO,
             sync: str | None = None, prune: bool = False) -> int:
    if sync is not None:
        problem = ("give either --sync DIR or DIR|PATH..., not both" if paths else
                   "--sync loads every policy of DIR: -p does not apply" if names else
                   "--sync replaces changed policies itself: drop --replace" if replace else None)
        if problem:
            err.write(f"policyc: error: {problem}\n")
            return EXIT_BAD_INPUT
        from ..sync import sync as run_sync

        try:
            return run_sync(sync, prune, out, err)
        except DeployError as e:
            return print_deploy_error(e, err)
    if prune:
        err.write("policyc: error: --prune goes with --sync DIR\n")
        return EXIT_BAD_INPUT
    if not paths:
        err.write("policyc: error: name build directories, manifests or .policy files (or --sync DIR)\n")
        return EXIT_BAD_INPUT
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
    paths: Optional[List[str]] = typer.Argument(None, metavar="DIR|PATH...",
                                                help="build directories, manifests or .policy files"),
    policy: Optional[List[str]] = typer.Option(None, "--policy", "-p", metavar="NAME", help="only these policies"),
    replace: bool = typer.Option(False, "--replace", help="replace a loaded policy of the same name"),
    sync: Optional[str] = typer.Option(None, "--sync", metavar="DIR",
                                       help="make the kernel match build directory DIR: load new policies, "
                                            "replace changed ones without a gap, leave unchanged ones; keeps "
                                            "going past failures (exit 1 if any)"),
    prune: bool = typer.Option(False, "--prune", help="with --sync: unload loaded policies DIR does not have"),
) -> None:
    """Load policies into the kernel (BPF LSM) and pin them under /sys/fs/bpf/policyc."""
    guarded(run_load, list(paths or []), policy, replace, out=sys.stdout, err=sys.stderr, sync=sync, prune=prune)
