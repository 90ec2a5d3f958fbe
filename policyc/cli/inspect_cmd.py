"""`policyc inspect PATH... [--no-maps]`: a build's manifest, indented, with its maps' bytes.

The maps' bytes and (manifest format 3) the rule list are in NAME.maps beside the manifest
(policyc/mapsfile.py), not in it; this prints the manifest as indented JSON (keys sorted) with
each map's `data`, the hex of its key+value pairs, and its `rules`, as manifests of format 1
held them: `policyc inspect DIR/NAME.manifest.json | jq` shows what `jq . DIR/NAME.manifest.json`
always did. --no-maps leaves `data` out (the rules are still read from the maps file).

PATH is a NAME.manifest.json, a build directory (each of its manifests, in program order: one
JSON document after another, as jq reads them), DIR/NAME or NAME (NAME.manifest.json there,
else the installed build's, /var/lib/policyc/NAME.manifest.json). Unprivileged; no kernel.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, TextIO

import typer

from .. import mapsfile
from .common import EXIT_BAD_INPUT, EXIT_OK, guarded

SUFFIX = ".manifest.json"
INSTALLED = "/var/lib/policyc"   # policyc/install.py BUILD (not imported: it is all this needs)


class InspectError(Exception):
    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message, self.hint = message, hint


def _order(path: Path) -> tuple:
    try:
        order = json.loads(path.read_text()).get("program_order")
    except (OSError, ValueError, AttributeError):
        order = None
    return (order if isinstance(order, int) else 1 << 30, path.name)


def resolve(arg: str) -> list[Path]:
    """The manifests PATH names (see the module's docstring)."""
    p = Path(arg)
    if p.is_dir():
        found = sorted(p.glob(f"*{SUFFIX}"), key=_order)
        if not found:
            raise InspectError(f"no `*{SUFFIX}` in `{arg}`", hint="run `policyc build POLICY -o DIR` first")
        return found
    if arg.endswith(SUFFIX):
        return [p]
    for cand in (Path(arg + SUFFIX), *((Path(INSTALLED) / f"{arg}{SUFFIX}",) if "/" not in arg else ())):
        if cand.is_file():
            return [cand]
    raise InspectError(f"`{arg}` is not a build directory, a manifest or a built policy's name "
                       f"(no `{arg}{SUFFIX}`" + (f" here or in {INSTALLED}" if "/" not in arg else "") + ")")


def inspect_manifest(path: Path, maps: bool = True, err: TextIO | None = None) -> dict:
    """The manifest at PATH, with every map's `data` (MAPS) or without any (not MAPS), and its
    rules. Without MAPS a maps file that cannot be read leaves the manifest as stored (its
    `rules_at`), said on ERR."""
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InspectError(f"cannot read manifest `{path}`: {getattr(e, 'strerror', None) or e}")
    if not isinstance(m, dict) or m.get("format") not in mapsfile.MANIFEST_FORMATS \
            or not isinstance(m.get("maps", {}), dict):
        fmt = m.get("format") if isinstance(m, dict) else None
        raise InspectError(f"`{path}` is not a policyc manifest (format {fmt!r}; this policyc reads "
                           f"{' and '.join(map(str, mapsfile.MANIFEST_FORMATS))})")
    if not maps:
        m = {**m, "maps": {n: {k: v for k, v in s.items() if k != "data"} for n, s in m.get("maps", {}).items()}}
        if "rules" in m or mapsfile.RULES_AT not in m:
            return m
        try:   # the rules still shown: in format 3 they are in the maps file
            return {**m, "rules": mapsfile.rules_of(m, mapsfile.read_payload(m, path.parent))}
        except mapsfile.MapsFileError as e:
            if err is not None:
                err.write(f"policyc: warning: the rules of `{path}` are not shown: {e}\n")
            return m
    try:
        return mapsfile.with_data(m, path.parent)
    except mapsfile.MapsFileError as e:
        raise InspectError(str(e), hint="--no-maps shows the manifest without the maps' bytes and rules")
    except (KeyError, TypeError, ValueError) as e:
        raise InspectError(f"the maps of `{path}` cannot be read: {type(e).__name__}: {e}")


def run_inspect(paths: list[str], maps: bool, out: TextIO, err: TextIO) -> int:
    try:
        manifests = [m for p in paths for m in resolve(p)]
        docs = [inspect_manifest(m, maps, err) for m in manifests]
    except InspectError as e:
        err.write(f"policyc: error: {e.message}\n")
        if e.hint:
            err.write(f"  = help: {e.hint}\n")
        return EXIT_BAD_INPUT
    for d in docs:
        out.write(json.dumps(d, indent=2, sort_keys=True) + "\n")
    return EXIT_OK


def command(
    paths: List[str] = typer.Argument(..., metavar="PATH...",
                                      help="NAME.manifest.json, a build directory, DIR/NAME or NAME"),
    no_maps: bool = typer.Option(False, "--no-maps", help="leave out the maps' bytes (`data`)"),
) -> None:
    """Show a build's manifest as indented JSON, its maps' bytes as hex (`data`)."""
    guarded(run_inspect, list(paths), not no_maps, out=sys.stdout, err=sys.stderr)
