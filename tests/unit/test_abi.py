"""policyc/abi.py is the one kernel ABI: the committed C header is what it generates, and clang
lays out and numbers every struct, enum and constant of it as Python does.

The layout tests compile a real policy object (every hook family, exe subjects and exceptions)
with a probe appended that names every enum as a type and every #define as an enum value, and
compare the BTF clang emits with policyc/abi.py: each member's name, type, offset and size,
each enum member's value, each map's key and value type. The Python side packs by member
name (abi.Struct.pack_fields), so a test that packs distinct values by name and reads them back
at clang's offsets proves every Python writer and reader agrees with the C.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from policyc import abi

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
FULL_VARIANT = (["subject", "file", "execmap", "net", "mount", "capability", "task", "module", "bpf"], True, True)


# ---- the committed header --------------------------------------------------------------------
def test_the_committed_header_is_what_abi_py_generates():
    committed = (TEMPLATES / "common" / "abi.h").read_text()
    assert committed == abi.c_header(), "templates/common/abi.h differs: run `python -m policyc.abi --write`"


def test_the_generator_runs_as_a_module():
    r = subprocess.run([sys.executable, "-m", "policyc.abi", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "policyc.abi"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == abi.c_header()


def _abi_names() -> set[str]:
    names = {c.name for g in abi.DEFINES for c in g.items}
    names |= {m.name for e in abi.ENUMS for m in e.members}
    return names


def test_no_template_keeps_a_hand_copy():
    """Every shared constant, enum and struct is defined in abi.h only: a second definition
    would be a copy to drift (a redefined macro is only a warning to clang)."""
    names = _abi_names()
    tags = {e.name for e in abi.ENUMS} | {s.name for s in abi.STRUCTS}
    files = [*TEMPLATES.glob("*.j2"), *(p for p in (TEMPLATES / "common").glob("*.h") if p.name != "abi.h")]
    for f in files:
        text = f.read_text()
        for m in re.finditer(r"^\s*#define\s+(\w+)", text, re.M):
            assert m.group(1) not in names, f"{f.name} defines {m.group(1)}, which abi.h holds"
        for m in re.finditer(r"\b(?:struct|enum)\s+(\w+)\s*\{", text):
            assert m.group(1) not in tags, f"{f.name} defines {m.group(1)}, which abi.h holds"
        for m in re.finditer(r"enum\s*\w*\s*\{([^}]*)\}", text):
            for item in m.group(1).split(","):
                name = item.split("=")[0].strip()
                assert name not in names, f"{f.name} defines {name}, which abi.h holds"


def test_event_h_and_policy_h_include_the_generated_header():
    assert '#include "abi.h"' in (TEMPLATES / "common" / "event.h").read_text()
    assert '#include "event.h"' in (TEMPLATES / "common" / "policy.h").read_text()


# ---- the Python side -------------------------------------------------------------------------
@pytest.mark.parametrize("s", abi.STRUCTS + (abi.EVENT_HEADER,), ids=lambda s: s.name)
def test_the_python_format_puts_each_member_at_its_offset(s):
    codes = [slot.code for slot in s.slots]
    for i, slot in enumerate(s.slots):
        assert struct.calcsize("<" + "".join(codes[:i])) == slot.offset, slot.field.name
    assert struct.calcsize(s.format) == s.size


@pytest.mark.parametrize("s", abi.STRUCTS, ids=lambda s: s.name)
def test_pack_fields_round_trips(s):
    values = _distinct_values(s)
    assert s.unpack_fields(s.pack_fields(**values)) == values


def test_pack_fields_refuses_unknown_members():
    with pytest.raises(KeyError):
        abi.NET_ENTRY.pack_fields(port=1)
    with pytest.raises(ValueError):
        abi.DFA_STATE.pack_fields(next=(1, 2))


def test_labels_and_names():
    assert abi.HOOKS[abi.HOOK_PATH_RENAME] == "path_rename" and abi.HOOKS[abi.HOOK_PATH_LINK] == "path_link"
    assert len(abi.HOOKS) < abi.POLICYC_N_HOOKS
    assert abi.OP.index["exec-map"] == abi.OP_EXEC_MAP and abi.NET_OPS[abi.NET_OP_BIND] == "bind"
    assert max(abi.OPS) < abi.POLICYC_N_OPS and abi.POLICYC_N_OPS & (abi.POLICYC_N_OPS - 1) == 0
    assert abi.DECISION_DENY > abi.DECISION_AUDIT > abi.DECISION_ALLOW    # the value is the precedence
    assert abi.PROTO_MASK_ANY & sum(abi.PROTOS) == sum(abi.PROTOS)
    assert abi.EVENT_HEADER.size == abi.POLICYC_EVENT.offset("path")
    # a hook's label is its LSM hook's name, the C name's tail
    aliases = {"HOOK_BPRM_CHECK": "bprm_check_security"}
    for m in abi.HOOK.members:
        if m.label is not None:
            assert m.label == aliases.get(m.name, m.name.removeprefix("HOOK_").lower()), m.name


# ---- the errno of a denial (#16) ---------------------------------------------------------------
DENY_ERRNO = {"file": "EACCES", "exec": "EACCES", "net": "EACCES", "mount": "EPERM", "capability": "EPERM",
              "signal": "EPERM", "ptrace": "EPERM", "module": "EPERM", "bpf": "EPERM"}


@pytest.mark.parametrize("label,want", sorted(DENY_ERRNO.items()))
def test_deny_errno_of_every_family_by_label_and_number(label, want):
    assert abi.DENY_ERRNO_BY_FAMILY[label] == want
    assert abi.deny_errno(label) == want
    assert abi.deny_errno(abi.FAMILY.index[label]) == want


def test_deny_errno_covers_every_family():
    assert set(abi.FAMILY.labels.values()) == set(DENY_ERRNO) == set(abi.DENY_ERRNO_BY_FAMILY)
    assert set(abi.DENY_ERRNO_BY_FAMILY.values()) == {"EACCES", "EPERM"}


def test_the_header_defines_the_eacces_families_as_deny_errno_by_family():
    import errno

    header = (TEMPLATES / "common" / "abi.h").read_text()
    defined = {m.group(1): int(m.group(2), 0)
               for m in re.finditer(r"^#define\s+(EPERM|EACCES|POLICYC_EACCES_FAMILIES)\s+(\w+)", header, re.M)}
    assert defined["EPERM"] == errno.EPERM and defined["EACCES"] == errno.EACCES
    mask = defined["POLICYC_EACCES_FAMILIES"]
    assert mask == abi.POLICYC_EACCES_FAMILIES
    # bit n is set exactly for the families whose denials return EACCES, and no other bit
    for value, label in abi.FAMILY.labels.items():
        assert bool(mask >> value & 1) == (abi.DENY_ERRNO_BY_FAMILY[label] == "EACCES"), label
    assert mask & ~sum(1 << v for v in abi.FAMILY.labels) == 0
    assert mask == sum(1 << abi.FAMILY.index[f] for f in ("file", "exec", "net"))
    # policy.h's deny_errno() reads bit `family` of the mask, an int: a family below 32
    assert max(abi.FAMILY.labels) < 32


def test_the_compiler_and_the_audit_side_take_the_abi_from_abi_py():
    from policyc.audit import event as E
    from policyc.codegen import tables as T
    from policyc import deploy

    for name in ("CONFIG", "DFA_STATE", "VERDICT", "SIMPLE_VERDICT", "TASK_RULE", "NET_KEY", "NET_SLICE",
                 "NET_ENTRY", "RULE_LIMIT"):
        assert isinstance(getattr(T, name), abi.Struct), name
    assert E.HEADER is abi.EVENT_HEADER and E.HOOKS is abi.HOOKS and deploy.COUNTERS is abi.POLICYC_COUNTERS
    assert T.RANK == {"allow": 0, "audit": 1, "deny": 2} and T.N_OPS == abi.POLICYC_N_OPS
    for op, idx in T.FILE_OP_INDEX.items():
        assert abi.constant("OP_" + op.upper().replace("-", "_")) == idx
    assert set(deploy.STATE_MAPS) <= set(abi.MAPS)


@pytest.mark.parametrize("module", ["policyc.audit.reader", "policyc.execute", "policyc.deploy", "policyc.abi"])
def test_the_audit_side_imports_no_compiler_module(module):
    code = (f"import sys, {module}\n"
            "bad = sorted(m for m in sys.modules if m in ('lark', 'jinja2') or m.split('.')[:2] in "
            "(['policyc', 'parse'], ['policyc', 'lower'], ['policyc', 'codegen'], ['policyc', 'checks']))\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_abi_py_imports_nothing_of_policyc():
    r = subprocess.run([sys.executable, "-c", "import sys, policyc.abi; "
                        "extra = sorted(m for m in sys.modules if m.startswith('policyc.') and m != 'policyc.abi'); "
                        "assert not extra, extra"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    src = (ROOT / "policyc" / "abi.py").read_text()
    assert not re.search(r"^\s*(from\s+\.|from\s+policyc|import\s+policyc)", src, re.M)


# ---- clang's view: the BTF of a compiled policy object ----------------------------------------
def probe_source() -> str:
    """Appended to the policy's C: every abi enum and struct as a type clang must emit, and
    every #define and enum member as an enum value, as the policy's C sees it."""
    lines = ["/* test_abi.py's probe */"]
    for i, e in enumerate(abi.ENUMS):
        lines.append(f"enum {e.name} abi_probe_enum_{i};")
    for s in abi.STRUCTS:
        lines.append(f"struct {s.name} abi_probe_struct_{s.name};")
    values = ",\n".join(f"\tABI_PROBE_{n} = {n}" for n in sorted(_abi_names()))
    lines += ["enum abi_probe_values {", values, "};", "enum abi_probe_values abi_probe_values_var;"]
    return "\n".join(lines) + "\n"


class Btf:
    def __init__(self, types: list[dict]):
        self.types = {t["id"]: t for t in types}
        self.named = {}
        for t in types:
            self.named.setdefault((t["kind"], t.get("name")), t)

    def type_of(self, type_id: int) -> tuple[str, int | None, int]:
        """(C type name, array count or None, size) of a type id."""
        t = self.types[type_id]
        kind = t["kind"]
        if kind in ("CONST", "VOLATILE"):
            return self.type_of(t["type_id"])
        if kind == "TYPEDEF":
            return t["name"], None, self.type_of(t["type_id"])[2]
        if kind == "ARRAY":
            name, _, size = self.type_of(t["type_id"])
            return name, t["nr_elems"], size * t["nr_elems"]
        if kind == "STRUCT":
            return f"struct {t['name']}", None, t["size"]
        if kind in ("INT", "ENUM"):
            return t["name"], None, t["size"]
        if kind == "PTR":
            return self.type_of(t["type_id"])[0] + " *", None, 8
        raise AssertionError(f"unexpected BTF kind {kind}")

    def struct(self, name: str) -> tuple[int, list[tuple]]:
        t = self.named[("STRUCT", name)]
        members = []
        for m in t["members"]:
            assert m["bits_offset"] % 8 == 0, (name, m)
            ctype, count, size = self.type_of(m["type_id"])
            members.append((m["name"], ctype, count, m["bits_offset"] // 8, size))
        return t["size"], members

    def enum(self, name: str) -> list[tuple[str, int]]:
        return [(v["name"], v["val"]) for v in self.named[("ENUM", name)]["values"]]

    def maps(self) -> dict[str, dict[str, str]]:
        """map name -> {"key": C type, "value": C type} (absent for a ring buffer's)."""
        out = {}
        sec = self.named[("DATASEC", ".maps")]
        for v in sec["vars"]:
            var = self.types[v["type_id"]]
            spec = self.types[var["type_id"]]
            out[var["name"]] = {m["name"]: self.type_of(m["type_id"])[0].removesuffix(" *")
                                for m in spec["members"] if m["name"] in ("key", "value")}
        return out


@pytest.fixture(scope="module")
def full_object(tmp_path_factory) -> Path:
    from policyc.codegen import _compile, _libbpf_include, find_clang, render_c

    src = render_c(*FULL_VARIANT) + probe_source()
    obj = tmp_path_factory.mktemp("abi") / "policy.bpf.o"
    obj.write_bytes(_compile(find_clang(), _libbpf_include(), src, "abi-probe"))
    return obj


@pytest.fixture(scope="module")
def btf(full_object) -> Btf:
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    r = subprocess.run([bpftool, "-j", "btf", "dump", "file", str(full_object)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return Btf(json.loads(r.stdout)["types"])


def _declared(s: abi.Struct) -> list[tuple]:
    """The struct's members as abi.py declares them (not the padding it works out)."""
    return [(sl.field.name, sl.field.ctype, sl.count if sl.field.count is not None else None, sl.offset, sl.size)
            for sl in s.slots if not sl.implicit]


@pytest.mark.parametrize("s", abi.STRUCTS, ids=lambda s: s.name)
def test_every_member_where_clang_puts_it(btf, s):
    size, members = btf.struct(s.name)
    assert members == _declared(s)
    assert size == s.size


@pytest.mark.parametrize("e", abi.ENUMS, ids=lambda e: e.name)
def test_every_enum_as_clang_numbers_it(btf, e):
    assert btf.enum(e.name) == [(m.name, m.value) for m in e.members]


def test_every_constant_as_the_policy_c_sees_it(btf):
    got = {n.removeprefix("ABI_PROBE_"): v for n, v in btf.enum("abi_probe_values")}
    assert got == {n: abi.constant(n) for n in _abi_names()}


def test_every_map_with_its_key_and_value(btf):
    maps = btf.maps()
    assert set(maps) == set(abi.MAPS)
    for name, m in abi.MAPS.items():
        want = {k: v for k, v in (("key", m.key), ("value", m.value)) if v}
        assert maps[name] == want, name


def _distinct_values(s: abi.Struct) -> dict:
    """A value per member, each different (and never zero), fitting its type."""
    out, n = {}, 1
    for sl in s.slots:
        f = sl.field
        if sl.code.endswith("x"):
            continue
        if sl.code.endswith("s"):
            out[f.name] = bytes((n + i) & 0xFF or 1 for i in range(sl.size))
            n += sl.size
        elif f.count is not None:
            out[f.name] = tuple((n + i) % 251 + 1 for i in range(sl.count))
            n += sl.count
        else:
            out[f.name] = n
            n += 1
    return out


@pytest.mark.parametrize("s", abi.STRUCTS, ids=lambda s: s.name)
def test_pack_fields_puts_each_value_at_clangs_offset(btf, s):
    values = _distinct_values(s)
    data = s.pack_fields(**values)
    _, members = btf.struct(s.name)
    for name, ctype, count, offset, size in members:
        if name.startswith("pad") or name not in values:
            continue
        raw = data[offset:offset + size]
        v = values[name]
        if isinstance(v, bytes):
            assert raw == v, name
        elif count is not None:
            elem = size // count
            assert tuple(int.from_bytes(raw[i:i + elem], "little") for i in range(0, size, elem)) == v, name
        else:
            assert int.from_bytes(raw, "little") == v, name


def test_the_event_header_ends_where_clang_puts_path(btf):
    _, members = btf.struct("policyc_event")
    assert dict((m[0], m[3]) for m in members)["path"] == abi.EVENT_HEADER.size


def test_map_data_written_by_codegen_reads_right_in_clangs_layout(btf, tmp_path):
    """Map contents codegen writes, read back at clang's offsets: a member swapped on one
    side only (port_lo/port_hi, rule_id/target_bit, verdict/protect_rule) fails here."""
    from policyc.codegen import tables as T
    from policyc.diagnostics import Diagnostics
    from policyc.lower import load_program

    src = tmp_path / "p.policy"
    src.write_text('policy p {\n subject all\n deny file write "/etc/**"\n'
                   ' deny net connect tcp 10.0.0.0/8 port 22-80\n'
                   ' deny signal kill to exe "/usr/sbin/x"\n'
                   ' audit ptrace to cgroup "/svc"\n}\n')
    diags = Diagnostics()
    program = load_program([str(src)], diags)
    assert program is not None, [str(d) for d in diags.items]
    (policy,) = program.policies
    rules = {r.text: r.id for r in policy.rules}

    def member(struct_name, data, name):
        _, members = btf.struct(struct_name)
        m = next(x for x in members if x[0] == name)
        return int.from_bytes(data[m[3]:m[3] + m[4]], "little")

    (entry,) = [v for _, v in T.net_maps(policy)["net_entries"].entries]
    assert (member("net_entry", entry, "port_lo"), member("net_entry", entry, "port_hi")) == (22, 80)
    assert member("net_entry", entry, "rule_id") == rules["deny net connect tcp 10.0.0.0/8 port 22-80"]
    assert member("net_entry", entry, "proto_mask") == abi.PROTO_TCP
    assert member("net_entry", entry, "decision") == abi.DECISION_DENY

    task, fixups = T.task_maps(policy)
    by_rule = {member("task_rule", v, "rule_id"): v for _, v in task["task_rules"].entries}
    kill = by_rule[rules['deny signal kill to exe "/usr/sbin/x"']]
    assert member("task_rule", kill, "target_bit") == 0 and member("task_rule", kill, "kind") == abi.TASK_SIGNAL
    assert member("task_rule", kill, "target_kind") == abi.TARGET_EXE
    assert member("task_rule", kill, "sig_mask") == 1 << (9 - 1)
    ptrace = by_rule[rules['audit ptrace to cgroup "/svc"']]
    assert member("task_rule", ptrace, "target_kind") == abi.TARGET_CGROUP
    assert member("task_rule", ptrace, "decision") == abi.DECISION_AUDIT
    (fix,) = fixups
    assert fix["offset"] == dict((m[0], m[3]) for m in btf.struct("task_rule")[1])["target_cgroup"]

    dfa = T.policy_dfa(policy)
    maps = T.dfa_maps(dfa)
    n_verdicts = len(maps["verdicts"].entries)
    protected = set()
    for i, (_, v) in enumerate(maps["dfa_states"].entries):
        assert member("dfa_state", v, "verdict") == dfa.states[i][3] < n_verdicts
        protected.add(member("dfa_state", v, "protect_rule"))
    assert protected == {0, rules['deny file write "/etc/**"']}

    (_, config), = T.config_map(policy).entries
    assert member("policyc_config", config, "cgroup_levels") == abi.CGROUP_LEVELS
    assert member("policyc_config", config, "task_rules") == 2
    assert member("policyc_config", config, "flags") == abi.CFG_SUBJECT_ALL


# ---- hooks: each label is the hook of the programs that use it --------------------------------
def _program_bodies(c_text: str) -> dict[str, list[str]]:
    """LSM hook name -> the bodies of the programs attached there (POLICYC_PATH_HOOK's
    invocations are programs too)."""
    text = re.sub(r"/\*.*?\*/", " ", c_text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    out: dict[str, list[str]] = {}
    for m in re.finditer(r'SEC\("lsm/(\w+)"\)', text):
        start = text.index("{", m.end())
        depth, i = 0, start
        while True:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        out.setdefault(m.group(1), []).append(text[start:i + 1])
    for m in re.finditer(r"POLICYC_PATH_HOOK\((\w+),\s*(HOOK_\w+)", text):
        if m.group(1) != "hook_name":
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


# Hooks reported from other programs than their own, on purpose.
ELSEWHERE = {
    "HOOK_MOUNT_SYSCALL": {"capable"},      # the new mount API's calls, decided at capable
    # a SIGIO owner is reserved where it is set: a full map refuses the setting
    "HOOK_FILE_SEND_SIGIOTASK": {"file_fcntl", "file_ioctl"},
}


def test_each_program_reports_its_own_hook():
    from policyc.codegen import render_c

    bodies = _program_bodies(render_c(*FULL_VARIANT))
    used = set()
    for hook, texts in bodies.items():
        for text in texts:
            for name in set(re.findall(r"\bHOOK_[A-Z_]+\b", text)):
                used.add(name)
                if hook in ELSEWHERE.get(name, ()):
                    continue
                assert abi.HOOKS[abi.constant(name)] == hook, f"lsm/{hook} reports {name}"
    # every hook the C reports is reported by its own program (mount_syscall has none)
    for m in abi.HOOK.members:
        if m.label is not None and m.name in used and m.name != "HOOK_MOUNT_SYSCALL":
            assert any(m.name in t for t in bodies.get(m.label, ())), m.name
