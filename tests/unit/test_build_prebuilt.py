"""The BPF objects shipped in the package (#12, a cold build without clang): codegen/prebuilt.py,
setup.py. An object is found by `object_key`, the key of the C, the headers, the clang flags
and the strip step: shipped, cached and compiled objects are one object under one key, and a
changed template, header or flag never finds an older one. Every object is stripped of its
DWARF and the relocations of .BTF and .BTF.ext (libbpf never reads them); what libbpf reads
(.BTF, .BTF.ext, code, maps, their relocations) is unchanged by it."""

from __future__ import annotations

import lzma
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from policyc import codegen as C
from policyc.codegen import prebuilt as P

ROOT = Path(__file__).resolve().parents[2]
SMALL = (["subject", "file"], True, False)   # a variant clang compiles in a fraction of a second


@pytest.fixture
def no_clang(monkeypatch):
    """A build that would compile fails the test."""
    def refuse(*a, **k):
        raise AssertionError("clang was run")
    monkeypatch.setattr(C, "_compile", refuse)


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    d = tmp_path / "objects"
    d.mkdir()
    monkeypatch.setattr(P, "SHIPPED", d)
    monkeypatch.setenv("POLICYC_CACHE", str(tmp_path / "cache"))
    return d


def ship(directory: Path, c_source: str, obj: bytes) -> Path:
    path = directory / f"{C.object_key(c_source)}{P.SUFFIX}"
    path.write_bytes(lzma.compress(obj, format=lzma.FORMAT_XZ))
    return path


# ---- the key ------------------------------------------------------------------------------------

def test_the_key_covers_the_c_the_headers_the_flags_and_the_strip_step(tmp_path, monkeypatch):
    c = C.render_c(*SMALL)
    k = C.object_key(c)
    assert re.fullmatch(r"[0-9a-f]{64}", k) and C.object_key(c) == k
    assert C.object_key(c + "\n") != k
    assert C.object_key(C.render_c(["subject", "file"], False, False)) != k
    assert C.object_key(c, stripped=False) != k
    monkeypatch.setattr(C, "CLANG_FLAGS", C.CLANG_FLAGS[:-1])
    assert C.object_key(c) != k
    monkeypatch.undo()
    templates = tmp_path / "templates"
    shutil.copytree(C.TEMPLATES, templates)
    monkeypatch.setattr(C, "TEMPLATES", templates)
    assert C.object_key(c) == k                       # the same headers: the same key
    header = templates / "common" / "abi.h"
    header.write_text(header.read_text() + "\n/* changed */\n")
    assert C.object_key(c) != k                       # an ABI header changed: a new key


def test_the_version_is_in_the_c_and_so_in_the_key(monkeypatch):
    k = C.object_key(C.render_c(*SMALL))
    monkeypatch.setattr(C, "__version__", "99.0.0")
    assert C.object_key(C.render_c(*SMALL)) != k


# ---- lookup: shipped, then cached, then clang ------------------------------------------------------

def test_a_shipped_object_is_used_without_clang(shipped, no_clang, monkeypatch):
    monkeypatch.setenv("POLICYC_CLANG", "/nonexistent/clang")
    monkeypatch.setenv("PATH", "/nonexistent")
    c = C.render_c(*SMALL)
    ship(shipped, c, b"\x7fELF shipped")
    assert C.compile_c(c, "p") == b"\x7fELF shipped"
    assert not (shipped.parent / "cache").exists()   # nothing compiled, nothing cached


def test_a_shipped_object_of_other_templates_is_never_used(shipped, tmp_path, monkeypatch):
    c = C.render_c(*SMALL)
    ship(shipped, c, b"\x7fELF old")
    templates = tmp_path / "templates"
    shutil.copytree(C.TEMPLATES, templates)
    (templates / "common" / "policy.h").write_text((templates / "common" / "policy.h").read_text() + "\n")
    monkeypatch.setattr(C, "TEMPLATES", templates)
    compiled = []
    monkeypatch.setattr(C, "_compile", lambda clang, inc, src, name, strip=None, objcopy=None: compiled.append(strip) or b"new")
    assert C.compile_c(c, "p") == b"new" and len(compiled) == 1


def test_a_variant_not_shipped_is_compiled_stripped_and_cached(shipped, monkeypatch):
    calls = []
    monkeypatch.setattr(C, "_compile", lambda clang, inc, src, name, strip=None, objcopy=None: calls.append(strip) or b"obj")
    c = C.render_c(*SMALL)
    assert C.compile_c(c, "p") == b"obj"
    assert calls and calls[0] and "llvm-strip" in os.path.basename(calls[0])
    assert (shipped.parent / "cache" / "objects" / f"{C.object_key(c)}.o").read_bytes() == b"obj"
    assert C.compile_c(c, "p") == b"obj" and len(calls) == 1   # then from the cache


def test_without_llvm_strip_the_object_keeps_its_dwarf_under_its_own_key(shipped, monkeypatch):
    c = C.render_c(*SMALL)
    ship(shipped, c, b"stripped")
    monkeypatch.setattr(P, "SHIPPED", shipped.parent / "none")    # not shipped
    monkeypatch.setattr(C, "find_strip", lambda clang: None)
    calls = []
    monkeypatch.setattr(C, "_compile", lambda clang, inc, src, name, strip=None, objcopy=None: calls.append(strip) or b"dwarf")
    assert C.compile_c(c, "p") == b"dwarf" and calls == [None]
    cache = shipped.parent / "cache" / "objects"
    assert [p.name for p in cache.iterdir()] == [f"{C.object_key(c, stripped=False, line_info=True)}.o"]


def test_a_damaged_shipped_object_is_compiled_instead(shipped, monkeypatch):
    c = C.render_c(*SMALL)
    (shipped / f"{C.object_key(c)}{P.SUFFIX}").write_bytes(b"not xz")
    monkeypatch.setattr(C, "_compile", lambda clang, inc, src, name, strip=None, objcopy=None: b"compiled")
    assert C.compile_c(c, "p") == b"compiled"


def test_find_strip_takes_the_llvm_of_the_clang(tmp_path, monkeypatch):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name in ("clang-42", "llvm-strip-42", "llvm-strip"):
        (bin_ / name).write_text("#!/bin/sh\n")
        (bin_ / name).chmod(0o755)
    monkeypatch.delenv("POLICYC_LLVM_STRIP", raising=False)
    assert C.find_strip(str(bin_ / "clang-42")) == str(bin_ / "llvm-strip-42")
    monkeypatch.setenv("POLICYC_LLVM_STRIP", str(bin_ / "llvm-strip"))
    assert C.find_strip(str(bin_ / "clang-42")) == str(bin_ / "llvm-strip")


# ---- the shipped set ---------------------------------------------------------------------------------

def test_the_shipped_variants_are_every_default_deny_variant():
    variants = P.shipped_variants()
    assert all(v in [(f, s, e) for f, s, e in C.all_variants()] for v in variants)
    text = ("policy a {\n subject exe \"/usr/bin/a\"\n default deny\n}\n"
            "policy b {\n subject cgroup \"/x\"\n except exe \"/usr/bin/b\"\n default deny\n}\n")
    program = load_program_text(text)
    for p in program.policies:
        flags = C.template_flags(p)
        assert (C.template_families(p), flags["has_exe_subjects"], flags["has_exe_exceptions"]) in variants


def load_program_text(text: str):
    import tempfile

    from policyc.diagnostics import Diagnostics
    from policyc.lower import load_program

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "p.policy"
        f.write_text(text)
        diags = Diagnostics()
        program = load_program([str(f)], diags)
        assert program is not None, [str(x) for x in diags.items]
        return program


def test_write_shipped_writes_the_compiled_object_under_its_key(tmp_path, monkeypatch):
    monkeypatch.setenv("POLICYC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(P, "SHIPPED", tmp_path / "none")
    written = P.write_shipped(tmp_path / "objects", variants=[SMALL, SMALL])
    c = C.render_c(*SMALL)
    assert [p.name for p in written] == [f"{C.object_key(c)}{P.SUFFIX}"]   # one per key
    assert P.shipped_object(C.object_key(c), tmp_path / "objects") == C.compile_c(c, "p")


# ---- stripping keeps what libbpf loads ----------------------------------------------------------------

def _tool(name: str) -> str:
    clang = C.find_clang()
    suffix = os.path.basename(clang)[len("clang"):]
    found = shutil.which(f"{name}{suffix}") or shutil.which(name)
    assert found, f"{name} is missing (scripts/setup.sh installs llvm-19)"
    return found


def _sections(path: Path) -> dict[str, str]:
    out = subprocess.run([_tool("llvm-objdump"), "-h", str(path)], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines() if re.match(r"\s*\d+ ", line)]
    return {r[1]: r[2] for r in rows if len(r) >= 3}


def _section_bytes(path: Path, name: str, tmp: Path) -> bytes:
    dest = tmp / "section.bin"
    subprocess.run([_tool("llvm-objcopy"), f"--dump-section={name}={dest}", str(path), str(tmp / "junk.o")],
                   check=True, capture_output=True)
    return dest.read_bytes()


def _relocations(path: Path) -> dict[str, list[tuple[str, str, str]]]:
    """Relocations by section, each (offset, type, symbol name): independent of symbol indices."""
    out = subprocess.run([_tool("llvm-readelf"), "-r", str(path)], capture_output=True, text=True, check=True).stdout
    rel: dict[str, list] = {}
    current = None
    for line in out.splitlines():
        m = re.match(r"Relocation section '([^']+)'", line)
        if m:
            current = rel.setdefault(m.group(1), [])
        elif current is not None and re.match(r"[0-9a-f]{16} ", line):
            f = line.split()
            current.append((f[0], f[2], f[4] if len(f) > 4 else ""))
    return rel


def _symbols(path: Path) -> set[tuple[str, ...]]:
    out = subprocess.run([_tool("llvm-readelf"), "-s", str(path)], capture_output=True, text=True, check=True).stdout
    rows = set()
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 8 and f[0].endswith(":") and f[0][:-1].isdigit():
            # (value, size, type, binding, name): not the section index, which strip renumbers
            rows.add((f[1], f[2], f[3], f[4], f[7] if len(f) > 7 else ""))
    return rows


def test_stripping_removes_dwarf_only(tmp_path):
    c = C.render_c(*SMALL)
    clang = C.find_clang()
    strip = C.find_strip(clang)
    assert strip, "llvm-strip is missing (scripts/setup.sh installs llvm-19)"
    full, stripped = tmp_path / "full.o", tmp_path / "stripped.o"
    full.write_bytes(C._compile(clang, C._libbpf_include(), c, "p"))
    stripped.write_bytes(C._compile(clang, C._libbpf_include(), c, "p", strip))
    assert stripped.stat().st_size < 0.8 * full.stat().st_size
    a, b = _sections(full), _sections(stripped)
    assert [s for s in a if "debug" in s] and not [s for s in b if "debug" in s]
    # libbpf skips relocations of sections that are not code or .maps: .BTF's and .BTF.ext's go
    unread = (".rel.BTF", ".rel.BTF.ext")
    assert set(unread) <= set(a) and not set(unread) & set(b)
    kept = {s: size for s, size in a.items() if "debug" not in s and s not in (".strtab", ".symtab", *unread)}
    assert kept == {s: size for s, size in b.items() if s not in (".strtab", ".symtab")}
    assert {".BTF", ".BTF.ext", ".maps", "license"} <= set(b)
    for name in (".BTF", ".BTF.ext", ".text", ".maps", "lsm/file_open"):
        assert _section_bytes(full, name, tmp_path) == _section_bytes(stripped, name, tmp_path), name
    ra, rb = _relocations(full), _relocations(stripped)
    assert {k: v for k, v in ra.items() if "debug" not in k and k not in unread} == rb   # code, maps: as they were
    sa, sb = _symbols(full), _symbols(stripped)
    assert sb < sa and all(s[2] in ("SECTION", "FILE") for s in sa - sb)
    assert all("debug" in s[4] or s[2] == "FILE" for s in sa - sb)
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    dumps = [subprocess.run([bpftool, "btf", "dump", "file", str(p)], capture_output=True, text=True, check=True).stdout
             for p in (full, stripped)]
    assert dumps[0] == dumps[1] and "STRUCT" in dumps[0]
    # libbpf opens it (parses BTF, BTF.ext and the CO-RE relocations) without a kernel
    r = subprocess.run([bpftool, "gen", "skeleton", str(stripped), "name", "p"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _btf_ext_parts(ext: bytes) -> dict[str, bytes]:
    """The func info, line info and CO-RE relocations of a .BTF.ext section, by its header."""
    import struct

    hdr_len = struct.unpack_from("<I", ext, 4)[0]
    fo, fl, lo, ll, co, cl = struct.unpack_from("<6I", ext, 8)
    body = ext[hdr_len:]
    return {"func": body[fo:fo + fl], "line": body[lo:lo + ll], "core": body[co:co + cl]}


def test_the_object_leaves_out_its_line_info_only(tmp_path, monkeypatch):
    """#12: the line info (238 KB of the every-family object) is read only by the verifier's
    log; without it every other section, relocation and .BTF.ext part is as it was, and
    libbpf opens the object. POLICYC_LINE_INFO=1 keeps it, under another key."""
    c = C.render_c(*SMALL)
    clang = C.find_clang()
    strip, objcopy = C.find_strip(clang), C.find_objcopy(clang)
    assert strip and objcopy, "llvm-strip or llvm-objcopy is missing (scripts/setup.sh installs llvm-19)"
    kept, dropped = tmp_path / "kept.o", tmp_path / "dropped.o"
    kept.write_bytes(C._compile(clang, C._libbpf_include(), c, "p", strip))
    dropped.write_bytes(C._compile(clang, C._libbpf_include(), c, "p", strip, objcopy))
    a, b = _sections(kept), _sections(dropped)
    assert set(a) == set(b)
    assert {s: n for s, n in a.items() if s != ".BTF.ext"} == {s: n for s, n in b.items() if s != ".BTF.ext"}
    pa = _btf_ext_parts(_section_bytes(kept, ".BTF.ext", tmp_path))
    pb = _btf_ext_parts(_section_bytes(dropped, ".BTF.ext", tmp_path))
    assert len(pa["line"]) > 1000 and pb["line"] == b""
    assert pa["func"] == pb["func"] and pa["core"] == pb["core"] and pb["core"]
    for name in (".BTF", ".text", ".maps", "lsm/file_open"):
        assert _section_bytes(kept, name, tmp_path) == _section_bytes(dropped, name, tmp_path), name
    assert _relocations(kept) == _relocations(dropped)
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    r = subprocess.run([bpftool, "gen", "skeleton", str(dropped), "name", "p"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # the default object has no line info; POLICYC_LINE_INFO=1 is another key
    monkeypatch.delenv(C.LINE_INFO_ENV, raising=False)
    assert not C.keep_line_info()
    monkeypatch.setenv(C.LINE_INFO_ENV, "1")
    assert C.keep_line_info() and C.object_key(c, line_info=True) != C.object_key(c)


def test_without_line_info_refuses_what_is_no_btf_ext():
    import struct

    good = struct.pack("<HBBI6I", 0xEB9F, 1, 0, 32, 0, 4, 4, 8, 12, 4) + b"FFFFLLLLLLLLCCCC"
    out = C.without_line_info(good)
    assert _btf_ext_parts(out) == {"func": b"FFFF", "line": b"", "core": b"CCCC"}
    for bad in (b"", good[:20], b"\0\0" + good[2:], struct.pack("<HBBI6I", 0xEB9F, 1, 0, 32, 0, 4, 4, 8, 12, 40) + b"x" * 16):
        with pytest.raises(ValueError):
            C.without_line_info(bad)


# ---- the wheel hook (setup.py) ----------------------------------------------------------------------

def _setup_py():
    import importlib.util

    spec = importlib.util.spec_from_file_location("policyc_setup_py", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)   # not as __main__: setup() does not run
    return module


def test_the_wheel_build_compiles_the_shipped_objects(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "SHIPPED", tmp_path / "none")
    setup_py = _setup_py()
    assert setup_py.build_py_with_objects.__mro__[1].__name__ == "build_py"
    written = setup_py.ship_objects(tmp_path / "lib", "require")
    objects = tmp_path / "lib" / "policyc" / "codegen" / "objects"
    keys = {C.object_key(C.render_c(*v)) for v in P.shipped_variants()}
    assert sorted(written) == sorted(objects.iterdir())
    assert {p.name for p in objects.iterdir()} == {f"{k}{P.SUFFIX}" for k in keys}
    for k in keys:
        obj = P.shipped_object(k, objects)
        assert obj.startswith(b"\x7fELF") and b".debug_info" not in obj and b".BTF.ext" in obj
    stale = objects / f"{'0' * 64}{P.SUFFIX}"
    stale.write_bytes(b"an earlier build's")
    assert sorted(setup_py.ship_objects(tmp_path / "lib", "require")) == sorted(written)
    assert not stale.exists()                 # build/ is reused: only this build's objects ship
    assert setup_py.ship_objects(tmp_path / "lib", "0") == [] and not objects.exists()
    with pytest.raises(SystemExit, match="expected auto, require or 0"):
        setup_py.ship_objects(tmp_path / "lib1", "yes")


def test_the_wheel_build_without_clang_warns_or_fails_as_asked(tmp_path, monkeypatch):
    setup_py = _setup_py()
    monkeypatch.setenv("POLICYC_CLANG", "")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    warned = []
    assert setup_py.ship_objects(tmp_path / "lib", "auto", warned.append) == []
    assert len(warned) == 1 and "no shipped BPF objects" in warned[0] and "clang was not found" in warned[0]
    assert not (tmp_path / "lib" / "policyc" / "codegen" / "objects").exists()
    with pytest.raises(SystemExit, match="POLICYC_PREBUILT=require"):
        setup_py.ship_objects(tmp_path / "lib", "require")
