"""A Python model of the BPF side of a policy: it decides events from the MAP DATA that
`policyc build` writes into NAME.manifest.json, walking the bytes the way the C in
templates/ does. tests/unit/test_differential_maps.py holds it against the reference
evaluator (policyc.evaluate).

What the model reads, and nothing else:
  * the manifest: `maps` (hex `data`, `key_size`, `value_size`, `max_entries`), `families`
    (which hook templates the object has), `hooks` (whether bprm_check has its subject block),
    `subjects`/`exceptions` (cgroup paths) and `cgroup_fixups`: all turned into map contents by
    `policyc.deploy.map_fills`, as `policyc load` does, with cgroup ids from a fake cgroup tree;
  * the struct layouts (`policyc.codegen.tables`, pinned against clang's BTF by test_layouts);
  * the constants of the C (`#define`s and enums), parsed from templates/common/*.h (abi.h
    first) and the templates, so a flag bit or column that moved on one side only shows up.

What it reproduces (file:function of the C):
  * policy.h governed_ex: task storage state bits (SUBJECT_*), sticky cgroup subjects,
    `except cgroup` met on the way down from the root, CFG_SUBJECT_ALL; subject.bpf.c.j2:
    task_alloc inheritance, bprm_check's OP_SUBJECT/OP_EXCEPT columns committed at
    bprm_committing_creds (a lineage of execs: the oldest ancestor first, then the process);
  * policy.h dfa_step/dfa_walk: the byte's class from `dfa_classes`, the `dfa_comb` slot at the
    state's base + class when its check names the state, else `dfa_states.next[base class]`
    with base class `/`, 0x80-0xBF, other; an absorbing state (the dead state 0 among them)
    stops the walk;
  * policy.h verdict_of/check_path_op/apply: the verdict column gives (decision, rule id), rule
    0 is the default; a pseudo file (no leading `/`) is refused for exec and exec-map; audit mode
    turns deny into audit;
  * file.bpf.c.j2 check_move: rename/link refused with `dfa_states.protect_rule`;
  * policy.h owner_verdict (a policy with `owner` rules: manifest rules marked `owner`): the
    verdicts in pairs, the second (index | 1) for a file the process does not own
    (`Event.owner`) when it names another rule for the op; a create is always owned, an
    abstract socket name never;
  * net.bpf.c.j2 check_net/socket_create: the unspecified destination rewritten to loopback
    (an unbound socket: no bound IPv4 source), the LPM trie on (prefixlen, op, addr16), the
    slice of `net_entries` scanned for the first entry with the protocol bit and the port;
  * task.bpf.c.j2 check_task_for/task_rule_cb: the target's executable walked through the DFA
    for `verdict.targets`, its cgroup and 15 ancestors, the precedence-ordered `task_rules`;
    check_received for a received event (`Event.received`): the sender's executable and cgroup,
    the receive-side rules only (`from all` last), no default; a received ptrace of a policy
    without receive-side ptrace rules decided by its ptrace rules with the traced as the target;
  * capability.bpf.c.j2, module.bpf.c.j2: `cap_verdicts`, `simple_verdicts`;
  * a family whose template the object lacks (manifest `families`) decides nothing: allow.

What it does not model (an Event cannot say it, or it never changes which rule decides):
  * history: a governed process moving to another cgroup (sticky), a failed exec (its NEXT bits
    forgotten), `policyc exec` (SUBJECT_PENDING), a `#!` script counted as itself and its
    interpreter; each ancestor is taken to have exec'd its program in the event's cgroup;
  * ptrace by a process the policy does not govern of one it governs (the kernel decides it),
    and a governed process attaching to an excepted one (refused, subject.bpf.c.j2);
  * fail-closed reasons (a path too long, a detached mount, a read fault, ENOMEM at fork, an
    io_uring personality), kernel-internal opens (overlayfs, FMODE_EXEC, uselib), which hook
    turns a system call into which event (O_RDWR as write then read, rename's destination as
    create, sendmsg/SCTP/listen as connect/bind, AF_UNSPEC, a socket's bound IPv4 source for
    0.0.0.0), capability checks of other credentials, NOAUDIT, SIGIO owners, rate limits
    (they withhold events, never change a decision).
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass
from unittest import mock

from policyc.ir.model import Event
from policyc.ir.vocab import CAPABILITIES, SIGNALS


def _product(name: str):
    """A name from policyc.codegen.tables, or from policyc.abi once it moved there."""
    from policyc.codegen import tables

    if hasattr(tables, name):
        return getattr(tables, name)
    from policyc import abi  # pragma: no cover - after the refactor

    return getattr(abi, name)


CONFIG = _product("CONFIG")
DFA_STATE = _product("DFA_STATE")
DFA_EDGE = _product("DFA_EDGE")
VERDICT = _product("VERDICT")
NET_KEY = _product("NET_KEY")
NET_SLICE = _product("NET_SLICE")
NET_ENTRY = _product("NET_ENTRY")
SIMPLE_VERDICT = _product("SIMPLE_VERDICT")
TASK_RULE = _product("TASK_RULE")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
ACTIONS = {0: "allow", 1: "audit", 2: "deny"}


# --- the C's constants ------------------------------------------------------------------------
def _templates():
    from policyc.resources import resource_dir

    return resource_dir("templates")


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _c_int(text: str) -> int:
    """A C integer literal: hex, octal (a leading 0) or decimal."""
    if text.lower().startswith("0x"):
        return int(text, 16)
    if len(text) > 1 and text.startswith("0"):
        return int(text, 8)
    return int(text)


def c_constants() -> dict[str, int]:
    """`#define NAME number` and enum members of templates/common/*.h (abi.h first) and the
    templates (a name keeps its first definition)."""
    root = _templates()
    out: dict[str, int] = {}
    common = sorted(root.glob("common/*.h"), key=lambda f: (f.name != "abi.h", f.name))
    files = [f for f in common if f.name != "vmlinux_min.h"] + sorted(root.glob("*.bpf.c.j2"))
    for f in files:
        text = _strip_comments(f.read_text())
        for m in re.finditer(r"^\s*#define\s+(\w+)\s+\(?(0x[0-9a-fA-F]+|\d+)\)?\s*$", text, re.M):
            out.setdefault(m.group(1), _c_int(m.group(2)))
        for m in re.finditer(r"enum\s+\w+\s*\{([^}]*)\}", text):
            value = -1
            for item in m.group(1).split(","):
                item = item.strip()
                if not item:
                    continue
                name, _, expr = item.partition("=")
                value = _c_int(expr.strip()) if expr.strip() else value + 1
                out.setdefault(name.strip(), value)
    return out


C = c_constants()


# --- cgroups: what `policyc load` resolves with stat() on the target machine -------------------
def norm_cgroup(path: str) -> str:
    return path.rstrip("/") or "/"


class Cgroups:
    """A fake cgroup v2 tree: every path has an id (the root 1), created on first use."""

    def __init__(self):
        self.ids: dict[str, int] = {"/": 1}

    def id(self, path: str) -> int:
        p = norm_cgroup(path)
        if p not in self.ids:
            self.ids[p] = 100 + len(self.ids)
        return self.ids[p]

    def chain(self, path: str) -> list[int]:
        """The ids of the root, then each level down to `path` (bpf_get_current_ancestor_cgroup_id
        order: level 0 is the root)."""
        p = norm_cgroup(path)
        parts = [x for x in p.split("/") if x]
        return [self.id("/" + "/".join(parts[:n])) for n in range(len(parts) + 1)]


# --- map contents ------------------------------------------------------------------------------
class Map:
    """One map as the kernel holds it once filled: arrays zero-filled up to max_entries."""

    def __init__(self, name: str, kind: str, key_size: int, value_size: int, max_entries: int, entries):
        self.name, self.kind = name, kind
        self.key_size, self.value_size, self.max_entries = key_size, value_size, max_entries
        self.entries = {bytes(k): bytes(v) for k, v in entries}

    def lookup(self, key: bytes) -> bytes | None:
        if self.kind == "array":
            (idx,) = U32.unpack(key)
            if idx >= self.max_entries:
                return None
            return self.entries.get(key, bytes(self.value_size))
        return self.entries.get(key)

    def index(self, idx: int) -> bytes | None:
        return self.lookup(U32.pack(idx & 0xFFFFFFFF))


def load_maps(manifest: dict, cgroups: Cgroups) -> dict[str, Map]:
    """The maps `policyc load` fills from a manifest (policyc.deploy.map_fills, with cgroup ids
    from the fake tree instead of stat())."""
    from policyc import deploy

    with mock.patch.object(deploy, "cgroup_id", cgroups.id):
        fills = deploy.map_fills(manifest)
    out: dict[str, Map] = {}
    for name, spec in manifest["maps"].items():
        f = fills[name]
        out[name] = Map(name, spec["type"], spec["key_size"], spec["value_size"],
                        f.max_entries or spec["max_entries"], f.entries)
    sc = fills["subject_cgroups"]
    out["subject_cgroups"] = Map("subject_cgroups", "hash", 8, 1, sc.max_entries, sc.entries)
    return out


# --- outcomes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    action: str               # allow | audit | deny
    rule_id: int | None       # 0: the default or a fail-closed reason; None: no program decided
    reason: str               # rule | default | protect | anonymous-exec | map-fault |
                              # ungoverned | no-hook

    @property
    def decided(self) -> bool:
        return self.rule_id is not None


NOT_GOVERNED = Outcome("allow", None, "ungoverned")
NO_HOOK = Outcome("allow", None, "no-hook")


class KernelModel:
    """One loaded policy object: its maps and which hooks it has."""

    def __init__(self, manifest: dict, cgroups: Cgroups | None = None):
        self.manifest = manifest
        self.cgroups = cgroups or Cgroups()
        self.maps = load_maps(manifest, self.cgroups)
        self.families = set(manifest["families"])
        # bprm_check has its subject/exception block only when the object was rendered with exe
        # subjects or exceptions (codegen.template_flags)
        self.subject_block = any(s["kind"] == "exe" for s in (*manifest.get("subjects", ()),
                                                               *manifest.get("exceptions", ())))
        cfg = self.maps["config"].index(0)
        self.flags, self.cgroup_levels, self.n_task_rules, self.default_rank, _policy_id = CONFIG.unpack(cfg)
        # rendered with has_owner_rules: verdicts in pairs (policy.h owner_verdict)
        self.owner_pairs = any(r.get("owner") for r in manifest["rules"])
        self._states: dict = {}

    # --- apply (policy.h apply_ex) -------------------------------------------------------------
    def apply(self, decision: int, rule_id: int, reason: str) -> Outcome:
        if decision == C["DECISION_DENY"] and self.flags & C["CFG_MODE_AUDIT"]:
            decision = C["DECISION_AUDIT"]
        return Outcome(ACTIONS[decision], rule_id, reason)

    def fail_closed(self, reason: str) -> Outcome:
        return self.apply(C["DECISION_DENY"], 0, reason)

    # --- the DFA (policy.h dfa_step, dfa_walk, verdict_of) -------------------------------------
    def walk(self, data: bytes) -> int | None:
        state = 1
        comb, states = self.maps["dfa_comb"], self.maps["dfa_states"]
        classes = self.maps["dfa_classes"].index(0)
        if classes is None:
            return None  # map fault
        for i, b in enumerate(data):
            if i >= C["POLICYC_PATH_MAX"]:
                break
            raw = states.index(state)
            if raw is None:
                return None  # map fault
            st = DFA_STATE.unpack(raw)
            if st[6] & C["DFA_ABSORBING"]:
                break
            slot = comb.index((st[5] + classes[b]) & 0xFFFFFFFF)
            edge = None if slot is None else DFA_EDGE.unpack(slot)
            if edge is not None and edge[0] == state:
                state = edge[1]
            else:
                cls = 0 if b == 0x2F else (1 if (b & 0xC0) == 0x80 else 2)
                state = st[cls]
        return state

    def state(self, state: int | None):
        if state is None:
            return None
        raw = self.maps["dfa_states"].index(state)
        return None if raw is None else DFA_STATE.unpack(raw)

    def verdict(self, state: int | None, op: int | None = None, owned: bool = True):
        """(rules[16], decisions[16], targets) of a state, or None on a map fault. With `op`
        and owner pairs: policy.h owner_verdict for a file the process owns or not."""
        st = self.state(state)
        if st is None:
            return None
        raw = self.maps["verdicts"].index(st[3])
        if raw is None:
            return None
        vals = VERDICT.unpack(raw)
        n = C["POLICYC_N_OPS"]
        if self.owner_pairs and op is not None and op != C["OP_CREATE"]:
            other_raw = self.maps["verdicts"].index(st[3] | 1)
            if other_raw is None:
                return None
            other = VERDICT.unpack(other_raw)
            o = op & (n - 1)
            if other[o] != vals[o] and not owned:
                vals = other
        return vals[:n], vals[n:2 * n], vals[2 * n]

    def protect_rule(self, path: str) -> int | None:
        st = self.state(self.walk(encode(path)))
        return None if st is None else st[4]

    # --- subjects (policy.h governed_ex; subject.bpf.c.j2) -------------------------------------
    def _governed_ex(self, state: int, cgroup: str, ignore_exception: bool) -> tuple[bool, int]:
        if state & C["SUBJECT_EXCEPTED"] and not ignore_exception:
            return False, state
        if state & C["SUBJECT_STICKY"]:
            return True, state
        if self.flags & (C["CFG_SUBJECT_CGROUP"] | C["CFG_EXCEPT_CGROUP"]):
            in_cgroup = False
            for level, ident in enumerate(self.cgroups.chain(cgroup)):
                if level >= 32 or level > self.cgroup_levels:
                    break
                kind = self.maps["subject_cgroups"].lookup(U64.pack(ident))
                if kind is not None and kind[0] == C["CGROUP_EXCEPT"]:
                    return False, state
                if kind is not None and kind[0] == C["CGROUP_SUBJECT"]:
                    in_cgroup = True
            if in_cgroup:
                return True, state | C["SUBJECT_GOVERNED"] | C["SUBJECT_STICKY"]
        return bool(state & C["SUBJECT_GOVERNED"] or self.flags & C["CFG_SUBJECT_ALL"]), state

    def task_state(self, exe: str, ancestors: tuple[str, ...], cgroup: str) -> int:
        """The task storage state of a process that is the last of a lineage of execs (the
        oldest ancestor first), each forked from the one before, all in `cgroup`."""
        key = (exe, ancestors, cgroup)
        if key not in self._states:
            self._states[key] = self._task_state(exe, ancestors, cgroup)
        return self._states[key]

    def _task_state(self, exe: str, ancestors: tuple[str, ...], cgroup: str) -> int:
        state = 0
        for i, image in enumerate((*reversed(ancestors), exe)):
            if i:
                # task_alloc: the parent is marked sticky first, the child inherits GOVERNED
                if self.flags & (C["CFG_SUBJECT_CGROUP"] | C["CFG_EXCEPT_CGROUP"]):
                    _, state = self._governed_ex(state, cgroup, False)
                if state & C["SUBJECT_GOVERNED"]:
                    state = C["SUBJECT_GOVERNED"] | (state & C["SUBJECT_STICKY"])
                else:
                    state = 0
            if self.subject_block:
                # bprm_creds_for_exec forgets a failed exec's leftovers; bprm_check adds this
                # exec's subject/exception; bprm_committing_creds commits them
                state &= ~(C["SUBJECT_NEXT_GOVERNED"] | C["SUBJECT_NEXT_EXCEPTED"])
                if image.startswith("/"):  # a pseudo file (memfd) makes nothing a subject
                    v = self.verdict(self.walk(encode(image)))
                    if v is None:
                        raise AssertionError("map fault walking a subject executable")
                    if v[1][C["OP_SUBJECT"]]:
                        state |= C["SUBJECT_NEXT_GOVERNED"]
                    if v[1][C["OP_EXCEPT"]]:
                        state |= C["SUBJECT_NEXT_EXCEPTED"]
                pending = C["SUBJECT_NEXT_GOVERNED"] | C["SUBJECT_NEXT_EXCEPTED"]
                nxt = state & ~(C["SUBJECT_EXCEPTED"] | pending)
                if state & C["SUBJECT_NEXT_GOVERNED"]:
                    nxt |= C["SUBJECT_GOVERNED"]
                if state & C["SUBJECT_NEXT_EXCEPTED"]:
                    nxt |= C["SUBJECT_EXCEPTED"]
                state = nxt
        return state

    def governed(self, event: Event, ignore_exception: bool = False) -> bool:
        state = self.task_state(event.exe, event.ancestors, event.cgroup or "/")
        return self._governed_ex(state, event.cgroup or "/", ignore_exception)[0]

    # --- decisions ------------------------------------------------------------------------------
    def decide(self, event: Event) -> Outcome:
        fam, sub = event.family, event.sub_op
        if event.op == "exec":
            # bprm_check decides an excepted program's exec too (governed_ex(cfg, 1))
            if not self.governed(event, ignore_exception=True):
                return NOT_GOVERNED
            return self.path_op(event.path, C["OP_EXEC"])
        if not self.governed(event):
            return NOT_GOVERNED
        if fam == "file":
            # an abstract socket name is no file: no owner (file.bpf.c.j2 check_unix_peer)
            owned = event.owner and not event.path.startswith("@")
            if sub == "exec-map":
                if "execmap" not in self.families:
                    return NO_HOOK
                return self.path_op(event.path, C["OP_EXEC_MAP"], owned=owned)
            if "file" not in self.families:
                return NO_HOOK
            op = C["OP_" + sub.upper()]
            if sub in ("rename", "link"):
                return self.check_move(event.path, op, owned)
            return self.path_op(event.path, op, owned=owned)
        if fam == "mount":
            if "mount" not in self.families:
                return NO_HOOK
            # the new mount API has no path: the empty path is walked
            return self.path_op(event.path or "", C["OP_MOUNT"], pseudo_ok=True)
        if fam == "net":
            if "net" not in self.families:
                return NO_HOOK
            return self.check_net(event)
        if fam == "capability":
            if "capability" not in self.families:
                return NO_HOOK
            return self.simple("cap_verdicts", CAPABILITIES.index(event.cap))
        if fam == "module":
            if "module" not in self.families:
                return NO_HOOK
            return self.simple("simple_verdicts", C["SIMPLE_MODULE_LOAD"])
        if fam == "bpf":
            if "bpf" not in self.families:
                return NO_HOOK
            return self.simple("simple_verdicts", C["SIMPLE_BPF"])
        if fam in ("signal", "ptrace"):
            if "task" not in self.families:
                return NO_HOOK
            return self.check_task(event)
        raise AssertionError(f"no model for {event.op}")

    def path_op(self, path: str, op: int, pseudo_ok: bool = False, owned: bool = True) -> Outcome:
        """policy.h check_path_op (and check_unix_peer for `@name`: walked, never pseudo)."""
        pseudo = not pseudo_ok and not path.startswith(("/", "@"))
        if pseudo and op in (C["OP_EXEC"], C["OP_EXEC_MAP"]):
            return self.fail_closed("anonymous-exec")
        v = self.verdict(self.walk(encode(path)), op, owned)
        if v is None:
            return self.fail_closed("map-fault")
        o = op & (C["POLICYC_N_OPS"] - 1)
        rule = v[0][o]
        return self.apply(v[1][o], rule, "rule" if rule else "default")

    def check_move(self, path: str, op: int, owned: bool = True) -> Outcome:
        """file.bpf.c.j2 check_move."""
        state = self.walk(encode(path))
        st, v = self.state(state), self.verdict(state, op, owned)
        if st is None or v is None:
            return self.fail_closed("map-fault")
        o = op & (C["POLICYC_N_OPS"] - 1)
        decision, rule = v[1][o], v[0][o]
        if decision != C["DECISION_DENY"] and st[4]:
            return self.apply(C["DECISION_DENY"], st[4], "protect")
        return self.apply(decision, rule, "rule" if rule else "default")

    def simple(self, map_name: str, idx: int) -> Outcome:
        raw = self.maps[map_name].index(idx)
        if raw is None:
            return self.fail_closed("map-fault")
        rule, decision = SIMPLE_VERDICT.unpack(raw)
        return self.apply(decision, rule, "rule" if rule else "default")

    def default(self) -> Outcome:
        return self.apply(self.default_rank, 0, "default")

    # --- net (net.bpf.c.j2) ---------------------------------------------------------------------
    PROTO = {"tcp": "PROTO_TCP", "udp": "PROTO_UDP", "icmp": "PROTO_ICMP", "raw": "PROTO_RAW",
             "packet": "PROTO_PACKET"}

    def check_net(self, event: Event) -> Outcome:
        proto = C[self.PROTO[event.proto or "tcp"]]
        op = C["NET_OP_" + event.sub_op.upper()]
        if event.sub_op == "create":
            addr, port = bytes(16), 0          # socket_create: no address, port 0
        else:
            addr = bytearray(_v6(event.addr).packed)
            port = event.port
            if event.sub_op == "connect":
                unspecified_to_destination(addr)
            addr = bytes(addr)
        sl = self.lpm(op, addr)
        if sl is None:
            return self.default()
        start, count = NET_SLICE.unpack(sl)
        entries = self.maps["net_entries"]
        for i in range(min(count, C["MAX_NET_ENTRIES"])):
            raw = entries.index(start + i)
            if raw is None:
                return self.fail_closed("map-fault")
            rule_id, lo, hi, mask, decision = NET_ENTRY.unpack(raw)
            if mask & proto and lo <= port <= hi:
                return self.apply(decision, rule_id, "rule")
        return self.default()

    def lpm(self, op: int, addr: bytes) -> bytes | None:
        """BPF_MAP_TYPE_LPM_TRIE lookup of (prefixlen 136, op, addr): the longest stored prefix
        whose first `prefixlen` bits of op|addr match."""
        wanted = int.from_bytes(bytes([op]) + addr, "big")
        best, best_len = None, -1
        for key, value in self.maps["net_prefixes"].entries.items():
            plen, kop, kaddr = NET_KEY.unpack(key)
            if plen > 136 or plen <= best_len:
                continue
            stored = int.from_bytes(bytes([kop]) + kaddr, "big")
            if (stored ^ wanted) >> (136 - plen) == 0:
                best, best_len = value, plen
        return best

    # --- signals and ptrace (task.bpf.c.j2) -----------------------------------------------------
    def check_task(self, event: Event) -> Outcome:
        kind = C["TASK_SIGNAL"] if event.family == "signal" else C["TASK_PTRACE"]
        sig = SIGNALS[event.signal] if kind == C["TASK_SIGNAL"] else 0
        if kind == C["TASK_SIGNAL"] and not 0 < sig <= 64:
            return NO_HOOK
        receive = 0
        other_exe, other_cgroup = event.target_exe, event.target_cgroup
        if event.received:
            if kind == C["TASK_PTRACE"] and not self.flags & C["CFG_RECEIVE_PTRACE"]:
                # ptrace_access_check without receive rules: the ptrace rules, the traced
                # process as the target
                other_exe, other_cgroup = event.exe, event.cgroup
            elif kind == C["TASK_SIGNAL"] and not self.flags & C["CFG_RECEIVE_SIGNAL"]:
                return NO_HOOK   # task_kill asks no receiver
            else:
                # check_received: the sender's executable and cgroup
                receive, other_exe, other_cgroup = 1, event.source_exe, event.source_cgroup
        targets = 0
        if other_exe is not None:  # a kernel thread has no mm, no exe_file
            v = self.verdict(self.walk(encode(other_exe)))
            if v is None:
                return self.fail_closed("map-fault")
            targets = v[2]
        levels = C["TARGET_CGROUP_LEVELS"]
        cgroups = list(reversed(self.cgroups.chain(other_cgroup or "/")))[:levels]
        cgroups += [0] * (levels - len(cgroups))
        for i in range(min(self.n_task_rules, C["MAX_TASK_RULES"])):
            raw = self.maps["task_rules"].index(i)
            if raw is None:
                break
            (sig_mask, target_cgroup, rule_id, target_bit, rkind, decision, target_kind,
             rreceive) = TASK_RULE.unpack(raw)
            if rkind != kind or rreceive != receive:
                continue
            if kind == C["TASK_SIGNAL"] and not (sig_mask >> ((sig - 1) & 63)) & 1:
                continue
            if target_kind == C["TARGET_EXE"] and not (targets >> (target_bit & 63)) & 1:
                continue
            if target_kind == C["TARGET_CGROUP"] and (not target_cgroup or target_cgroup not in cgroups):
                continue
            return self.apply(decision, rule_id, "rule")
        if receive:
            return self.apply(C["DECISION_ALLOW"], 0, "no-receive-rule")   # no default there
        return self.default()


def encode(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def _v6(addr: str) -> ipaddress.IPv6Address:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed)
    return ip


def unspecified_to_destination(addr: bytearray) -> None:
    """net.bpf.c.j2: 0.0.0.0 and ::ffff:0.0.0.0 to 127.0.0.1 (an unbound socket: no source
    address), :: to ::1."""
    v4 = addr[10] == 0xFF and addr[11] == 0xFF
    if any(addr[:10]):
        return
    if v4:
        if any(addr[12:16]):
            return
        addr[12], addr[15] = 127, 1
        return
    if any(addr[10:16]):
        return
    addr[15] = 1


# --- building: what `policyc build` writes, without clang ---------------------------------------
def build_manifest(program, policy, out_dir) -> dict:
    """The manifest `policyc build` writes for `policy` (policyc.codegen.build_policy with the C
    neither rendered nor compiled: the maps do not depend on the object). A BuildError (a policy
    build refuses) propagates."""
    import json

    from policyc import codegen

    stubbed = []

    def no_c(*args, **kwargs):
        stubbed.append("render_c")
        return ""

    def no_object(c_source, name):
        stubbed.append("compile_c")
        return b""

    with mock.patch.object(codegen, "render_c", no_c), mock.patch.object(codegen, "compile_c", no_object):
        result = codegen.build_policy(program, policy, out_dir)
    # a build_policy that no longer goes through these two would need clang here: say so
    assert stubbed == ["render_c", "compile_c"], f"build_policy did not go through the stubs: {stubbed}"
    # the maps' bytes read back from NAME.maps (policyc/mapsfile.py) into the manifest, as hex
    # (format 1's form, which `policyc load` takes too): the model then holds them whatever
    # the next build writes to OUT_DIR (tests/unit/test_maps_file.py holds the two forms equal)
    from policyc import mapsfile

    return mapsfile.as_format1(json.loads(result.manifest_path.read_text()), result.manifest_path.parent)
