"""What the commands that touch the kernel share: error printing and policy preparation."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TextIO

from ..deploy import DeployError, find_manifests
from .build import compile_program
from .common import EXIT_BAD_INPUT


def print_deploy_error(e: DeployError, err: TextIO) -> int:
    err.write(f"policyc: error: {e.message}\n")
    if e.detail:
        err.write("--- libbpf / verifier log ---\n" + e.detail.rstrip() + "\n---\n")
    if e.hint:
        err.write(f"  = help: {e.hint}\n")
    return EXIT_BAD_INPUT


def manifests_for(paths: list[str], names: list[str] | None, out: TextIO, err: TextIO,
                  build_dir: str | None = None) -> tuple[int, list[Path]]:
    """Build directories and manifests as they are; `.policy` files are built first (into a
    private temporary directory, or `build_dir`)."""
    built = [p for p in paths if not (Path(p).is_dir() and any(Path(p).glob("*.manifest.json")))
             and not p.endswith(".manifest.json")]
    ready = [p for p in paths if p not in built]
    manifests: list[Path] = []
    if ready:
        manifests.extend(find_manifests(ready))
    if built:
        target = Path(build_dir or tempfile.mkdtemp(prefix="policyc-"))
        code, results = compile_program(built, target, names, False, out, err, quiet=True)
        if code:
            return code, []
        manifests.extend(r.manifest_path for r in results)
    return 0, manifests
