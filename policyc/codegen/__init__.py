"""IR to BPF: choose the hook families a policy needs, render their C from templates/, compile
with clang (-target bpf, CO-RE), and write NAME.bpf.o, NAME.manifest.json and NAME.maps (the
maps' bytes: policyc/mapsfile.py).

Output is byte-identical for identical input: the C is compiled in a private directory under
fixed names with the debug paths mapped, and the manifest is written with sorted keys.
"""

from __future__ import annotations

from .. import abi
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..build_error import BuildError   # defined apart (policyc/build_error.py), re-exported here
from ..resources import resource_dir
from .. import __version__
from .. import mapsfile
from ..ir.model import Policy, Program
from ..ir.limits import over_limits
from ..ir.dfa import TOO_LARGE_HINT, DfaTooLarge, too_large_message
from .families import FAMILIES, TEMPLATE_FAMILIES, TEMPLATE_ORDER
from .tables import config_map, dfa_maps, limit_map, policy_dfa, transition_map

TEMPLATES = resource_dir("templates")
MANIFEST_FORMAT = mapsfile.MANIFEST_FORMAT   # 3: the maps' bytes and the rules in NAME.maps (policyc/mapsfile.py)
DEFAULT_RINGBUF_BYTES = abi.DEFAULT_RINGBUF_BYTES

# The hooks each template attaches (the code generator's registry, codegen/families.py, says).
HOOKS = {name: list(t.hooks) for name, t in TEMPLATE_FAMILIES.items()}
# The subject family's hooks where the state an exec makes (a subject, an exception, a
# transition) is committed, where the exec can no longer fail (in HOOKS["subject"]).
EXEC_COMMIT_HOOKS = ["bprm_creds_for_exec", "bprm_committing_creds"]
ENFORCED_FAMILIES = tuple(FAMILIES)


@dataclass(frozen=True)
class BuildResult:
    policy: str
    object_path: Path
    manifest_path: Path
    c_path: Path | None
    hooks: tuple[str, ...]
    maps_path: Path | None = None   # NAME.maps: the maps' bytes (policyc/mapsfile.py)


def unenforced_rules(policy: Policy):
    """Rules of families the kernel backend cannot enforce yet (reported by `build`)."""
    return [r for r in policy.rules if r.family not in ENFORCED_FAMILIES]


def template_families(policy: Policy) -> list[str]:
    """The hook families this policy needs, and only those. Under `default allow` an allow
    rule never changes an outcome, so only deny and audit rules call for a hook."""
    if policy.default == "deny":
        return list(TEMPLATE_ORDER)   # the default decides every family
    needed = {"subject"}
    for r in policy.rules:
        fam = FAMILIES[r.family]
        if r.decision != "allow":
            needed.update(fam.needs(r))
        if r.decision == "deny" and fam.protects:
            needed.add("file")   # rename/link protection of its paths lives in the file hooks
    return [t for t in TEMPLATE_ORDER if t in needed]


def template_flags(policy: Policy) -> dict:
    """What, beside the families, the C depends on."""
    return {
        "has_exe_subjects": any(s.kind == "exe" for s in policy.subjects),
        "has_exe_exceptions": any(s.kind == "exe" for s in policy.exceptions),
        # `owner` rules: the verdicts come in pairs (tables.py _dfa_maps) and file decisions
        # compare the inode's owner with the fsuid; a policy without them keeps the one lookup
        "has_owner_rules": any(r.owner for r in policy.rules),
    }


def render_c(families: list[str], has_exe_subjects: bool, has_exe_exceptions: bool,
             has_owner_rules: bool = False) -> str:
    import jinja2   # here, not at the top: `check` imports the pipeline and renders nothing

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    simple = [f for f in families if f in ("module", "bpf")]
    files = [f for f in families if f not in ("module", "bpf")] + (["module"] if simple else [])
    return env.get_template("policy.bpf.c.j2").render(
        version=__version__,
        families=files,
        simple_families=simple,
        has_exe_subjects=has_exe_subjects,
        has_exe_exceptions=has_exe_exceptions,
        has_owner_rules=has_owner_rules,
    )


def all_variants():
    """Every (families, flags) combination a policy can need: `tests/kernel/prebuild.py`
    compiles them all on the host so a VM guest never runs clang under emulation."""
    import itertools

    optional = [t for t in TEMPLATE_ORDER if t != "subject"]
    for n in range(len(optional) + 1):
        for fams in itertools.combinations(optional, n):
            for subj, exc in itertools.product((False, True), repeat=2):
                yield ["subject", *fams], subj, exc


def find_clang() -> str:
    for name in (os.environ.get("POLICYC_CLANG"), "clang-19", "clang-18", "clang-17", "clang-16", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise BuildError(
        "clang was not found",
        hint="install it with `scripts/setup.sh` (Debian: `apt-get install clang-19 libbpf-dev`), "
             "or point POLICYC_CLANG at a clang that can target bpf",
    )


def find_llvm_tool(clang: str, tool: str) -> str | None:
    """LLVM's TOOL (llvm-strip, llvm-objdump) for `clang`: the one of the same LLVM (clang-19 ->
    TOOL-19, or beside the real clang: /usr/lib/llvm-19/bin), else any on PATH; None when
    there is none (Debian: the `llvm-19` package)."""
    base = os.path.basename(clang)
    suffix = base[len("clang"):] if base.startswith("clang") else ""
    for cand in (os.path.join(os.path.dirname(clang), f"{tool}{suffix}"),
                 os.path.join(os.path.dirname(os.path.realpath(clang)), tool),
                 f"{tool}{suffix}", tool):
        found = shutil.which(cand)
        if found:
            return found
    return None


def find_objcopy(clang: str) -> str | None:
    """llvm-objcopy for `clang` (find_llvm_tool's): what takes the line info out (LINE_INFO)."""
    return find_llvm_tool(clang, "llvm-objcopy")


def find_strip(clang: str) -> str | None:
    """llvm-strip for `clang`: POLICYC_LLVM_STRIP, else find_llvm_tool's."""
    env = os.environ.get("POLICYC_LLVM_STRIP")
    if env:
        return shutil.which(env)
    return find_llvm_tool(clang, "llvm-strip")


def _libbpf_include() -> str:
    for d in ("/usr/include", "/usr/local/include"):
        if os.path.isfile(os.path.join(d, "bpf", "bpf_helpers.h")):
            return d
    raise BuildError("libbpf headers (bpf/bpf_helpers.h) were not found",
                     hint="install them with `scripts/setup.sh` (Debian: `apt-get install libbpf-dev`)")


def _cache_dir() -> Path:
    base = os.environ.get("POLICYC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "policyc")
    return Path(base) / "objects"


# How an object is made from the C: clang with these options (the paths, the libbpf include
# directory and the private build directory, are added by _compile and are not part of it),
# then, with STRIP, its DWARF removed (`llvm-strip -g`: the .debug_* sections and their
# relocations; .BTF and .BTF.ext, which libbpf loads and CO-RE relocates by, stay byte for
# byte) and the relocations of .BTF and .BTF.ext, which libbpf never applies (it reads
# relocations only for sections of code and for .maps, and finds a program's BTF.ext records
# by section name): 242 KB of the every-family object's 878 KB, nothing libbpf or the kernel
# reads. Part of every object's key: a change here is a new key.
CLANG_FLAGS = ("-target", "bpf", "-O2", "-g", "-D__TARGET_ARCH_x86",
               "-Wall", "-Wno-unused-function", "-Wno-visibility", "-Wno-missing-declarations")
STRIP = ("-g", "--remove-section=.rel.BTF", "--remove-section=.rel.BTF.ext")
OBJECT_KEY_FORMAT = "policyc-object/2"

# The line info of .BTF.ext (a source file, line and column for each instruction, its
# strings in .BTF) is read by one thing: the verifier, to print the source line beside each
# instruction of its log. libbpf hands it over for that alone, and nothing checks, relocates
# or attaches by it. It is 238 KB of the every-family object's 637 KB: the largest part of
# the output at every rule count (#12, output no larger than 3x AppArmor's binary policy).
# So an object leaves out its line info (the header's line_info_len 0, which libbpf reads as
# "none", since v0.0.x), its func info and CO-RE relocations byte for byte; with
# POLICYC_LINE_INFO=1 a build keeps it, under its own object key, for reading a verifier
# log (README, "verifier's log"). Without llvm-objcopy an object keeps it, under that key.
LINE_INFO_ENV = "POLICYC_LINE_INFO"


def keep_line_info() -> bool:
    return os.environ.get(LINE_INFO_ENV, "") not in ("", "0")


def without_line_info(ext: bytes) -> bytes:
    """A .BTF.ext section with no line info: the header (struct btf_ext_header) with
    line_info_len 0, then the func info and the CO-RE relocations as they were."""
    import struct

    if len(ext) < 24:
        raise ValueError(".BTF.ext is shorter than its header")
    magic, version, flags, hdr_len = struct.unpack_from("<HBBI", ext, 0)
    if magic != 0xEB9F or hdr_len < 24 or hdr_len > len(ext):
        raise ValueError(f".BTF.ext has no header libbpf reads (magic {magic:#x}, hdr_len {hdr_len})")
    func_off, func_len, _line_off, _line_len = struct.unpack_from("<4I", ext, 8)
    core_off, core_len = struct.unpack_from("<2I", ext, 24) if hdr_len >= 32 else (0, 0)
    body = ext[hdr_len:]
    func, core = body[func_off:func_off + func_len], body[core_off:core_off + core_len]
    if len(func) != func_len or len(core) != core_len or func_len % 4:
        raise ValueError(".BTF.ext's sections are not where its header says")
    head = bytearray(ext[:hdr_len])
    # func info first, then an empty line info and the CO-RE relocations right after it
    # (libbpf wants each section 4-byte aligned and inside the data)
    struct.pack_into("<4I", head, 8, 0, func_len, func_len, 0)
    if hdr_len >= 32:
        struct.pack_into("<2I", head, 24, func_len, core_len)
    return bytes(head) + func + core


def object_key(c_source: str, stripped: bool = True, line_info: bool = False) -> str:
    """The key of the object compiled from `c_source`: a digest of the C, the headers it
    includes from templates/common, the clang options and the strip step. One key, one
    object: the object cache (POLICYC_CACHE/objects/KEY.o) and the objects shipped in the
    package (codegen/prebuilt.py) are both looked up by it, so a changed template, header,
    ABI or flag is a new key and never finds an older object. The compiler is not in it:
    any clang gives a valid object for the same C and flags (the shipped ones come from
    the wheel builder's); `stripped=False` is the key of an object kept with its DWARF,
    made where no llvm-strip is found, and `line_info=True` of one that keeps its line
    info (LINE_INFO_ENV, or no llvm-objcopy)."""
    key = hashlib.sha256()
    for part in (OBJECT_KEY_FORMAT, " ".join(CLANG_FLAGS), " ".join(STRIP) if stripped else "no-strip",
                 *(() if line_info else ("no-line-info",))):
        key.update(part.encode() + b"\0")
    key.update(c_source.encode() + b"\0")
    for h in sorted((TEMPLATES / "common").glob("*.h")):
        key.update(h.name.encode() + b"\0" + h.read_bytes() + b"\0")
    return key.hexdigest()


def compile_c(c_source: str, name: str, line_info: bool | None = None) -> bytes:
    """The object for `c_source`: shipped in the package, else from the cache, else compiled
    (and cached). Rules are map data, so the C (and so the object) depends only on which hook
    families a policy needs; a rule change recompiles nothing. All three are found by
    `object_key`, so they are one object whichever way it comes. `line_info`: keep the line
    info (default: LINE_INFO_ENV says)."""
    from .prebuilt import shipped_object

    line_info = keep_line_info() if line_info is None else line_info
    key = object_key(c_source, line_info=line_info)
    obj = shipped_object(key)
    if obj is not None:
        return obj
    cached = _cache_dir() / f"{key}.o"
    if cached.is_file():
        return cached.read_bytes()
    clang = find_clang()
    strip = find_strip(clang)
    objcopy = None if line_info else find_objcopy(clang)
    if strip is None or (objcopy is None and not line_info):
        # kept with its DWARF or its line info, under that object's own key
        line_info = True
        cached = _cache_dir() / f"{object_key(c_source, stripped=strip is not None, line_info=True)}.o"
        if cached.is_file():
            return cached.read_bytes()
    obj = _compile(clang, _libbpf_include(), c_source, name, strip, None if line_info else objcopy)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(obj)
        os.replace(tmp, cached)
    except OSError:
        pass  # a read-only cache (the VM guest) only costs time
    return obj


def _compile(clang: str, inc: str, c_source: str, name: str, strip: str | None = None,
             objcopy: str | None = None) -> bytes:
    """clang on `c_source` (CLANG_FLAGS), then `strip` (llvm-strip, STRIP) when given, then
    with `objcopy` (llvm-objcopy) the line info out of .BTF.ext (LINE_INFO_ENV)."""
    with tempfile.TemporaryDirectory(prefix="policyc-build-") as tmp:
        for h in (TEMPLATES / "common").glob("*.h"):
            shutil.copy(h, os.path.join(tmp, h.name))
        # one fixed file name: the object then depends on the hook families alone
        src = os.path.join(tmp, "policy.bpf.c")
        Path(src).write_text(c_source)
        cmd = [
            clang, *CLANG_FLAGS,
            "-I.", "-isystem", inc,
            f"-ffile-prefix-map={tmp}=.", "-fdebug-compilation-dir=.",
            "-c", "policy.bpf.c", "-o", "policy.bpf.o",
        ]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"clang failed to compile the BPF program for `{name}`", detail=proc.stderr.strip(),
                             hint="this is a bug in policyc's templates, please report it with --emit-c output")
        if strip is not None:
            proc = subprocess.run([strip, *STRIP, "policy.bpf.o"], cwd=tmp, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BuildError(f"llvm-strip failed on the BPF object of `{name}`", detail=proc.stderr.strip(),
                                 hint=f"`{strip}` could not strip it; POLICYC_LLVM_STRIP names another")
        if objcopy is not None:
            _drop_line_info(objcopy, tmp, name)
        return Path(os.path.join(tmp, "policy.bpf.o")).read_bytes()


def _drop_line_info(objcopy: str, tmp: str, name: str) -> None:
    """policy.bpf.o in `tmp` without its line info (without_line_info), by llvm-objcopy."""
    def run(*args: str) -> None:
        proc = subprocess.run([objcopy, *args], cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"llvm-objcopy failed on the BPF object of `{name}`", detail=proc.stderr.strip(),
                             hint=f"`{objcopy}` could not rewrite .BTF.ext; {LINE_INFO_ENV}=1 keeps it as clang wrote it")

    run("--dump-section=.BTF.ext=btf.ext", "policy.bpf.o", "dumped.o")
    ext = Path(tmp, "btf.ext")
    try:
        ext.write_bytes(without_line_info(ext.read_bytes()))
    except ValueError as e:
        raise BuildError(f"the BPF object of `{name}` has a .BTF.ext policyc cannot read: {e}",
                         hint=f"{LINE_INFO_ENV}=1 keeps it as clang wrote it") from None
    run("--update-section=.BTF.ext=btf.ext", "policy.bpf.o")


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rule_list(policy: Policy) -> list[dict]:
    """The manifest's rule list: what names a rule in an audit record (id, text, location)."""
    return [
        {"id": r.id, "decision": r.decision, "family": r.family, "ops": list(r.ops),
         "text": r.text, "location": str(r.span),
         "enforced": r.family in ENFORCED_FAMILIES,
         "limit": ({"count": r.limit.count, "window_s": r.limit.window_s, "text": r.limit.text}
                   if r.limit else None),
         # only where written: a manifest without `owner` rules stays as it was
         **({"owner": True} if r.owner else {})}
        for r in policy.rules
    ]


def manifest_for(program: Program, policy: Policy, families: list[str], obj: bytes, maps: dict,
                 ringbuf_bytes: int, maps_blob: bytes, rules_at: dict) -> dict:
    """The manifest; MAPS are the manifest's entries of the maps (mapsfile.pack) and
    MAPS_BLOB the bytes of NAME.maps they point into, RULES_AT where the rule list is in it."""
    inputs = {}
    for f in sorted(program.sources):
        inputs[f] = _sha256(program.sources[f].encode())
    return {
        "format": MANIFEST_FORMAT,
        "policyc_version": __version__,
        "policy": policy.name,
        # where the policy stands in its program (command-line order, then source order, an
        # include standing where it is written): `policyc load DIR` loads in this order, so the
        # kernel's "first loaded" is the evaluator's
        "program_order": next(i for i, p in enumerate(program.policies) if p is policy),
        "mode": policy.mode,
        "default": policy.default,
        "source": {"file": policy.span.file, "line": policy.span.line, "col": policy.span.col},
        "default_location": str(policy.default_span) if policy.default_span else None,
        "inputs": inputs,
        "object": f"{policy.name}.bpf.o",
        "object_sha256": _sha256(obj),
        "families": families,
        "hooks": list(dict.fromkeys(h for f in families for h in HOOKS[f])),
        "subjects": [
            {"kind": s.kind, "exe": s.exe.text if s.exe else None, "cgroup": s.cgroup,
             "location": str(s.span)}
            for s in policy.subjects
        ],
        "exceptions": [
            {"kind": s.kind, "exe": s.exe.text if s.exe else None, "cgroup": s.cgroup,
             "location": str(s.span)}
            for s in policy.exceptions
        ],
        # the rule list is in NAME.maps (mapsfile: 1.9 MB of JSON for 10,000 rules, 32 KB
        # there); deploy.read_manifest puts it back as `rules`
        mapsfile.RULES_AT: {**rules_at, "count": len(policy.rules)},
        "ringbuf_bytes": ringbuf_bytes,
        "default_limit": ({"count": policy.default_limit.count, "window_s": policy.default_limit.window_s,
                           "text": policy.default_limit.text} if policy.default_limit else None),
        "maps": {name: maps[name] for name in sorted(maps)},
        "maps_file": mapsfile.file_name(policy.name),
        "maps_sha256": _sha256(maps_blob),
    }


def manifest_bytes(manifest: dict) -> bytes:
    """The manifest as written: compact JSON (no indentation: indenting cost 5% of a 10,000-rule
    build and a fifth of the file when it held the maps' hex), keys sorted, one line and a
    newline (mapsfile.json_bytes); `policyc inspect`, `python -m json.tool` or `jq .` shows it
    indented."""
    return mapsfile.json_bytes(manifest, newline=True)


def build_policy(program: Program, policy: Policy, out_dir: Path, emit_c: bool = False,
                 ringbuf_bytes: int = DEFAULT_RINGBUF_BYTES, build_record: dict | None = None) -> BuildResult:
    """`build_record`: what `policyc build` notes to know the next build of the same inputs
    unchanged (policyc/cli/build.py, `up_to_date`); the manifest holds it as `build`, with
    the object's `object_key`."""
    families = template_families(policy)
    for over in over_limits(policy):   # `policyc check` reports these as P041, at the rule
        raise BuildError(f"{over.message} ({over.rule.span})", hint=over.hint)
    try:
        dfa = policy_dfa(policy)   # the checks built it already (P041): the same automaton, not again
    except DfaTooLarge as e:
        raise BuildError(too_large_message(policy, e), hint=TOO_LARGE_HINT)
    maps = {"config": config_map(policy), **dfa_maps(dfa), **limit_map(policy), **transition_map(policy)}
    fixups: list[dict] = []
    for t in families:
        fill = TEMPLATE_FAMILIES[t].maps
        if fill is not None:
            own, own_fixups = fill(policy)
            maps.update(own)
            fixups += own_fixups
    c_source = render_c(families, **template_flags(policy))
    obj = compile_c(c_source, policy.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    obj_path = out_dir / f"{policy.name}.bpf.o"
    obj_path.write_bytes(obj)
    c_path = None
    if emit_c:
        c_path = out_dir / f"{policy.name}.bpf.c"
        c_path.write_text(c_source)
    maps_blob, map_specs, rules_at = mapsfile.pack(maps, mapsfile.json_bytes(rule_list(policy)))
    maps_path = out_dir / mapsfile.file_name(policy.name)
    maps_path.write_bytes(maps_blob)
    manifest = manifest_for(program, policy, families, obj, map_specs, ringbuf_bytes, maps_blob, rules_at)
    manifest["cgroup_fixups"] = fixups
    if build_record is not None:
        manifest["build"] = {**build_record, "object_key": object_key(c_source, line_info=keep_line_info())}
    manifest_path = out_dir / f"{policy.name}.manifest.json"
    manifest_path.write_bytes(manifest_bytes(manifest))
    return BuildResult(policy.name, obj_path, manifest_path, c_path, tuple(manifest["hooks"]), maps_path)
