"""Objects shipped in the package, so that a build on a fresh host (an empty object cache)
needs no clang for the usual policies (#12: a cold build was clang's 2 s).

The object depends only on the hook families a policy needs and two flags
(`all_variants`); a `default deny` policy needs every family, so its four variants (with and
without `subject exe`, with and without `except exe`: `shipped_variants`; three distinct
objects, `except exe` making the C `subject exe` makes) cover every such policy. They are compiled when the wheel is built (setup.py runs `write_shipped` into the
wheel's policyc/codegen/objects/), stripped of their DWARF like every object policyc makes,
and stored xz-compressed under their `object_key`: the digest of the C rendered from the
templates, the headers, the clang options and the strip step. `compile_c` looks an object up
here by the key of the C it has just rendered, so an object is used only when the templates,
ABI and flags of the running policyc would make exactly that object; any other variant (a
`default allow` policy's families), or a key the wheel does not have, is compiled by clang
and cached as before. A source checkout has no objects/ and always compiles.
"""

from __future__ import annotations

import lzma
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Inside the installed package: policyc/codegen/objects/KEY.o.xz (none in a checkout).
SHIPPED = Path(__file__).resolve().parent / "objects"
SUFFIX = ".o.xz"


def shipped_variants() -> list[tuple[list[str], bool, bool]]:
    """The (families, has_exe_subjects, has_exe_exceptions) variants the package ships: every
    variant a `default deny` policy can need (all families; the four flag combinations)."""
    from .families import TEMPLATE_ORDER

    return [(list(TEMPLATE_ORDER), subj, exc) for subj in (False, True) for exc in (False, True)]


def shipped_object(key: str, directory: Path | None = None) -> bytes | None:
    """The shipped object of `key`, or None (not shipped, or unreadable: then it is compiled,
    as without it)."""
    path = (SHIPPED if directory is None else directory) / f"{key}{SUFFIX}"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        return lzma.decompress(data, format=lzma.FORMAT_XZ)   # xz checks its own CRC
    except lzma.LZMAError:
        return None


def write_shipped(directory: Path, variants=None, jobs: int | None = None) -> list[Path]:
    """Compile `variants` (default: SHIPPED_VARIANTS) and write each object, xz-compressed,
    as DIRECTORY/KEY.o.xz; the files written (one per distinct key), in variant order. The object cache is used
    and filled as by any build. BuildError when clang or llvm-strip is missing: a shipped
    object must be the stripped object its key names."""
    from . import BuildError, compile_c, find_clang, find_objcopy, find_strip, object_key, render_c

    variants = shipped_variants() if variants is None else list(variants)
    if find_strip(find_clang()) is None:
        raise BuildError("llvm-strip was not found: the shipped objects are stripped of their DWARF",
                         hint="install it (Debian: `apt-get install llvm-19`) or point POLICYC_LLVM_STRIP at one")
    if find_objcopy(find_clang()) is None:
        raise BuildError("llvm-objcopy was not found: the shipped objects are without their line info",
                         hint="install it (Debian: `apt-get install llvm-19`)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    # variants whose C is the same (an `except exe` adds the exec hooks `subject exe` would)
    # are one object under one key
    sources = {}
    for families, subj, exc in variants:
        c_source = render_c(list(families), subj, exc)
        sources.setdefault(object_key(c_source), c_source)

    def one(item) -> Path:
        key, c_source = item
        obj = compile_c(c_source, "policy", line_info=False)   # the key object_key gives
        path = directory / f"{key}{SUFFIX}"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(lzma.compress(obj, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME))
        os.replace(tmp, path)
        return path

    with ThreadPoolExecutor(max_workers=jobs or min(4, os.cpu_count() or 1)) as pool:
        return list(pool.map(one, sources.items()))
