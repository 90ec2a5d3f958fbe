"""The policy grammar's LALR parser as a Lark standalone module, kept in the user's cache:
`policyc check` without importing lark.

Importing lark imports its grammar loader, its Earley parser and what they need (hashlib,
tempfile, pkgutil...), ~20 ms of every start-up that a parser loaded from Lark's cache never
uses (docs/benchmarks.md, Start-up). Lark's own tool, lark.tools.standalone, writes one
Python module holding the code of Lark's LALR parser and contextual lexer and the analysed
grammar: the same parser, built from the same Lark code, importing only the standard
library. policyc/parse uses it when the cache has one made from this grammar by the
installed Lark with these options, and Lark itself otherwise; tests/unit/test_parse_standalone.py
holds the two to the same trees, the same errors and the same diagnostics on every policy
file of the repository and a corpus of broken ones.

The module is generated on the machine that runs policyc, into its cache (POLICYC_CACHE, else
~/.cache/policyc: parser/standalone-*.bin, with its source beside it as .py for tracebacks),
by the first run that uses Lark with its analysed grammar from an earlier run's cache (`save`:
0.2 s, which a cache that lives for one run, a CI job's, never pays). It is not shipped: its text is Lark's code under
the MPL-2.0 that Lark's tool puts on what it writes.

It is never used stale: the file begins with its key (the exact grammar text, Lark's
version, the parser options, this module's FORMAT and the Python version) and `load`
compares all of it before running anything of the file; on any difference, damage (the code
carries a CRC-32) or read error policyc/parse uses Lark, which writes a new file (one name
per key, written under a private name and renamed into place: a concurrent run never reads
half of one). The code is kept compiled (marshal): it loads without compiling whether or not
Python may write bytecode (PYTHONDONTWRITEBYTECODE). Like Lark's analysed-grammar cache
beside it, the file is code that policyc runs: only the user's own cache is trusted with it.
"""

from __future__ import annotations

import marshal
import os
import re
import sys
import types
import zlib
from pathlib import Path

# Bumped when what is generated (or how it is keyed or loaded) changes: older files are stale.
FORMAT = 1

MODULE = "policyc.parse._lark_standalone"
# The file's first line, for whoever looks into the cache; `load` goes by the key after it.
_HEADER = b"policyc standalone LALR parser:"


def lark_version() -> str | None:
    """The installed Lark's version, read from its lark/__init__.py without importing it (the
    import is what this module saves); None when it cannot be told."""
    if "lark" in sys.modules:
        return getattr(sys.modules["lark"], "__version__", None)
    from importlib.machinery import PathFinder

    try:
        spec = PathFinder.find_spec("lark")
        if spec is None or not spec.origin or not spec.origin.endswith("__init__.py"):
            return None
        with open(spec.origin, encoding="utf-8") as f:
            text = f.read()
    except (OSError, ValueError, ImportError):
        return None
    m = re.search(r"""^__version__\s*(?::\s*str\s*)?=\s*["']([^"'\s]+)["']""", text, re.M)
    return m.group(1) if m else None


def key(grammar: str, options: dict, version: str) -> tuple:
    """What a generated parser was made from: any difference makes it stale."""
    return (FORMAT, sys.version, version, repr(sorted(options.items())), grammar)


def path(cache_dir: Path, k: tuple) -> Path:
    # one file per key: several grammars (policyc versions) and Lark versions sharing a cache
    # keep their own; the key itself, not this digest, decides whether a file is used
    digest = zlib.crc32(repr(k).encode("utf-8", "surrogatepass"))
    return cache_dir / f"standalone-lark-{k[2]}-{sys.implementation.cache_tag}-{digest:08x}.bin"


def load(cache_dir: Path, grammar: str, options: dict):
    """The standalone module generated for this grammar, Lark and options, or None (none in
    the cache, stale, damaged or unreadable: Lark is used instead)."""
    version = lark_version()
    if version is None:
        return None
    k = key(grammar, options, version)
    try:
        with open(path(cache_dir, k), "rb") as f:
            if not f.readline().startswith(_HEADER) or marshal.load(f) != k:
                return None
            crc = marshal.load(f)
            blob = f.read()
        # marshal loads damaged code without a word (a changed constant is another parser)
        if zlib.crc32(blob) != crc:
            return None
        code = marshal.loads(blob)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(code, types.CodeType):
        return None
    return _module(code, MODULE)


def _module(code: types.CodeType, name: str):
    """The module `code` makes, with its parser built (`parser`); None when it fails."""
    module = types.ModuleType(name)
    # registered: the dataclass it defines looks its module up in sys.modules
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
        module.parser = module.Lark_StandAlone()
    except Exception:   # noqa: BLE001 - a file that does not load is damaged: Lark is used
        sys.modules.pop(name, None)
        return None
    return module


def save(cache_dir: Path, grammar: str, options: dict, parser) -> Path | None:
    """Generate the standalone module of `parser` (a Lark LALR parser made from `grammar` with
    `options`) into `cache_dir`; its path, or None when the cache cannot be written (a
    read-only guest) or the generated code does not load (never written then)."""
    version = lark_version()
    if version is None:
        return None
    k = key(grammar, options, version)
    dest = path(cache_dir, k)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    try:   # first: a cache that cannot be written costs no generating
        cache_dir.mkdir(parents=True, exist_ok=True)
        f = open(tmp, "wb")
    except OSError:
        return None
    try:
        with f:
            # Its source beside it, under the name its code carries: a traceback through the
            # parser shows the lines (only for reading: the code is the .bin's).
            source = (f"# The source of {dest.name}, which policyc runs (compiled): kept for tracebacks,\n"
                      "# never read by policyc; editing it changes nothing.\n" + generate(parser))
            _write_source(dest.with_suffix(".py"), source)
            code = compile(source, str(dest.with_suffix(".py")), "exec")
            if _module(code, MODULE + "_check") is None:
                raise ValueError("the generated parser does not load")
            blob = marshal.dumps(code)
            f.write(_header(grammar, version))
            marshal.dump(k, f)
            marshal.dump(zlib.crc32(blob), f)
            f.write(blob)
        os.replace(tmp, dest)
    except Exception:   # noqa: BLE001 - no standalone parser then (Lark parses); nothing half-written stays
        for leftover in (tmp, dest.with_suffix(".py")):
            try:
                leftover.unlink()
            except OSError:
                pass
        return None
    finally:
        sys.modules.pop(MODULE + "_check", None)
    return dest


def _write_source(dest: Path, source: str) -> None:
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(source, encoding="utf-8")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def _header(grammar: str, version: str) -> bytes:
    import hashlib

    digest = hashlib.sha256(grammar.encode("utf-8")).hexdigest()
    return _HEADER + (f" Lark {version}'s lark.tools.standalone, grammar sha256 {digest}, format {FORMAT}, "
                      f"Python {sys.version.split()[0]}; generated by policyc/parse/standalone.py, not to be "
                      "edited\n").encode("utf-8")


def generate(parser) -> str:
    """The source of the standalone module of Lark parser `parser` (lark.tools.standalone)."""
    import io

    from lark.tools.standalone import gen_standalone

    out = io.StringIO()
    gen_standalone(parser, out=out)
    return out.getvalue()
