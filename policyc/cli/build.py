"""`policyc build PATH... -o DIR [--emit-c] [--ringbuf-size SIZE]`: NAME.bpf.o and NAME.manifest.json
per policy.

Unprivileged and kernel-free; identical input gives byte-identical output. Refuses (exit 2)
programs with check errors, and rules of families the kernel backend does not enforce yet,
naming each rule's file:line:col (never a silent success).

A build directory holds the policies of its last build and no others: after a successful
build, the outputs of policies the program no longer has (a NAME.manifest.json that policyc
wrote and the NAME.bpf.o it names) are removed, so `policyc load DIR` and `load --sync DIR`
never load a deleted policy. Nothing else in the directory is touched (`prune_outputs`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional, TextIO

import typer

from .. import pipeline
from ..codegen import DEFAULT_RINGBUF_BYTES, BuildError
from ..diagnostics import Diagnostics
from .common import EXIT_BAD_INPUT, EXIT_OK, guarded, load_and_check, print_diagnostics


MIN_RINGBUF, MAX_RINGBUF = 4096, 1 << 30
_UNITS = {"": 1, "k": 1 << 10, "ki": 1 << 10, "m": 1 << 20, "mi": 1 << 20, "g": 1 << 30, "gi": 1 << 30}


def parse_size(text: str) -> int:
    """`4M`, `256K`, `65536` -> bytes; a power of two from 4 KiB to 1 GiB (the kernel's ring
    buffer is a power-of-two number of pages). ValueError with the reason otherwise."""
    t = text.strip().lower().removesuffix("b")   # 4M, 4MB, 4MiB alike
    num = t.rstrip("kmgi")
    unit = t[len(num):]
    if not num.isdigit() or unit not in _UNITS:
        raise ValueError(f"`{text}` is not a size (write it as 65536, 256K or 4M)")
    n = int(num) * _UNITS[unit]
    if n < MIN_RINGBUF or n > MAX_RINGBUF or n & (n - 1):
        raise ValueError(f"`{text}` ({n:,} bytes): the ring buffer must be a power of two from 4K to 1G")
    return n


def compile_program(paths: list[str], out_dir: Path, names: list[str] | None, emit_c: bool,
                    out: TextIO, err: TextIO, quiet: bool = False, kernel: str | None = None,
                    ringbuf_bytes: int = DEFAULT_RINGBUF_BYTES) -> tuple[int, list]:
    """The pipeline's front end (the checks included), then its build step for each policy
    chosen, in program order; (exit code, build results)."""
    diags = Diagnostics()
    front, ok = load_and_check(paths, diags, err, kernel)
    if not ok:
        return EXIT_BAD_INPUT, []
    policies = pipeline.select(front, names)
    print_diagnostics(diags, "text", err, err, front.program)
    if diags.has_errors:
        return EXIT_BAD_INPUT, []
    results = []
    for p in policies:
        try:
            res = pipeline.build(front, p, out_dir, emit_c=emit_c, ringbuf_bytes=ringbuf_bytes)
        except BuildError as e:
            err.write(f"policyc: error: {e.message}\n")
            if e.detail:
                err.write(e.detail + "\n")
            if e.hint:
                err.write(f"  = help: {e.hint}\n")
            return EXIT_BAD_INPUT, results
        results.append(res)
        if not quiet:
            out.write(f"built {res.object_path} and {res.manifest_path.name} ({len(p.rules)} rules, "
                      f"hooks: {', '.join(res.hooks)})\n")
    # the policies of the program stay (with -p, the others of the program were built before
    # and are kept); outputs of policies the program no longer has go
    keep = {p.name for p in front.program.policies}
    for path in prune_outputs(out_dir, keep):
        if not quiet:
            out.write(f"removed {path} (policy no longer in the program)\n")
    return EXIT_OK, results


def _owned_outputs(manifest: Path) -> list[Path] | None:
    """The files of one earlier build output: [NAME.manifest.json, NAME.bpf.o] when MANIFEST
    is one policyc wrote (format 1, naming its own policy NAME and the object NAME.bpf.o);
    None for anything else, which is never removed."""
    name = manifest.name.removesuffix(".manifest.json")
    try:
        m = json.loads(manifest.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(m, dict) or m.get("format") != 1 or m.get("policy") != name \
            or m.get("object") != f"{name}.bpf.o" or "policyc_version" not in m:
        return None
    obj = manifest.parent / f"{name}.bpf.o"
    return [manifest] + ([obj] if obj.is_file() and not obj.is_symlink() else [])


def stale_outputs(out_dir: Path, keep: set[str]) -> list[Path]:
    """Files of policies not in KEEP that an earlier build wrote to OUT_DIR: each manifest
    policyc wrote and the object it names (see `_owned_outputs`), in name order."""
    out: list[Path] = []
    try:
        manifests = sorted(Path(out_dir).glob("*.manifest.json"))
    except OSError:
        return out
    for man in manifests:
        if man.name.removesuffix(".manifest.json") in keep or not man.is_file() or man.is_symlink():
            continue
        owned = _owned_outputs(man)
        if owned:
            out.extend(owned)
    return out


def prune_outputs(out_dir: Path, keep: set[str]) -> list[Path]:
    """Remove `stale_outputs(out_dir, keep)`; the paths removed. The object goes before its
    manifest: a manifest never names a missing object for long, and an interrupted prune
    leaves a manifest that the next build removes."""
    removed = []
    for path in sorted(stale_outputs(out_dir, keep), key=lambda p: p.name.endswith(".manifest.json")):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def run_build(paths: list[str], out_dir: str, names: list[str] | None, emit_c: bool, out: TextIO, err: TextIO,
              kernel: str | None = None, ringbuf_size: str | None = None) -> int:
    ringbuf_bytes = DEFAULT_RINGBUF_BYTES
    if ringbuf_size is not None:
        try:
            ringbuf_bytes = parse_size(ringbuf_size)
        except ValueError as e:
            err.write(f"policyc: error: --ringbuf-size: {e}\n")
            return EXIT_BAD_INPUT
    code, _ = compile_program(paths, Path(out_dir), names, emit_c, out, err, kernel=kernel,
                              ringbuf_bytes=ringbuf_bytes)
    return code


def command(
    paths: List[str] = typer.Argument(..., metavar="PATH...", help="policy files or directories of them"),
    out_dir: str = typer.Option(..., "-o", "--output", metavar="DIR", help="where NAME.bpf.o and NAME.manifest.json go"),
    policy: Optional[List[str]] = typer.Option(None, "--policy", "-p", metavar="NAME", help="build only these policies"),
    emit_c: bool = typer.Option(False, "--emit-c", help="also keep the generated C as NAME.bpf.c"),
    kernel: Optional[str] = typer.Option(None, "--kernel", metavar="6.1|6.12|PATH",
                                         help="refuse rules this kernel cannot enforce (its hooks and helpers)"),
    ringbuf_size: Optional[str] = typer.Option(None, "--ringbuf-size", metavar="SIZE",
                                               help="the policy's event ring buffer: a power of two, 4K to 1G "
                                                    "(default 4M)"),
) -> None:
    """Compile policies to BPF LSM objects and manifests (no kernel, no privileges needed)."""
    guarded(run_build, paths, out_dir, policy, emit_c, out=sys.stdout, err=sys.stderr, kernel=kernel,
            ringbuf_size=ringbuf_size)
