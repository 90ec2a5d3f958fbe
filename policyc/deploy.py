"""From build output to the kernel: manifest -> runtime map fills; load, unload, status.

The runtime deals in bytes; this module knows the manifest (codegen's output) and turns it
into what the runtime takes. It also resolves what only the target machine knows: cgroup ids.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path

from . import runtime

from . import abi
from . import mapsfile
from . import paths

CGROUP_ROOT = "/sys/fs/cgroup"
STATE_MAPS = ("subjects", "events", "counters", "rule_drops", "rule_suppressed")
PIN_ROOT = os.environ.get("POLICYC_PIN_ROOT", runtime.DEFAULT_PIN_ROOT)


class DeployError(Exception):
    def __init__(self, message: str, detail: str = "", hint: str = ""):
        super().__init__(message)
        self.message, self.detail, self.hint = message, detail, hint


MANIFEST_FORMATS = mapsfile.MANIFEST_FORMATS   # 1: maps as hex `data`; 2: in NAME.maps; 3: rules too


def read_manifest(path: Path) -> dict:
    """The manifest at PATH, its rule list as `rules` whichever format keeps it where (format
    3: in the NAME.maps beside it, mapsfile.RULES_AT): the one reader of a manifest."""
    try:
        m = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DeployError(f"cannot read manifest `{path}`: {e}")
    if not isinstance(m, dict) or m.get("format") not in MANIFEST_FORMATS:
        raise DeployError(f"manifest `{path}` has an unknown format "
                          f"{m.get('format') if isinstance(m, dict) else None!r}")
    if "rules" not in m and mapsfile.RULES_AT in m:
        try:
            m["rules"] = mapsfile.rules_of(m, read_maps(m, Path(path).parent))
        except mapsfile.MapsFileError as e:
            raise DeployError(f"the rules of policy `{m.get('policy')}` cannot be read: {e}",
                              hint="NAME.maps holds them; it is written with its manifest and the "
                                   "two go together") from None
    return m


def _program_order(path: Path) -> tuple:
    """A build directory's manifests in program order (the build records it), then by name;
    a manifest that cannot be read sorts last and fails where it is loaded."""
    try:
        order = json.loads(path.read_text()).get("program_order")
    except (OSError, ValueError):
        order = None
    return (order if isinstance(order, int) else 1 << 30, path.name)


def find_manifests(paths: list[str]) -> list[Path]:
    """`policyc load DIR|PATH...`: a build directory gives every NAME.manifest.json in it."""
    out: list[Path] = []
    for p in paths:
        pp = Path(p)
        if pp.is_dir():
            found = sorted(pp.glob("*.manifest.json"), key=_program_order)
            if not found:
                raise DeployError(f"no `*.manifest.json` in `{p}`", hint="run `policyc build POLICY -o DIR` first")
            out.extend(found)
        elif pp.name.endswith(".manifest.json"):
            out.append(pp)
        else:
            raise DeployError(f"`{p}` is not a build directory or a manifest")
    return out


def read_maps(manifest: dict, directory: Path | None) -> bytes | None:
    """The maps' bytes of a manifest (the payload of the NAME.maps it names, in DIRECTORY, its
    sha256 checked); None for a manifest of format 1 (its maps are hex in it). The one reader
    of a build's maps: map_fills, map_entries, `policyc inspect`, the benches and tests."""
    if not mapsfile.has_file(manifest):
        return None
    if directory is None:
        raise DeployError(f"the maps of policy `{manifest.get('policy')}` are in `{manifest['maps_file']}`, "
                          "and no build directory was given to read it from")
    try:
        return mapsfile.read_payload(manifest, Path(directory))
    except mapsfile.MapsFileError as e:
        raise DeployError(str(e), hint="build the policy again (`policyc build POLICY -o DIR`): the maps file "
                                       "is written with its manifest and the two go together") from None


def map_entries(manifest: dict, directory: Path | None = None) -> dict[str, list[tuple[bytes, bytes]]]:
    """name -> the (key, value) pairs of each map of a build, as the code generator made them."""
    payload = read_maps(manifest, directory)
    try:
        return {name: mapsfile.entries(spec, payload) for name, spec in manifest["maps"].items()}
    except (mapsfile.MapsFileError, KeyError, TypeError, ValueError) as e:
        raise DeployError(f"the maps of policy `{manifest.get('policy')}` cannot be read: {e}") from None


# Index arrays of more entries than this go to the runtime packed (MapFill.packed: the values
# as stored, the keys made at once), never as one pair of bytes objects per entry.
PACKED_MIN = 64


def cgroup_id(path: str) -> int:
    """A cgroup v2 path's id: the inode number of its directory under /sys/fs/cgroup.

    policyc's own slice (`protect policyc` targets it) is made when it does not exist yet:
    loaded by hand before the units ever ran, the rule then holds the id systemd adopts when
    it starts the slice (it makes a unit's cgroup only when missing)."""
    full = os.path.join(CGROUP_ROOT, path.lstrip("/"))
    if path.rstrip("/") == paths.SLICE_CGROUP and os.path.isfile(os.path.join(CGROUP_ROOT, "cgroup.procs")):
        with contextlib.suppress(FileExistsError):
            os.mkdir(full)
    try:
        return os.stat(full).st_ino
    except OSError as e:
        raise DeployError(f"cgroup `{path}` does not exist here ({full}: {e.strerror})",
                          hint="create the cgroup (or start its service) before loading the policy")


def map_fills(manifest: dict, missing_cgroups: list[str] | None = None,
              directory: Path | None = None) -> dict[str, runtime.MapFill]:
    """The runtime's map contents. Cgroup paths become ids here. With `missing_cgroups` (a
    list), a cgroup that does not exist is left out (its path appended to the list) instead of
    failing: `policyc exec` makes its command the subject whatever the policy's subjects.
    DIRECTORY: where the manifest is, whose NAME.maps holds the maps' bytes (a manifest of
    format 1 needs none). A large index array is given packed (MapFill.packed), the rest as
    (key, value) pairs; MapFill.pairs() is either as pairs."""

    def cg(path: str) -> int | None:
        try:
            return cgroup_id(path)
        except DeployError:
            if missing_cgroups is None:
                raise
            missing_cgroups.append(path)
            return None

    payload = read_maps(manifest, directory)
    fixups: dict[str, list[dict]] = {}
    for fix in manifest.get("cgroup_fixups", ()):
        fixups.setdefault(fix["map"], []).append(fix)
    fills = {}
    try:
        for name, spec in manifest["maps"].items():
            data, keys = mapsfile.map_bytes(spec, payload)
            if name in fixups:
                # a `to cgroup` target: its id exists only on the machine that loads the policy;
                # patched in the bytes as stored (values alone, or key+value pairs)
                stride, first = ((spec["value_size"], 0) if keys is not None else
                                 (spec["key_size"] + spec["value_size"], spec["key_size"]))
                data = bytearray(data)
                for fix in fixups[name]:
                    at = fix["index"] * stride + first + fix["offset"]
                    if not (0 <= fix["index"] < spec["count"] and 0 <= fix["offset"]
                            and fix["offset"] + abi.U64.size <= spec["value_size"]):
                        raise ValueError(f"cgroup fixup {fix} is outside map `{name}`")
                    data[at:at + abi.U64.size] = abi.U64.pack(cg(fix["cgroup"]) or 0)
                data = bytes(data)
            if keys is not None and spec["count"] > PACKED_MIN:
                fills[name] = runtime.MapFill(spec["max_entries"], packed=(spec["count"], keys, data))
            else:
                fills[name] = runtime.MapFill(spec["max_entries"], mapsfile.cut(spec, data, keys))
    except (mapsfile.MapsFileError, KeyError, TypeError, ValueError) as e:
        raise DeployError(f"the maps of policy `{manifest.get('policy')}` cannot be read: {e}") from None
    cg_entries = []
    for kinds, value in (("subjects", abi.CGROUP_SUBJECT), ("exceptions", abi.CGROUP_EXCEPT)):
        for s in manifest.get(kinds, ()):
            if s["kind"] == "cgroup":
                ident = cg(s["cgroup"])
                if ident is not None:
                    cg_entries.append((abi.U64.pack(ident), abi.U8.pack(value)))
    fills["subject_cgroups"] = runtime.MapFill(max(1, len(cg_entries)), cg_entries)
    fills["events"] = runtime.MapFill(manifest.get("ringbuf_bytes", abi.DEFAULT_RINGBUF_BYTES), [])
    return fills


def check_kernel() -> None:
    status = runtime.check_bpf_lsm()
    if not status.usable:
        raise DeployError(f"BPF LSM is not usable on this kernel: {status.reason}", hint=status.hint)


def sha256_of(data: bytes) -> str:
    """`sha256:HEX`, the form the manifest's `object_sha256` has."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    return sha256_of(Path(path).read_bytes())


# Manifest fields that say where a policy came from, not what is loaded or how its events are
# named: every manifest of a program lists the hashes of all its sources (`inputs`), a
# policy's place in it (`program_order`) moves when one is added before it, and `build` (the
# unchanged-build short cut's record) names the program's policies and files.
PROVENANCE = ("inputs", "program_order", "build")


def manifest_digest(m: dict) -> str:
    """What a load of manifest M puts in the kernel and in the state directory, as one hash:
    sha256 of its canonical JSON less PROVENANCE. Editing one policy of a program leaves the
    digests of the others alone. The same for a manifest as read (read_manifest: its rules put
    back as `rules`) and as stored: the rules of one that keeps them in NAME.maps
    (mapsfile.RULES_AT) are in the digest through its `maps_sha256`."""
    rest = {k: v for k, v in m.items()
            if k not in PROVENANCE and not (k == "rules" and mapsfile.RULES_AT in m)}
    return sha256_of(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode())


def load_manifest(manifest_path: Path, replace: bool = False, name: str | None = None,
                  missing_cgroups: list[str] | None = None, adopt=None) -> runtime.LoadedPolicy:
    """Load (or with REPLACE, replace) the policy of a manifest. With ADOPT (an empty
    policyc.adopt.Report, filled here): once the programs are attached, govern the running
    processes the policy's `subject exe` patterns match, and their descendants (policyc/adopt.py;
    a failure to adopt is said in the report, the policy stays loaded)."""
    manifest_path = Path(manifest_path)
    m = read_manifest(manifest_path)
    obj = manifest_path.parent / m["object"]
    if not obj.is_file():
        raise DeployError(f"object `{obj}` named by `{manifest_path}` is missing")
    fills = map_fills(m, missing_cgroups, manifest_path.parent)
    load_name = name or m["policy"]
    _set_policy_id(fills, load_name)
    pinned = os.path.join(PIN_ROOT, load_name, "maps")
    # what this load puts in the kernel, recorded for `load --sync` and `status` (load_info)
    try:
        hashes = {"manifest_digest": manifest_digest(m), "object_sha256": file_sha256(obj)}
    except OSError as e:
        raise DeployError(f"cannot read `{e.filename}`: {e.strerror}")
    counters_kept = replace and os.path.exists(os.path.join(pinned, "counters"))
    if replace and os.path.isdir(pinned):
        # a reload keeps the state of the running version: which tasks are governed, the
        # ring buffer a reader may hold (when its size is unchanged), the counters
        for state in STATE_MAPS:
            pin = os.path.join(pinned, state)
            if not os.path.exists(pin):
                continue
            fill = fills.setdefault(state, runtime.MapFill())
            if state == "events":
                try:
                    if runtime.map_info(pin).get("max_entries") != fill.max_entries:
                        continue
                except runtime.BpfError:
                    continue
            fills[state] = runtime.MapFill(reuse_pin=pin)
    try:
        loaded = runtime.load(str(obj), load_name, fills, pin_root=PIN_ROOT, replace=replace,
                              shared=abi.SHARED_MAPS)
    except runtime.BpfError as e:
        raise DeployError(f"loading policy `{m['policy']}` failed: {e.message}", detail=e.log)
    if "loaded_policies" in loaded.maps:   # every object has it (abi.MAPS); a stand-in runtime's may not
        _register(load_name)
    if adopt is not None:
        _adopt(m, loaded, adopt)
    # keep the manifest beside the pins' owner so audit readers can name rules later
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    (state / f"{name or m['policy']}.manifest.json").write_text(json.dumps(m))
    _write_load_info(name or m["policy"], manifest_path, m, hashes, counters_kept,
                     adopt.to_json() if adopt is not None else None)
    return loaded


def _set_policy_id(fills: dict, load_name: str) -> None:
    """config.policy_id: the name the policy is loaded under, as `as policy NAME` rules of other
    policies name it (the manifest cannot know it: `load --name` may rename)."""
    config = fills.get("config")
    if config is None or not config.entries:
        return
    key, value = config.entries[0]
    off = abi.POLICYC_CONFIG.offset("policy_id")
    config.entries[0] = (key, value[:off] + abi.U64.pack(abi.policy_id(load_name)) + value[off + 8:])


def shared_pin(map_name: str) -> str:
    return os.path.join(runtime.shared_dir(PIN_ROOT), map_name)


def _register(load_name: str) -> None:
    """Say in the shared `loaded_policies` that LOAD_NAME is loaded: only then may another
    policy's `as policy LOAD_NAME` exec hand a task to it (until then it fails closed)."""
    try:
        runtime.update_map(shared_pin("loaded_policies"), abi.U64.pack(abi.policy_id(load_name)), abi.U8.pack(1))
    except runtime.BpfError as e:
        raise DeployError(f"policy `{load_name}` is loaded and enforcing, but registering it for exec "
                          f"transitions failed: {e.message}",
                          hint="an `as policy` exec into it is denied until a reload registers it")


def _unregister(load_name: str) -> None:
    pin = shared_pin("loaded_policies")
    if os.path.exists(pin):
        with contextlib.suppress(runtime.BpfError):
            runtime.delete_from_map(pin, abi.U64.pack(abi.policy_id(load_name)))


def _adopt(m: dict, loaded: runtime.LoadedPolicy, report) -> None:
    """Attached first, then the walk of /proc (policyc/adopt.py: how the race is closed)."""
    from . import adopt

    pin = loaded.maps.get("subjects")
    if pin is None:   # every object has one (abi.MAPS); a stand-in runtime's may not
        return
    try:
        adopt.adopt_loaded(m, pin, report)
    except Exception as e:   # the policy is attached and enforcing: say it, do not fail the load
        report.error = getattr(e, "message", None) or f"{type(e).__name__}: {e}"


def state_dir() -> Path:
    """Where loaded policies' manifests are kept for `status` and `audit` (not on bpffs,
    which holds only BPF objects)."""
    return Path(os.environ.get("POLICYC_STATE_DIR", "/run/policyc"))


def loaded_manifest(name: str) -> dict | None:
    p = state_dir() / f"{name}.manifest.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


LOAD_INFO_FORMAT = 1


def load_info(name: str) -> dict | None:
    """What the last load of policy NAME put in the kernel (`state_dir()/NAME.load.json`):
    {format, policy, manifest (the path it was loaded from), manifest_digest (manifest_digest),
    object_sha256 (of the bytes loaded), loaded_at (Unix seconds, this version), counters_since (Unix
    seconds of the first load whose counters the policy still has; null when unknown)}. None
    when there is none (nothing loaded, or loaded by a policyc before this record existed).
    Kept in the state directory beside the manifest copy: like the pins, it is gone after a
    reboot (/run is a tmpfs)."""
    try:
        info = json.loads((state_dir() / f"{name}.load.json").read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("format") == LOAD_INFO_FORMAT else None


def _write_load_info(name: str, manifest_path: Path, m: dict, hashes: dict, counters_kept: bool,
                     adopted: list[dict] | None = None) -> None:
    now = time.time()
    since = now
    if counters_kept:
        # a replace reused the counters map: they count from the first load, which the
        # previous record knows (none: loaded by an older policyc, since when is unknown)
        since = (load_info(name) or {}).get("counters_since")
    info = {"format": LOAD_INFO_FORMAT, "policy": m.get("policy"), "manifest": str(Path(manifest_path).resolve()),
            **hashes, "loaded_at": now, "counters_since": since}
    if adopted is not None:
        info["adopted"] = adopted   # running processes this load governed (policyc/adopt.py)
    path = state_dir() / f"{name}.load.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, sort_keys=True) + "\n")
    os.replace(tmp, path)


def unload(name: str) -> None:
    # first: from here on an `as policy NAME` exec fails closed, not into a policy going away
    _unregister(name)
    try:
        runtime.unload(name, pin_root=PIN_ROOT)
    except runtime.BpfError as e:
        raise DeployError(f"unloading `{name}` failed: {e.message}", detail=e.log)
    for suffix in (".manifest.json", ".load.json"):
        try:
            (state_dir() / f"{name}{suffix}").unlink()
        except OSError:
            pass


def loaded_names() -> list[str]:
    return runtime.list_loaded(PIN_ROOT)


COUNTERS = abi.POLICYC_COUNTERS   # per CPU, by enum policyc_hook


def hook_counters(name: str) -> dict[str, dict[str, int]]:
    """hook -> {checked, denied, audited, failed_closed, dropped}: policy NAME's per-hook
    counters summed over CPUs (hooks that counted nothing left out)."""
    hooks = abi.HOOKS
    path = os.path.join(PIN_ROOT, name, "maps", "counters")
    out: dict[str, dict[str, int]] = {}
    try:
        rows = runtime.read_map(path)
    except runtime.BpfError:
        return out
    for key, values in rows:
        idx = abi.U32.unpack(key)[0]
        if idx >= len(hooks):
            continue
        vals = values if isinstance(values, list) else [values]
        total = [0] * len(COUNTERS.names)
        for v in vals:
            for i, x in enumerate(COUNTERS.unpack(v[:COUNTERS.size])):
                total[i] += x
        if any(total):
            out[hooks[idx]] = dict(zip(COUNTERS.names, total))
    return out


def per_rule_counts(name: str, map_name: str) -> tuple[int | None, dict[int, int]]:
    """(map id, rule id -> count summed over CPUs) of policy NAME's per-rule counter map
    (`rule_drops`, `rule_suppressed`); (None, {}) when the loaded object has no such map."""
    pin = os.path.join(PIN_ROOT, name, "maps", map_name)
    counts: dict[int, int] = {}
    try:
        map_id = runtime.map_info(pin)["id"]
        for key, values in runtime.read_map(pin):
            vals = values if isinstance(values, list) else [values]
            counts[abi.U32.unpack(key)[0]] = sum(abi.U64.unpack_from(v)[0] for v in vals)
    except runtime.BpfError:
        return None, {}
    return map_id, counts


def rule_suppressed(name: str, manifest: dict) -> list[dict]:
    """Events each rule's `limit` held back since the policy was first loaded (the counters
    survive reloads), as `suppressed` records name them."""
    from .audit.event import rule_entries

    return rule_entries(manifest, per_rule_counts(name, "rule_suppressed")[1], with_limit=True)


def _iso(t) -> str | None:
    if not isinstance(t, (int, float)):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def status() -> list[dict]:
    """One row per loaded policy. `counters` and `suppressed` count from `counters_since`
    (the first load: a replace keeps the counters map); `loaded_at` is when the version now
    loaded went in. Times are ISO 8601 UTC; `*_unix` the same in Unix seconds. The load
    record's fields are null for a policy loaded by a policyc that did not write one."""
    out = []
    for name in loaded_names():
        m = loaded_manifest(name) or {}
        info = load_info(name) or {}
        out.append({
            "name": name,
            "policy": m.get("policy", name),
            "mode": m.get("mode"),
            "default": m.get("default"),
            "rules": len(m.get("rules", ())),
            "hooks": m.get("hooks", []),
            "counters": hook_counters(name),
            "suppressed": rule_suppressed(name, m),
            "pin_dir": os.path.join(PIN_ROOT, name),
            "loaded_at": _iso(info.get("loaded_at")),
            "loaded_at_unix": info.get("loaded_at"),
            "counters_since": _iso(info.get("counters_since")),
            "counters_since_unix": info.get("counters_since"),
            "object_sha256": info.get("object_sha256", m.get("object_sha256")),
            "manifest_digest": info.get("manifest_digest"),
            "loaded_from": info.get("manifest"),
        })
    return out
