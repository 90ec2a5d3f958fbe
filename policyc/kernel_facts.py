"""What a target kernel offers policyc: its BPF LSM hooks and BPF helpers, read from its BTF.

`policyc check --kernel 6.1|6.12|PATH` and `policyc build --kernel ...` hold every rule
against these facts, so a rule the kernel cannot enforce is reported with its file:line:col
at build time instead of failing at load time. The facts of the supported kernels ship in
policyc/kernels/*.json (derived from each kernel's own /sys/kernel/btf/vmlinux, in a VM, by
`python scripts/derive_kernel_facts.py`); PATH may be a BTF file (read with bpftool) or
such a JSON file.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .codegen import EXEC_COMMIT_HOOKS, HOOKS, template_families
from .codegen.families import FAMILIES as CODEGEN_FAMILIES, TEMPLATE_FAMILIES
from .diagnostics import Diagnostics, Note
from .ir.model import Policy, Program
from .resources import resource_dir

SHIPPED = resource_dir("kernels")   # package data: policyc/kernels/*.json

# What each template family calls beyond its hooks (the code generator's registry says).
HELPERS = {name: list(t.helpers) for name, t in TEMPLATE_FAMILIES.items()}
CGROUP_HELPERS = ["get_current_ancestor_cgroup_id"]
# Which template families decide each rule family (the code generator's registry says).
RULE_TEMPLATES = {name: fam.templates for name, fam in CODEGEN_FAMILIES.items()}


class FactsError(Exception):
    pass


def derive(btf_path: str) -> dict:
    """LSM hooks (`bpf_lsm_<hook>` functions) with their argument types, and helpers (`enum
    bpf_func_id`) in a BTF file."""
    bpftool = shutil.which("bpftool") or ("/usr/sbin/bpftool" if Path("/usr/sbin/bpftool").exists() else None)
    if bpftool is None:
        raise FactsError("bpftool is needed to read a BTF file (Debian: `apt-get install bpftool`)")
    proc = subprocess.run([bpftool, "btf", "dump", "file", btf_path], capture_output=True, text=True)
    if proc.returncode != 0:
        raise FactsError(f"bpftool could not read `{btf_path}`: {proc.stderr.strip()[:200]}")
    hooks = sorted(set(re.findall(r"FUNC 'bpf_lsm_([a-z0-9_]+)'", proc.stdout)))
    helpers = sorted(set(m.lower() for m in re.findall(r"'BPF_FUNC_([a-z0-9_]+)' val=", proc.stdout, re.I)))
    if not hooks:
        raise FactsError(f"`{btf_path}` has no bpf_lsm_* functions: not a kernel with BPF LSM")
    return {"source": btf_path, "lsm_hooks": hooks, "helpers": helpers,
            "hook_args": hook_signatures(proc.stdout)}


_TYPE = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'(?: type_id=(\d+))?")
_PARAM = re.compile(r"^\t'([^']*)' type_id=(\d+)")


def hook_signatures(dump: str) -> dict[str, list[str]]:
    """`bpf_lsm_<hook>` argument types from `bpftool btf dump` text, as C-like strings
    (`const struct path *`), so kernels can be compared argument by argument: the programs
    read their arguments by position, and a hook whose arguments changed would be misread.

    >>> dump = ("[1] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED\\n"
    ...         "[2] STRUCT 'file' size=8 vlen=0\\n[3] PTR '(anon)' type_id=2\\n"
    ...         "[4] FUNC_PROTO '(anon)' ret_type_id=1 vlen=2\\n\\t'file' type_id=3\\n\\t'n' type_id=1\\n"
    ...         "[5] FUNC 'bpf_lsm_file_open' type_id=4 linkage=static")
    >>> hook_signatures(dump)
    {'file_open': ['struct file *', 's32']}
    """
    types: dict[int, tuple[str, str, int | None]] = {}
    ints: dict[int, str] = {}        # INT type id -> `u64`, `s32`, `bool`, `char`
    params: dict[int, list[int]] = {}
    funcs: dict[str, int] = {}
    current = None
    for line in dump.splitlines():
        m = _TYPE.match(line)
        if m:
            tid, kind, name, ref = int(m.group(1)), m.group(2), m.group(3), m.group(4)
            types[tid] = (kind, name, int(ref) if ref else None)
            current = tid if kind == "FUNC_PROTO" else None
            if kind == "FUNC_PROTO":
                params[tid] = []
            if kind == "FUNC" and name.startswith("bpf_lsm_"):
                funcs[name[len("bpf_lsm_"):]] = int(ref)
            if kind == "INT" and name == "char":
                ints[tid] = "char"  # its signedness differs between compilers, not kernels
            elif kind == "INT":
                size = re.search(r" size=(\d+)", line)
                enc = re.search(r"encoding=(\S+)", line)
                e = enc.group(1) if enc else ""
                ints[tid] = ("bool" if e == "BOOL" else "char" if e == "CHAR" else
                             f"{'s' if e == 'SIGNED' else 'u'}{int(size.group(1)) * 8 if size else 0}")
            continue
        p = _PARAM.match(line)
        if p and current is not None:
            params[current].append(int(p.group(2)))

    def text(tid: int, depth: int = 0) -> str:
        if tid == 0 or depth > 8:
            return "void"
        kind, name, ref = types.get(tid, ("?", "?", None))
        if kind == "TYPEDEF":
            # `u64` and `unsigned long` are one argument to a reader: compare what is under
            # the names (integers by width and sign, pointers by what they point to)
            return text(ref or 0, depth + 1)
        if kind == "INT":
            return ints.get(tid, name)
        if kind == "PTR":
            return text(ref or 0, depth + 1) + " *"
        if kind in ("CONST", "VOLATILE", "RESTRICT"):
            return f"{kind.lower()} {text(ref or 0, depth + 1)}"
        if kind in ("STRUCT", "UNION", "ENUM", "ENUM64"):
            return f"{'enum' if kind.startswith('ENUM') else kind.lower()} {name}"
        return name

    return {hook: [text(t) for t in params.get(proto, [])] for hook, proto in sorted(funcs.items())}


def load_facts(spec: str) -> dict:
    shipped = SHIPPED / f"{spec}.json"
    if shipped.is_file():
        return json.loads(shipped.read_text())
    p = Path(spec)
    if not p.exists():
        known = ", ".join(sorted(f.stem for f in SHIPPED.glob("*.json")))
        raise FactsError(f"unknown kernel `{spec}`: give {known}, or a path to a BTF file "
                         "(e.g. a copy of /sys/kernel/btf/vmlinux) or a facts .json")
    if p.suffix == ".json":
        try:
            return json.loads(p.read_text())
        except ValueError as e:
            raise FactsError(f"`{spec}` is not a facts file: {e}")
    return derive(str(p))


def rule_needs(families: list[str], cgroups: bool) -> tuple[list[str], list[str]]:
    hooks = [h for f in families for h in HOOKS[f]]
    helpers = [h for f in families for h in HELPERS.get(f, [])] + (CGROUP_HELPERS if cgroups else [])
    return hooks, helpers


# The kernel the templates' hook arguments were written against: a hook whose arguments differ
# on the target kernel is reported (the programs read arguments by position).
REFERENCE_KERNEL = "6.1"


# Argument lists that differ from the reference and that the templates were written to handle.
HANDLED = {
    # 7.2 appended `bool kernel`: policyc_bpf reads no `ret` slot and the new argument with
    # bpf_get_func_arg (templates/module.bpf.c.j2)
    "bpf": [["s32", "union bpf_attr *", "u32", "bool"]],
}


def changed_hooks(facts: dict) -> dict[str, tuple[list[str], list[str]]]:
    """{hook: (reference args, target args)} for hooks whose argument types differ from the
    reference kernel's (qualifiers aside: `const` is no change to a reader), except the
    differences the templates handle (HANDLED)."""
    target = facts.get("hook_args")
    if not target:
        return {}
    ref = json.loads((SHIPPED / f"{REFERENCE_KERNEL}.json").read_text()).get("hook_args", {})

    def bare(args):
        return [a.replace("const ", "").replace("volatile ", "") for a in args]

    return {h: (ref[h], target[h]) for h in target if h in ref and bare(ref[h]) != bare(target[h])
            and bare(target[h]) not in [bare(a) for a in HANDLED.get(h, [])]}


def check_program(program: Program, spec: str, diags: Diagnostics) -> None:
    """P050 for each rule (or subject) the kernel `spec` lacks a hook or helper for, or whose
    hook takes other arguments there than the templates were written for."""
    facts = load_facts(spec)
    have_hooks, have_helpers = set(facts["lsm_hooks"]), set(facts["helpers"])
    changed = changed_hooks(facts)
    for policy in program.policies:
        used = set(template_families(policy))
        cgroups = any(s.kind == "cgroup" for s in (*policy.subjects, *policy.exceptions))
        base_hooks, base_helpers = rule_needs(["subject"], cgroups)
        if any(s.kind == "exe" for s in (*policy.subjects, *policy.exceptions)):
            base_hooks += EXEC_COMMIT_HOOKS
        if any(s.kind == "exe" for s in policy.exceptions):
            base_hooks.append("ptrace_access_check")
            base_helpers.append("bprm_opts_set")
        _report(diags, spec, policy.subjects[0].span if policy.subjects else policy.span,
                "the policy's subjects", base_hooks, base_helpers, have_hooks, have_helpers, changed)
        for rule in policy.rules:
            fams = [f for f in RULE_TEMPLATES[rule.family] if f in used]
            hooks, helpers = rule_needs(fams, False)
            _report(diags, spec, rule.span, f"this `{rule.family}` rule", hooks, helpers, have_hooks, have_helpers,
                    changed)
        if policy.default == "deny" and policy.default_span is not None:
            fams = [f for f in used if f != "subject"]
            hooks, helpers = rule_needs(fams, False)
            _report(diags, spec, policy.default_span, "`default deny` (it decides every family)", hooks,
                    helpers, have_hooks, have_helpers, changed)


def _report(diags, spec, span, what, hooks, helpers, have_hooks, have_helpers, changed=None):
    missing = [f"LSM hook `{h}`" for h in dict.fromkeys(hooks) if h not in have_hooks]
    missing += [f"BPF helper `bpf_{h}`" for h in dict.fromkeys(helpers) if h not in have_helpers]
    missing += [f"LSM hook `{h}` as `({', '.join(changed[h][0])})` (kernel `{spec}` passes "
                f"`({', '.join(changed[h][1])})`)" for h in dict.fromkeys(hooks) if changed and h in changed]
    if not missing:
        return
    diags.error("P050", span, f"{what} needs {', '.join(missing)}, which kernel `{spec}` lacks",
                hints=("the kernel cannot enforce it: remove the rule, or target a newer kernel",),
                notes=(Note(None, "facts read from the kernel's BTF (policyc/kernel_facts.py)"),))


def main(argv: list[str]) -> int:
    """`python -m policyc.kernel_facts --derive BTF`: print the facts as JSON (run in a VM
    by scripts/derive_kernel_facts.py)."""
    if len(argv) == 2 and argv[0] == "--derive":
        facts = derive(argv[1])
        import platform

        facts["kernel"] = platform.release()
        print("policyc-facts:" + json.dumps(facts, sort_keys=True))
        return 0
    print(main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
