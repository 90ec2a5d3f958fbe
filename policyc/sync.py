"""`policyc load --sync DIR [--prune]`: make the kernel hold exactly what a build directory holds.

Per policy of DIR (in program order, as `policyc load DIR`):

    loaded      not loaded yet: loaded
    replaced    loaded, but what was loaded is not what DIR holds: replaced without a gap
                (deploy.load_manifest(replace=True): the new version attaches before the old
                lets go; a failed replace leaves the old version enforcing)
    unchanged   loaded from the same bytes: not touched (its counters and ring buffer go on)
    failed      the manifest cannot be read, its object is missing or is not the object the
                manifest was built with, or the kernel refused it: said on stderr with the
                reason; the others are still loaded, and the command exits 1

and per policy loaded but not in DIR: `unloaded` with --prune, else `kept`. Sessions of
`policyc exec` and `policyc test --kernel` (loaded under a private name, `POLICY-exec-PID`)
are never pruned: they unload themselves when their command ends.

"The same": the load record (deploy.load_info: `state_dir()/NAME.load.json`, written by every
load) holds the sha256 of the object that was loaded and the manifest's digest (sha256 of its
canonical JSON less the provenance fields `inputs` and `program_order`, which change for every
policy of a program when one of its files changes: deploy.manifest_digest); DIR's are computed
now. Both count: rules are map data in the manifest, and a rule change leaves the object
(which depends only on the hook families) byte-identical; rule locations are in the manifest
too, and audit records name them. A policy loaded without a record (by an older policyc) is
replaced: what it runs is unknown. Builds are reproducible (identical sources give identical
bytes), so rebuilding unchanged sources changes nothing.

Sync always keeps going past a failure: at boot (policyc.service) one bad policy must not
keep the others out. Planning (`plan`) is pure; `apply` does the kernel work.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from . import deploy
from . import mapsfile

LOAD, REPLACE, UNCHANGED, UNLOAD, KEEP, FAIL = "load", "replace", "unchanged", "unload", "keep", "fail"


@dataclass(frozen=True)
class Wanted:
    """One policy of the build directory."""

    name: str
    manifest: Path
    manifest_digest: str | None = None
    object_sha256: str | None = None
    error: str | None = None       # why it cannot be loaded (found before any kernel work)


@dataclass(frozen=True)
class Present:
    """One policy loaded now (a directory under the pin root)."""

    name: str
    manifest_digest: str | None = None   # from its load record; None: no record
    object_sha256: str | None = None
    session: bool = False                # a `policyc exec` / `test --kernel` session
    pins_ok: bool = True                 # its links directory holds at least one link


@dataclass
class Step:
    action: str
    name: str
    manifest: Path | None = None
    reason: str = ""


@dataclass
class Outcome:
    counts: dict[str, int] = field(default_factory=dict)
    code: int = 0


# ---- what DIR holds ------------------------------------------------------------------------------

def wanted_in(build_dir: Path) -> list[Wanted]:
    """The policies of a build directory, in program order (deploy.find_manifests' order), each
    with the hashes of its manifest and object, or the reason it cannot be loaded."""
    out: list[Wanted] = []
    seen: set[str] = set()
    manifests = sorted(Path(build_dir).glob("*.manifest.json"), key=deploy._program_order)
    for man in manifests:
        stem = man.name.removesuffix(".manifest.json")
        try:
            raw = man.read_bytes()
            m = json.loads(raw)
        except (OSError, ValueError) as e:
            out.append(Wanted(stem, man, error=f"cannot read manifest `{man}`: {e}"))
            continue
        if not isinstance(m, dict) or m.get("format") not in mapsfile.MANIFEST_FORMATS \
                or not isinstance(m.get("policy"), str) or not isinstance(m.get("object"), str):
            out.append(Wanted(stem, man, error=f"`{man}` is not a policyc manifest (format "
                                               f"{' or '.join(map(str, mapsfile.MANIFEST_FORMATS))})"))
            continue
        name = m["policy"]
        if name in seen:
            out.append(Wanted(name, man, error=f"a second manifest for policy `{name}` (`{man.name}`)"))
            continue
        seen.add(name)
        obj = man.parent / m["object"]
        try:
            obj_sha = deploy.file_sha256(obj)
        except OSError as e:
            out.append(Wanted(name, man, error=f"object `{obj}` named by `{man}` cannot be read: "
                                                f"{e.strerror or e}"))
            continue
        built = m.get("object_sha256")
        if built is not None and built != obj_sha:
            out.append(Wanted(name, man, error=f"object `{obj}` is not the one `{man.name}` was built with "
                                                f"(its sha256 differs from the manifest's object_sha256): "
                                                "rebuild the directory"))
            continue
        if mapsfile.has_file(m):
            # the maps' bytes (format 2): the manifest's digest holds their sha256, so a load of
            # this manifest puts in these bytes or fails; a file not matching fails here instead
            try:
                deploy.read_maps(m, man.parent)
            except deploy.DeployError as e:
                out.append(Wanted(name, man, error=f"{e.message}: rebuild the directory"))
                continue
        out.append(Wanted(name, man, deploy.manifest_digest(m), obj_sha))
    return out


# ---- what the kernel holds -----------------------------------------------------------------------

def _pins_ok(name: str) -> bool:
    try:
        return bool(os.listdir(os.path.join(deploy.PIN_ROOT, name, "links")))
    except OSError:
        return False


def present_now() -> list[Present]:
    """The loaded policies, each with what its load record says was loaded."""
    out = []
    for name in deploy.loaded_names():
        info = deploy.load_info(name) or {}
        m = deploy.loaded_manifest(name)
        session = isinstance(m, dict) and m.get("policy") not in (None, name)
        out.append(Present(name, info.get("manifest_digest"), info.get("object_sha256"), session,
                           _pins_ok(name)))
    return out


# ---- the plan ------------------------------------------------------------------------------------

def plan(wanted: list[Wanted], present: list[Present], prune: bool) -> list[Step]:
    """What sync does, in the order it does it: DIR's policies in program order, then the
    loaded ones DIR does not have (unloads come last: a policy renamed in DIR has its new
    name enforcing before the old one goes)."""
    here = {p.name: p for p in present}
    steps: list[Step] = []
    names = set()
    for w in wanted:
        names.add(w.name)
        if w.error is not None:
            steps.append(Step(FAIL, w.name, w.manifest, w.error))
            continue
        p = here.get(w.name)
        if p is None:
            steps.append(Step(LOAD, w.name, w.manifest))
        elif p.manifest_digest is None or p.object_sha256 is None:
            steps.append(Step(REPLACE, w.name, w.manifest, "no load record: loaded by an earlier policyc"))
        elif not p.pins_ok:
            steps.append(Step(REPLACE, w.name, w.manifest, "its pins are incomplete"))
        elif p.object_sha256 != w.object_sha256:
            steps.append(Step(REPLACE, w.name, w.manifest, "object changed"))
        elif p.manifest_digest != w.manifest_digest:
            steps.append(Step(REPLACE, w.name, w.manifest, "manifest changed"))
        else:
            steps.append(Step(UNCHANGED, w.name, w.manifest))
    for p in present:
        if p.name in names or p.session:
            continue
        steps.append(Step(UNLOAD if prune else KEEP, p.name))
    return steps


# ---- doing it ------------------------------------------------------------------------------------

def _describe(manifest: Path) -> str:
    try:
        m = deploy.read_manifest(manifest)
        return f"{m.get('mode')}, {len(m.get('rules', ()))} rules"
    except deploy.DeployError:
        return "?"


def apply(steps: list[Step], build_dir: Path, out: TextIO, err: TextIO,
          load: Callable[..., object] = deploy.load_manifest,
          unload: Callable[[str], None] = deploy.unload, adopt: bool = False) -> Outcome:
    """Carry out STEPS, keeping going past failures; one line per policy (failures on ERR,
    with their reason and the verifier's log), then a summary line. Exit code 1 when any
    policy failed, else 0. With ADOPT, a loaded or replaced policy governs the running
    processes its subjects match (policyc/adopt.py), listed under its line."""
    from .adopt import Report
    counts = {k: 0 for k in (LOAD, REPLACE, UNCHANGED, UNLOAD, KEEP, FAIL)}

    def failed(name: str, message: str, detail: str = "", hint: str = "") -> None:
        counts[FAIL] += 1
        err.write(f"failed {name}: {message}\n")
        if detail:
            err.write("--- libbpf / verifier log ---\n" + detail.rstrip() + "\n---\n")
        if hint:
            err.write(f"  = help: {hint}\n")
        err.flush()

    for s in steps:
        if s.action == FAIL:
            failed(s.name, s.reason)
            continue
        if s.action == UNCHANGED:
            counts[UNCHANGED] += 1
            out.write(f"unchanged {s.name}\n")
            continue
        if s.action == KEEP:
            counts[KEEP] += 1
            out.write(f"kept {s.name} (not in {build_dir}; --prune unloads it)\n")
            continue
        report = Report() if adopt and s.action in (LOAD, REPLACE) else None
        more = {"adopt": report} if report is not None else {}
        try:
            if s.action == LOAD:
                load(s.manifest, replace=False, **more)
                out.write(f"loaded {s.name} ({_describe(s.manifest)})\n")
            elif s.action == REPLACE:
                load(s.manifest, replace=True, **more)
                out.write(f"replaced {s.name} ({s.reason}; {_describe(s.manifest)})\n")
            elif s.action == UNLOAD:
                unload(s.name)
                out.write(f"unloaded {s.name} (not in {build_dir})\n")
            else:   # pragma: no cover - plan makes no other action
                raise AssertionError(s.action)
            counts[s.action] += 1
            for line in report.lines() if report is not None else ():
                out.write(line + "\n")
        except deploy.DeployError as e:
            failed(s.name, e.message, e.detail, e.hint)
        out.flush()
    changed = counts[LOAD] + counts[REPLACE] + counts[UNLOAD]
    if not changed and not counts[FAIL]:
        out.write(f"nothing to do: {counts[UNCHANGED]} "
                  f"{'policy' if counts[UNCHANGED] == 1 else 'policies'} up to date\n")
    else:
        words = {LOAD: "loaded", REPLACE: "replaced", UNCHANGED: "unchanged", UNLOAD: "unloaded",
                 KEEP: "kept", FAIL: "failed"}
        out.write("sync: " + ", ".join(f"{counts[k]} {words[k]}" for k in words if counts[k]) + "\n")
    return Outcome(counts, 1 if counts[FAIL] else 0)


def sync(build_dir: str, prune: bool, out: TextIO, err: TextIO, adopt: bool = True) -> int:
    """The whole of `policyc load --sync DIR [--prune]`: exit 0, 1 when a policy failed, 2 when
    nothing could be done (DIR is not a directory, the kernel cannot run BPF LSM)."""
    d = Path(build_dir)
    if not d.is_dir():
        raise deploy.DeployError(f"`{build_dir}` is not a build directory",
                                 hint="build one with `policyc build POLICY... -o DIR` (or `policyc install`)")
    wanted = wanted_in(d)
    deploy.check_kernel()
    steps = plan(wanted, present_now(), prune)
    return apply(steps, d, out, err, adopt=adopt).code
