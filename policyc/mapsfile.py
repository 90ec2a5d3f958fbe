"""NAME.maps: the bulk of a build, written beside NAME.manifest.json (#12, #11): the bytes of
its maps and its rule list.

The manifest says what each map is and where its bytes are; this file holds the bytes, so the
manifest stays small JSON and a load reads no hex. Since manifest format 3 it holds the rule
list too (each rule's id, text, location, ops), which was the manifest's largest part: 1.9 MB
of a 10,000-rule policy's JSON, 32 KB compressed here. One place for the format: the code
generator writes it (`pack`), `policyc load` and every other reader read it (deploy's
`read_manifest` puts the rules back in the manifest it returns, `read_maps`, `map_bytes`,
`entries`), `policyc inspect` shows it as the hex and the rules the manifests of format 1 held.

Layout (integers little-endian):

    offset  size
    0       8     magic b"PCMAPS\\r\\n" (the CR LF: a text-mode copy is caught by the magic)
    8       4     FORMAT (1)
    12      4     compression: 0 none, 1 zlib (RFC 1950, one stream), 2 xz (one .xz stream)
    16      8     length of the payload uncompressed
    24            the payload

The payload is every map's bytes, one after the other in the manifest's map order (its names
sorted, as the manifest lists them), each at the `offset` and `length` its `maps[NAME]` entry
gives (offsets into the uncompressed payload), then (format 3) the rule list as compact JSON
at the manifest's `rules_at` (`offset`, `length`, `count`). `keys` says how a map's keys are
stored:

    "stored"  count (key, value) pairs, key_size + value_size bytes each, as format 1's hex;
    "index"   an array whose keys are 0..count-1 (u32, little-endian) in order: only the count
              values are stored, and the keys are made again when read.

Compression: xz (LZMA2) at preset 0, chosen by measurement on the 10,000-rule policy of
bench/build_vs_apparmor.py (3.30 MB of map bytes once the index keys are left out, and 1.89 MB
of rules): xz at preset 0 writes 309 KB in about 0.13 s and inflates in 0.03 s; preset 1 is
1% smaller for half as much time again; zlib at level 1 (what format-2 builds wrote) writes
651 KB in 0.03 s, zlib at level 9 512 KB of the maps alone in 0.7 s. The tables are mostly zero
bytes and repeated states, the rules one line of text each: a seventeenth of the size, what
takes a 10,000-rule build's output under 3x AppArmor's binary policy (docs/benchmarks.md).
The manifest holds `maps_sha256` (of this whole file), so a changed or swapped file is a
refusal at load, never a wrong table or a rule named wrongly.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import struct
import sys
import zlib
from array import array
from pathlib import Path

# The manifest's formats: 1 held the maps' bytes as hex `data` in each map's entry; 2 keeps
# them in NAME.maps, named by `maps_file` and `maps_sha256`; 3 (what builds write) keeps the
# rule list there too, at `rules_at`. Readers take all three (built directories stay on
# hosts across upgrades). Here, not in the code generator, so the readers (`build`'s
# unchanged short cut, load, sync) need not import it.
MANIFEST_FORMAT = 3
MANIFEST_FORMATS = (1, 2, 3)
RULES_AT = "rules_at"

MAGIC = b"PCMAPS\r\n"
FORMAT = 1
NONE, ZLIB, XZ = 0, 1, 2
ZLIB_LEVEL = 1
XZ_PRESET = 0
HEADER = struct.Struct("<8sIIQ")
INDEX, STORED = "index", "stored"
SUFFIX = ".maps"


class MapsFileError(Exception):
    """A maps file that is missing, unreadable, or not the one its manifest names."""


def file_name(policy: str) -> str:
    return f"{policy}{SUFFIX}"


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def index_keys(count: int) -> bytes:
    """The keys of an index array: 0..count-1 as little-endian u32."""
    a = array("I", range(count))
    if a.itemsize != 4:   # pragma: no cover (every platform CPython runs on has a 4-byte I)
        return b"".join(struct.pack("<I", i) for i in range(count))
    if sys.byteorder == "big":   # pragma: no cover
        a.byteswap()
    return a.tobytes()


def _is_index(kind: str, key_size: int, keys: bytes, count: int) -> bool:
    return kind == "array" and key_size == 4 and keys == index_keys(count)


def pack(maps: dict, rules: bytes = b"[]") -> tuple[bytes, dict[str, dict], dict]:
    """(the file's bytes, name -> the manifest's entry, the manifest's `rules_at`) for MAPS
    (name -> codegen MapData), in sorted name order, and RULES (the rule list as JSON bytes,
    `json_bytes`) after them. The same input gives the same bytes (xz is deterministic for
    the same input, preset and library)."""
    parts: list[bytes] = []
    specs: dict[str, dict] = {}
    offset = 0
    for name in sorted(maps):
        m = maps[name]
        count = len(m.entries)
        keys = b"".join(k for k, _ in m.entries)
        if _is_index(m.kind, m.key_size, keys, count):
            data, how = b"".join(v for _, v in m.entries), INDEX
        else:
            data, how = b"".join(k + v for k, v in m.entries), STORED
        parts.append(data)
        specs[name] = {"type": m.kind, "key_size": m.key_size, "value_size": m.value_size,
                       "max_entries": m.max_entries, "count": count,
                       "keys": how, "offset": offset, "length": len(data)}
        offset += len(data)
    parts.append(rules)
    payload = b"".join(parts)
    blob = HEADER.pack(MAGIC, FORMAT, XZ, len(payload)) + lzma.compress(payload, format=lzma.FORMAT_XZ,
                                                                        preset=XZ_PRESET)
    return blob, specs, {"offset": offset, "length": len(rules)}


def json_bytes(value, newline: bool = False) -> bytes:
    """VALUE as compact JSON, keys sorted (with NEWLINE, one line and a newline): what the
    manifest and the rule list in this file are written as. orjson writes it ten times faster
    than the json module; the json module when orjson refuses a value (a lone surrogate).
    Both are deterministic: identical input, identical bytes."""
    try:
        import orjson

        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | (orjson.OPT_APPEND_NEWLINE if newline else 0))
    except (ImportError, TypeError, ValueError):   # orjson.JSONEncodeError is a TypeError
        return (json.dumps(value, sort_keys=True, separators=(",", ":")) + ("\n" if newline else "")).encode()


def rule_count(manifest: dict) -> int:
    """How many rules MANIFEST's policy has, without reading its maps file."""
    at = manifest.get(RULES_AT)
    if "rules" not in manifest and isinstance(at, dict) and isinstance(at.get("count"), int):
        return at["count"]
    return len(manifest.get("rules") or [])


def rules_of(manifest: dict, payload: bytes | None) -> list[dict]:
    """The rule list of MANIFEST: its own `rules` (formats 1 and 2, or a manifest already
    read), else the JSON at its `rules_at` in PAYLOAD (read_payload's)."""
    if "rules" in manifest:
        return manifest["rules"]
    at = manifest.get(RULES_AT)
    if at is None:
        return []
    if payload is None:
        raise MapsFileError("the manifest's rules are in its maps file, and none was read")
    off, length = (at.get("offset"), at.get("length")) if isinstance(at, dict) else (None, None)
    if not (isinstance(off, int) and isinstance(length, int) and 0 <= off and off + length <= len(payload)):
        raise MapsFileError(f"the rules at {off!r}+{length!r} are outside the maps file ({len(payload)} bytes)")
    try:
        rules = json.loads(payload[off:off + length])
    except ValueError as e:
        raise MapsFileError(f"the rules in the maps file are not JSON: {e}") from None
    if not isinstance(rules, list) or len(rules) != at.get("count", len(rules)):
        raise MapsFileError("the rules in the maps file are not the list its manifest counts")
    return rules


def unpack(blob: bytes, where: str = "maps file") -> bytes:
    """The payload of a maps file's bytes."""
    if len(blob) < HEADER.size:
        raise MapsFileError(f"`{where}` is not a policyc maps file (only {len(blob)} bytes)")
    magic, fmt, comp, length = HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise MapsFileError(f"`{where}` is not a policyc maps file (no {MAGIC!r} at its start)")
    if fmt != FORMAT:
        raise MapsFileError(f"`{where}` has maps file format {fmt}; this policyc reads format {FORMAT}")
    body = memoryview(blob)[HEADER.size:]
    if comp == NONE:
        payload = bytes(body)
    elif comp == ZLIB:
        try:
            payload = zlib.decompress(body)
        except zlib.error as e:
            raise MapsFileError(f"`{where}` is damaged: {e}") from None
    elif comp == XZ:
        try:
            payload = lzma.decompress(body, format=lzma.FORMAT_XZ)   # xz checks its own CRC
        except lzma.LZMAError as e:
            raise MapsFileError(f"`{where}` is damaged: {e}") from None
    else:
        raise MapsFileError(f"`{where}` has an unknown compression {comp}")
    if len(payload) != length:
        raise MapsFileError(f"`{where}` is damaged: {len(payload)} bytes of maps where its header says {length}")
    return payload


def has_file(manifest: dict) -> bool:
    """Whether MANIFEST keeps its maps' bytes in a maps file (format 2), not as hex (format 1)."""
    return "maps_file" in manifest


def read_payload(manifest: dict, directory: Path) -> bytes | None:
    """The uncompressed bytes of the maps file MANIFEST names, in DIRECTORY, checked against the
    manifest's `maps_sha256`; None for a manifest whose maps are hex (format 1)."""
    if not has_file(manifest):
        return None
    name = manifest["maps_file"]
    if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
        raise MapsFileError(f"the manifest names an invalid maps file {name!r}")
    path = Path(directory) / name
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise MapsFileError(f"cannot read maps file `{path}`: {e.strerror or e}") from None
    digest = sha256_of(blob)
    if digest != manifest.get("maps_sha256"):
        raise MapsFileError(f"maps file `{path}` is not the one its manifest was built with "
                            f"(its sha256 differs from the manifest's maps_sha256)")
    # A load reads the file twice (the manifest's rules, then the maps): the file is read and
    # its sha256 checked each time, and inflated once (xz: 0.03 s of a 10,000-rule load on
    # the host, many times that in an emulated guest).
    if _last_payload[0] == digest:
        return _last_payload[1]
    payload = unpack(blob, str(path))
    _last_payload[:] = [digest, payload]
    return payload


# (sha256 of a maps file, its payload): the last one inflated (read_payload)
_last_payload: list = [None, None]


def map_bytes(spec: dict, payload: bytes | None) -> tuple[bytes, bytes | None]:
    """(data, keys) of one map: DATA its bytes as stored (values alone for an index array,
    else key+value pairs) and KEYS the packed keys of an index array (None when the keys are
    in DATA). PAYLOAD from read_payload; None reads format 1's hex `data`."""
    if payload is None:
        return bytes.fromhex(spec["data"]), None
    off, length = spec["offset"], spec["length"]
    if not (isinstance(off, int) and isinstance(length, int) and 0 <= off and off + length <= len(payload)):
        raise MapsFileError(f"map at {off!r}+{length!r} is outside the maps file ({len(payload)} bytes)")
    data = payload[off:off + length]
    if spec.get("keys", STORED) == INDEX:
        if length != spec["count"] * spec["value_size"]:
            raise MapsFileError(f"an index map of {spec['count']} values holds {length} bytes")
        return data, index_keys(spec["count"])
    return data, None


def entries(spec: dict, payload: bytes | None) -> list[tuple[bytes, bytes]]:
    """One map's (key, value) pairs, as the code generator made them."""
    return cut(spec, *map_bytes(spec, payload))


def cut(spec: dict, data: bytes, keys: bytes | None) -> list[tuple[bytes, bytes]]:
    """map_bytes's (data, keys) of one map as (key, value) pairs."""
    k, v = spec["key_size"], spec["value_size"]
    if keys is not None:
        return [(keys[i * k:(i + 1) * k], data[i * v:(i + 1) * v]) for i in range(spec["count"])]
    step = k + v
    return [(data[i:i + k], data[i + k:i + step]) for i in range(0, len(data), step)]


def hex_data(spec: dict, payload: bytes | None) -> str:
    """A map's bytes as format 1's `data`: the hex of its key+value pairs."""
    data, keys = map_bytes(spec, payload)
    if keys is None:
        return data.hex()
    return b"".join(k + v for k, v in entries(spec, payload)).hex()


def read_entries(manifest: dict, directory: Path | None) -> dict[str, list[tuple[bytes, bytes]]]:
    """name -> (key, value) pairs of every map of the build whose manifest is MANIFEST, in
    DIRECTORY (its maps file read and checked; a format-1 manifest needs no directory)."""
    payload = read_payload(manifest, Path(directory)) if has_file(manifest) else None
    try:
        return {name: entries(spec, payload) for name, spec in manifest["maps"].items()}
    except (KeyError, TypeError, ValueError) as e:
        raise MapsFileError(f"the manifest's maps cannot be read: {type(e).__name__}: {e}") from None


def as_format1(manifest: dict, directory: Path | None) -> dict:
    """MANIFEST as a manifest of format 1 would say it: every map's bytes as hex `data`, no
    maps file (what tests and tools that edit a map's bytes by hand start from)."""
    m = with_data(manifest, directory)
    for k in ("maps_file", "maps_sha256", RULES_AT):
        m.pop(k, None)
    m["maps"] = {n: {k: v for k, v in s.items() if k not in ("offset", "length", "keys")} for n, s in m["maps"].items()}
    m["format"] = 1
    return m


def with_data(manifest: dict, directory: Path | None) -> dict:
    """MANIFEST with every map's `data` (hex of its key+value pairs) and its `rules`, as
    format 1 had them."""
    payload = read_payload(manifest, Path(directory)) if has_file(manifest) else None
    maps = {name: {**spec, "data": hex_data(spec, payload)} for name, spec in manifest.get("maps", {}).items()}
    return {**manifest, "maps": maps, "rules": rules_of(manifest, payload)}


def write(path: Path, blob: bytes) -> None:
    Path(path).write_bytes(blob)
