"""NAME.maps: the bytes of a build's maps, written beside NAME.manifest.json (#12, #11).

The manifest says what each map is and where its bytes are; this file holds the bytes, so the
manifest stays small JSON and a load reads no hex. One place for the format: the code
generator writes it (`write`), `policyc load` and every other reader read it (`read_maps`,
`map_bytes`, `entries`), `policyc inspect` shows it as the hex the manifests of format 1 held.

Layout (integers little-endian):

    offset  size
    0       8     magic b"PCMAPS\\r\\n" (the CR LF: a text-mode copy is caught by the magic)
    8       4     FORMAT (1)
    12      4     compression: 0 none, 1 zlib (RFC 1950; the payload is one zlib stream)
    16      8     length of the payload uncompressed
    24            the payload

The payload is every map's bytes, one after the other in the manifest's map order (its names
sorted, as the manifest lists them), each at the `offset` and `length` its `maps[NAME]` entry
gives (offsets into the uncompressed payload). `keys` says how a map's keys are stored:

    "stored"  count (key, value) pairs, key_size + value_size bytes each, as format 1's hex;
    "index"   an array whose keys are 0..count-1 (u32, little-endian) in order: only the count
              values are stored, and the keys are made again when read.

Compression: zlib at level 1. Measured on the 10,000-rule policy of
bench/build_vs_apparmor.py (3.90 MB of key+value bytes, 3.34 MB once the index keys are left
out): level 1 writes 0.52 MB in about 0.03 s and inflates in 0.01 s; level 6 is 3% smaller
for ten times the time (0.26 s), level 9 takes 1.9 s and is larger. The tables are mostly zero
bytes and repeated states: a sixth of the size for about 1% of a 10,000-rule build's CPU,
where leaving it out would write 3.34 MB (the output's largest part after the object).
The manifest holds `maps_sha256` (of this whole file), so a changed or swapped file is a
refusal at load, never a wrong table.
"""

from __future__ import annotations

import hashlib
import struct
import sys
import zlib
from array import array
from pathlib import Path

# The manifest's formats: 1 held the maps' bytes as hex `data` in each map's entry; 2 (what
# builds write) keeps them in NAME.maps, named by `maps_file` and `maps_sha256`. Readers take
# both (built directories stay on hosts across upgrades). Here, not in the code generator, so
# the readers (`build`'s unchanged short cut, load, sync) need not import it.
MANIFEST_FORMAT = 2
MANIFEST_FORMATS = (1, 2)

MAGIC = b"PCMAPS\r\n"
FORMAT = 1
NONE, ZLIB = 0, 1
ZLIB_LEVEL = 1
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


def pack(maps: dict) -> tuple[bytes, dict[str, dict]]:
    """(the file's bytes, name -> the manifest's entry) for MAPS (name -> codegen MapData),
    in sorted name order. The same maps give the same bytes (zlib is deterministic for the
    same input, level and library)."""
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
    payload = b"".join(parts)
    return HEADER.pack(MAGIC, FORMAT, ZLIB, len(payload)) + zlib.compress(payload, ZLIB_LEVEL), specs


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
    if sha256_of(blob) != manifest.get("maps_sha256"):
        raise MapsFileError(f"maps file `{path}` is not the one its manifest was built with "
                            f"(its sha256 differs from the manifest's maps_sha256)")
    return unpack(blob, str(path))


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
    for k in ("maps_file", "maps_sha256"):
        m.pop(k, None)
    m["maps"] = {n: {k: v for k, v in s.items() if k not in ("offset", "length", "keys")} for n, s in m["maps"].items()}
    m["format"] = 1
    return m


def with_data(manifest: dict, directory: Path | None) -> dict:
    """MANIFEST with every map's `data` (hex of its key+value pairs) as format 1 had it."""
    payload = read_payload(manifest, Path(directory)) if has_file(manifest) else None
    maps = {name: {**spec, "data": hex_data(spec, payload)} for name, spec in manifest.get("maps", {}).items()}
    return {**manifest, "maps": maps}


def write(path: Path, blob: bytes) -> None:
    Path(path).write_bytes(blob)
