"""`policyc build PATH... -o DIR [-p POLICY] [--emit-c] [--ringbuf-size SIZE] [--format text|json]`:
NAME.bpf.o, NAME.manifest.json and NAME.maps (the maps' bytes) per policy.

Unprivileged and kernel-free; identical input gives byte-identical output. Refuses (exit 2)
programs with check errors, and rules of families the kernel backend does not enforce yet,
naming each rule's file:line:col (never a silent success).

A build directory holds the policies of its last build and no others: after a successful
build, the outputs of policies the program no longer has (a NAME.manifest.json that policyc
wrote and the NAME.bpf.o and NAME.maps it names) are removed, so `policyc load DIR` and
`load --sync DIR` never load a deleted policy. Nothing else in the directory is touched (`prune_outputs`).

An unchanged build is not done again (`up_to_date`): each manifest notes (its `build` field)
a key of what the build was given besides the files, the policies of the program, the paths
whose absence it relied on and the diagnostics it printed. When every policy asked for has
a manifest with the same key, its `inputs` files hash as recorded, the paths are still
absent and its object and maps file are the ones it names, the outputs are left as they are (nothing is
parsed or lowered), the diagnostics are printed again and each policy is said `unchanged`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import List, Optional, TextIO

import typer

# Only what the unchanged-build short cut needs is imported here: the front end and the code
# generator (lark, jinja2) are imported when a build is done (an unchanged rebuild stays near
# the interpreter's start-up).
from .. import __version__
from .. import mapsfile
from ..abi import DEFAULT_RINGBUF_BYTES
from ..diagnostics import Diagnostics
from .common import (DASH_P_HELP, EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, NO_INPUT, guarded, load_and_check,
                     print_diagnostics, select_policies)


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
                    ringbuf_bytes: int = DEFAULT_RINGBUF_BYTES, record: bool = False,
                    records: list | None = None) -> tuple[int, list]:
    """The pipeline's front end (the checks included), then its build step for each policy
    chosen, in program order; (exit code, build results). With `record`, each manifest notes
    what `up_to_date` needs to know the next build of the same inputs unchanged. With
    `records` (`--format json`), what was built and removed is appended there, not said."""
    from .. import pipeline
    from ..build_error import BuildError

    diags = Diagnostics()
    front, ok = load_and_check(paths, diags, err, kernel)
    if not ok:
        return EXIT_BAD_INPUT, []
    policies = pipeline.select(front, names)
    print_diagnostics(diags, "text", err, err, front.program)
    if diags.has_errors:
        return EXIT_BAD_INPUT, []
    build_record = None
    expanded = command_files(paths) if record else None
    if expanded is not None:
        shown = io.StringIO()   # the diagnostics as printed (without colour), printed again by the short cut
        if diags.items:
            print_diagnostics(diags, "text", shown, shown, front.program)
        build_record = {"key": build_key(expanded, kernel, ringbuf_bytes),
                        "policies": [p.name for p in front.program.policies],
                        "absent": absent_paths(front.program.sources),
                        "diagnostics": shown.getvalue()}
    results = []
    for p in policies:
        try:
            res = pipeline.build(front, p, out_dir, emit_c=emit_c, ringbuf_bytes=ringbuf_bytes,
                                 build_record=build_record)
        except BuildError as e:
            err.write(f"policyc: error: {e.message}\n")
            if e.detail:
                err.write(e.detail + "\n")
            if e.hint:
                err.write(f"  = help: {e.hint}\n")
            return EXIT_BAD_INPUT, results
        results.append(res)
        if records is not None:
            records.append(_record("built", p.name, res.object_path, res.manifest_path, len(p.rules), res.hooks))
        elif not quiet:
            out.write(f"built {res.object_path} and {res.manifest_path.name} ({len(p.rules)} rules, "
                      f"hooks: {', '.join(res.hooks)})\n")
    # the policies of the program stay (with -p, the others of the program were built before
    # and are kept); outputs of policies the program no longer has go
    keep = {p.name for p in front.program.policies}
    for path in prune_outputs(out_dir, keep):
        if records is not None:
            records.append({"status": "removed", "path": str(path)})
        elif not quiet:
            out.write(f"removed {path} (policy no longer in the program)\n")
    return EXIT_OK, results


def _record(status: str, name: str, obj: Path, manifest: Path, rules: int, hooks) -> dict:
    """One policy of `build --format json`'s `policies`."""
    return {"status": status, "policy": name, "object": str(obj), "manifest": str(manifest),
            "rules": rules, "hooks": list(hooks)}


def _owned_outputs(manifest: Path) -> list[Path] | None:
    """The files of one earlier build output: [NAME.manifest.json, NAME.bpf.o, NAME.maps]
    when MANIFEST is one policyc wrote (a format it knows, naming its own policy NAME, the
    object NAME.bpf.o and, from format 2 on, the maps file NAME.maps); None for anything else,
    which is never removed."""
    name = manifest.name.removesuffix(".manifest.json")
    try:
        m = json.loads(manifest.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(m, dict) or m.get("format") not in mapsfile.MANIFEST_FORMATS or m.get("policy") != name \
            or m.get("object") != f"{name}.bpf.o" or "policyc_version" not in m:
        return None
    owned = [manifest]
    for f in [f"{name}.bpf.o"] + ([m["maps_file"]] if m.get("maps_file") == mapsfile.file_name(name) else []):
        path = manifest.parent / f
        if path.is_file() and not path.is_symlink():
            owned.append(path)
    return owned


def stale_outputs(out_dir: Path, keep: set[str]) -> list[Path]:
    """Files of policies not in KEEP that an earlier build wrote to OUT_DIR: each manifest
    policyc wrote and the object and maps file it names (see `_owned_outputs`), in name order."""
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
    """Remove `stale_outputs(out_dir, keep)`; the paths removed. The object and the maps file
    go before their manifest: a manifest never names a missing file for long, and an
    interrupted prune leaves a manifest that the next build removes."""
    removed = []
    for path in sorted(stale_outputs(out_dir, keep), key=lambda p: p.name.endswith(".manifest.json")):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def run_build(paths: list[str], out_dir: str, names: list[str] | None, emit_c: bool, out: TextIO, err: TextIO,
              kernel: str | None = None, ringbuf_size: str | None = None, dash_p: list[str] | None = None,
              policy_files: list[str] | None = None, fmt: str = "text") -> int:
    """`policyc build`. `fmt` json: one JSON document on stdout, `{"version": 1, "policies":
    [...], "removed": [...]}` (JSON_VERSION), each policy built or found unchanged with its
    object, manifest, rules and hooks; diagnostics stay on stderr as text."""
    if fmt not in ("text", "json"):
        err.write(f"policyc: error: unknown format `{fmt}` (text or json)\n")
        return EXIT_USAGE
    if fmt == "json":
        records: list[dict] = []
        code = _run_build(paths, out_dir, names, emit_c, out, err, kernel=kernel, ringbuf_size=ringbuf_size,
                         dash_p=dash_p, policy_files=policy_files, records=records)
        if code != EXIT_USAGE:
            out.write(json.dumps({"version": JSON_VERSION,
                                  "policies": [r for r in records if r["status"] != "removed"],
                                  "removed": [r["path"] for r in records if r["status"] == "removed"]},
                                 indent=2) + "\n")
        return code
    return _run_build(paths, out_dir, names, emit_c, out, err, kernel=kernel, ringbuf_size=ringbuf_size,
                     dash_p=dash_p, policy_files=policy_files, records=None)


JSON_VERSION = 1   # `version` of `build --format json`'s object: raised when a field changes meaning


def _run_build(paths: list[str], out_dir: str, names: list[str] | None, emit_c: bool, out: TextIO, err: TextIO,
               kernel: str | None = None, ringbuf_size: str | None = None, dash_p: list[str] | None = None,
               policy_files: list[str] | None = None, records: list | None = None) -> int:
    if dash_p or policy_files:
        paths, names = select_policies(list(paths), names, dash_p, policy_files, err)
    if not paths:
        err.write(f"policyc: error: {NO_INPUT}\n")
        return EXIT_USAGE
    ringbuf_bytes = DEFAULT_RINGBUF_BYTES
    if ringbuf_size is not None:
        try:
            ringbuf_bytes = parse_size(ringbuf_size)
        except ValueError as e:
            err.write(f"policyc: error: --ringbuf-size: {e}\n")
            return EXIT_BAD_INPUT
    if not emit_c:   # --emit-c writes the C: always a build
        code = up_to_date(paths, Path(out_dir), names, out, err, kernel=kernel, ringbuf_bytes=ringbuf_bytes,
                          records=records)
        if code is not None:
            return code
    code, _ = compile_program(paths, Path(out_dir), names, emit_c, out, err, kernel=kernel,
                              ringbuf_bytes=ringbuf_bytes, record=True, records=records)
    return code


# ---- the unchanged-build short cut ---------------------------------------------------------

BUILD_RECORD_FORMAT = 1
_TOOL_SUFFIXES = (".py", ".lark", ".j2", ".h", ".c", ".json")


def command_files(paths: list[str]) -> list[str] | None:
    """The files the front end reads first, as policyc/lower/sources.py `expand_paths` finds
    them (files as given; a directory's `.policy` files, sorted), without importing the front
    end; None when the build must not be short cut: standard input (`-`), or a directory
    without policy files (an error the build reports)."""
    out: list[str] = []
    for p in paths:
        if p == "-":
            return None
        if os.path.isdir(p):
            found = sorted(str(f) for f in Path(p).rglob("*") if f.is_file() and f.name.endswith(".policy"))
            if not found:
                return None
            out.extend(found)
        else:
            out.append(p)
    return out


_TOOLS_DIGEST: str | None = None


def tool_roots() -> list[Path]:
    """The directories of policyc's own files: the package, and the grammar, templates and
    kernel facts where they are not inside it (a source checkout)."""
    from ..resources import NAMES, resource_dir

    package = Path(__file__).resolve().parents[1]
    return [package] + [d for d in (resource_dir(n).resolve() for n in NAMES) if package not in d.parents]


def tools_digest() -> str:
    """A digest of policyc itself: its version and every source and data file it builds
    with under `tool_roots` (the package's modules, the grammar, the templates and ABI
    headers, the kernel facts). A changed template, header or module, version bumped or not,
    is a new digest."""
    global _TOOLS_DIGEST
    if _TOOLS_DIGEST is None:
        h = hashlib.sha256(f"policyc {__version__}\0".encode())
        for root in tool_roots():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
                for f in sorted(filenames):
                    if f.endswith(_TOOL_SUFFIXES):
                        path = os.path.join(dirpath, f)
                        with open(path, "rb") as fh:
                            h.update(os.path.relpath(path, root).encode() + b"\0" + fh.read() + b"\0")
        _TOOLS_DIGEST = h.hexdigest()
    return _TOOLS_DIGEST


def build_key(files: list[str], kernel: str | None, ringbuf_bytes: int) -> str:
    """The key of a build besides its files' contents: policyc (`tools_digest`), the files
    named on the command line in order, and the options that change the outputs (--kernel,
    with the contents of a facts or BTF file it names; --ringbuf-size). `-p` is not in it:
    each policy's manifest is checked on its own."""
    kernel_file = None
    if kernel is not None and os.path.isfile(kernel):
        with open(kernel, "rb") as fh:
            kernel_file = hashlib.sha256(fh.read()).hexdigest()
    text = json.dumps({"format": BUILD_RECORD_FORMAT, "policyc": tools_digest(), "files": files,
                       "kernel": kernel, "kernel_file": kernel_file, "ringbuf_bytes": ringbuf_bytes},
                      sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# `include? "PATH"`: the one token, then blanks and comments, then the string (grammar/policy.lark)
_OPTIONAL_INCLUDE = re.compile(r'include\?(?:\s|#[^\n]*)*("(?:[^"\\\n]|\\.)*")')


def absent_paths(sources: dict[str, str]) -> list[str]:
    """The paths whose absence the front end relied on for a program read from `sources`
    (normalised path -> text): the file an `include?` skipped, the NAME.policy.test beside a
    NAME.policy that has none, the NAME.policy beside a NAME.policy.test named alone. Should
    one appear, the program may change. An over-approximation (an `include?` in a comment or
    a string counts too) only costs a rebuild."""
    from ..parse import unescape

    absent = set()
    for key, text in sources.items():
        if key.endswith(".policy") and key + ".test" not in sources:
            absent.add(key + ".test")
        if key.endswith(".policy.test") and key[:-len(".test")] not in sources:
            absent.add(key[:-len(".test")])
        if "include?" in text:
            for m in _OPTIONAL_INCLUDE.finditer(text):
                target = os.path.normpath(os.path.join(os.path.dirname(key), unescape(m.group(1))))
                if target not in sources:
                    absent.add(target)
    return sorted(absent)


def _file_digest(path: str) -> str | None:
    """sha256 of a regular file's text as the front end reads it (a UTF-8 byte order mark is
    not part of it), in the manifest's `inputs` form; None when it is not a readable regular
    file (a FIFO is never opened for reading)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _still_absent(path: str) -> bool:
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def _read_manifest(path: Path) -> dict | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        import orjson

        m = orjson.loads(data)
    except ImportError:
        try:
            m = json.loads(data)
        except ValueError:
            return None
    except ValueError:   # orjson.JSONDecodeError is a ValueError
        return None
    return m if isinstance(m, dict) else None


def up_to_date(paths: list[str], out_dir: Path, names: list[str] | None, out: TextIO, err: TextIO, *,
               kernel: str | None = None, ringbuf_bytes: int = DEFAULT_RINGBUF_BYTES,
               quiet: bool = False, records: list | None = None) -> int | None:
    """The short cut of an unchanged build: EXIT_OK, the outputs untouched, when OUT_DIR holds
    the outputs of a build of the same inputs; None (build) otherwise. Unchanged means, for
    every policy asked for (`names`, or every policy of the recorded program): its manifest's
    `build` note has this build's `build_key` (policyc's own files and version, the files
    named, the options), every file of its `inputs` hashes as recorded (so every include is
    the same: an include's target depends only on the including file's text), every path in
    `absent` is still absent, and its object and its maps file (NAME.maps) are there with the
    recorded sha256s."""
    files = command_files(paths)
    if files is None:
        return None
    key = build_key(files, kernel, ringbuf_bytes)
    manifests: dict[str, dict] = {}

    def manifest(name: str) -> dict | None:
        if name not in manifests:
            m = _read_manifest(out_dir / f"{name}.manifest.json")
            b = m.get("build") if m is not None else None
            ok = (isinstance(b, dict) and b.get("key") == key and m.get("policy") == name
                  and m.get("format") == mapsfile.MANIFEST_FORMAT and m.get("policyc_version") == __version__
                  and m.get("object") == f"{name}.bpf.o" and m.get("maps_file") == mapsfile.file_name(name)
                  and isinstance(m.get("inputs"), dict)
                  and isinstance(b.get("policies"), list) and isinstance(b.get("absent"), list))
            manifests[name] = m if ok else None
        return manifests[name]

    if names:
        first = manifest(names[0])
    else:   # the recorded program's policies: found in any manifest of this build
        first = None
        try:
            candidates = sorted(out_dir.glob("*.manifest.json"))
        except OSError:
            return None
        for path in candidates:
            first = manifest(path.name.removesuffix(".manifest.json"))
            if first is not None:
                break
    if first is None:
        return None
    program = first["build"]["policies"]
    wanted = set(names) if names else set(program)
    if not wanted <= set(program):
        return None   # a name the program does not have: the build says so
    digests: dict[str, str | None] = {}
    chosen = [n for n in program if n in wanted]
    for name in chosen:
        m = manifest(name)
        if m is None or m["build"]["policies"] != program:
            return None
        if not all(os.path.normpath(f) in m["inputs"] for f in files):
            return None   # a file named (found in a directory) that the recorded build did not read
        for path, digest in m["inputs"].items():
            if path not in digests:
                digests[path] = _file_digest(path)
            if digests[path] != digest:
                return None
        if not all(_still_absent(p) for p in m["build"]["absent"]):
            return None
        for f, digest in ((m["object"], m.get("object_sha256")), (m["maps_file"], m.get("maps_sha256"))):
            path = out_dir / f
            try:
                if path.is_symlink() or "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                    return None
            except OSError:
                return None
    err.write(first["build"].get("diagnostics") or "")
    for name in chosen:
        m = manifests[name]
        if records is not None:
            records.append(_record("unchanged", name, out_dir / m["object"], out_dir / f"{name}.manifest.json",
                                   mapsfile.rule_count(m), m.get("hooks") or []))
        elif not quiet:
            out.write(f"unchanged {out_dir / m['object']} and {name}.manifest.json ({mapsfile.rule_count(m)} "
                      f"rules, hooks: {', '.join(m.get('hooks') or [])})\n")
    for path in prune_outputs(out_dir, set(program)):
        if records is not None:
            records.append({"status": "removed", "path": str(path)})
        elif not quiet:
            out.write(f"removed {path} (policy no longer in the program)\n")
    return EXIT_OK


def command(
    paths: Optional[List[str]] = typer.Argument(None, metavar="PATH...", help="policy files or directories of them"),
    out_dir: str = typer.Option(..., "-o", "--output", metavar="DIR", help="where NAME.bpf.o and NAME.manifest.json go"),
    policy: Optional[List[str]] = typer.Option(None, "--policy", metavar="NAME", help="build only these policies"),
    dash_p: Optional[List[str]] = typer.Option(None, "-p", metavar="POLICY", help=DASH_P_HELP),
    policy_files: Optional[List[str]] = typer.Option(None, "--policy-file", metavar="PATH",
                                                     help="one more policy file or directory (as PATH)"),
    emit_c: bool = typer.Option(False, "--emit-c", help="also keep the generated C as NAME.bpf.c"),
    fmt: str = typer.Option("text", "--format", metavar="text|json",
                            help="text (a line per policy) or json (one document on stdout)"),
    kernel: Optional[str] = typer.Option(None, "--kernel", metavar="6.1|6.12|PATH",
                                         help="refuse rules this kernel cannot enforce (its hooks and helpers)"),
    ringbuf_size: Optional[str] = typer.Option(None, "--ringbuf-size", metavar="SIZE",
                                               help="the policy's event ring buffer: a power of two, 4K to 1G "
                                                    "(default 4M)"),
) -> None:
    """Compile policies to BPF LSM objects and manifests (no kernel, no privileges needed)."""
    guarded(run_build, list(paths or []), out_dir, policy, emit_c, out=sys.stdout, err=sys.stderr, kernel=kernel,
            ringbuf_size=ringbuf_size, dash_p=dash_p, policy_files=policy_files, fmt=fmt)
