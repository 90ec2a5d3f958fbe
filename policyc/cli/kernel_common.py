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
    """Build directories and manifests as they are; `.policy` files are built first, as one
    program (into a private temporary directory, or `build_dir`). The result keeps the command
    line's order (the built program stands where its first source is named) and, with `-p`,
    only the named policies: the kernel's "first loaded" is the evaluator's."""
    def is_ready(p: str) -> bool:
        return p.endswith(".manifest.json") or (Path(p).is_dir() and any(Path(p).glob("*.manifest.json")))

    sources = [p for p in paths if not is_ready(p)]
    ready = {p: find_manifests([p]) for p in paths if is_ready(p)}
    source_names = names
    if names:   # a name no build directory or manifest holds is looked for in the sources
        held = {m.name.removesuffix(".manifest.json") for found in ready.values() for m in found}
        source_names = [n for n in names if n not in held]
        if source_names and not sources:
            for n in source_names:
                err.write(f"policyc: error: no policy named `{n}` in the given files\n")
            return EXIT_BAD_INPUT, []
        if not source_names:
            sources = []   # every policy named is built already
    built: list[Path] = []
    if sources:
        target = Path(build_dir or tempfile.mkdtemp(prefix="policyc-"))
        code, results = compile_program(sources, target, source_names, False, out, err, quiet=True)
        if code:
            return code, []
        built = [r.manifest_path for r in results]
    manifests: list[Path] = []
    placed = False
    for p in paths:
        if p in ready:
            found = ready[p]
            if names:
                found = [m for m in found if m.name.removesuffix(".manifest.json") in names]
            manifests.extend(found)
        elif not placed:
            manifests.extend(built)
            placed = True
    return 0, manifests
