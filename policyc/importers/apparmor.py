"""AppArmor profiles to policyc: `policyc import-apparmor PROFILE...` (docs/language.md,
"From AppArmor", is the correspondence this module implements).

    import_apparmor(paths, base) -> ImportResult

One `policy` per top-level AppArmor profile with an attachment: `subject exe` from the
attachment, `mode audit` for `flags=(complain)` (else `mode enforce`), `default deny`, and a
rule for each AppArmor rule policyc can say. Each include file becomes one `ruleset` (its own
rules; the includes it makes are `use`d by the policy beside it, each once), so an
abstraction shared by many profiles is written once. Variables (`@{HOME}`) are expanded from
the tunables found under the base directory (Debian bookworm's values when a tunables file
is missing: DEFAULT_TUNABLES).

Every AppArmor rule gets an `Entry`: converted (exactly), approximate (converted, with a
note where policyc's rule is not the same), partial (some permissions converted, the rest
listed) or not converted, with the reasons (REASONS). Everything not converted is listed
in the output as a comment where it stood, with `file:line:col`.

What the converted policy never does: allow what the profile's own rules deny, except
where an entry says so (a `deny` rule not converted, an approximation). What it does
differently by construction (policyc decides no AF_UNIX or netlink sockets, file locks,
D-Bus, /proc introspection, ...) is in docs/language.md.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .. import abi
from ..diagnostics import Diagnostics
from ..ir.glob import is_absolute, parse_glob
from ..ir.vocab import CAPABILITIES, FILE_OPS, SIGNALS
from ..span import Span
from . import aaglob
from .aaparse import QUALIFIERS, AAParseError, Assign, Block, Include, Loc, Rule, Tok, parse

DEFAULT_BASE = "/etc/apparmor.d"
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_INCLUDE_DEPTH = 32
MAX_EXPANSIONS = 1024        # values of one pattern after variable expansion

_PID = ("{[1-9],[1-9][0-9],[1-9][0-9][0-9],[1-9][0-9][0-9][0-9],[1-9][0-9][0-9][0-9][0-9],"
        "[1-9][0-9][0-9][0-9][0-9][0-9],[1-4][0-9][0-9][0-9][0-9][0-9][0-9]}")
_UID = ("{[0-9],[1-9][0-9],[1-9][0-9][0-9],[1-9][0-9][0-9][0-9],[1-9][0-9][0-9][0-9][0-9],"
        "[1-9][0-9][0-9][0-9][0-9][0-9],[1-9][0-9][0-9][0-9][0-9][0-9][0-9],"
        "[1-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9],[1-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9],"
        "[1-4][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]}")

# The variables of Debian bookworm's /etc/apparmor.d/tunables (apparmor 3.0.8), for a
# variable no tunables file found under the base directory defines.
DEFAULT_TUNABLES: dict[str, list[str]] = {
    "HOME": ["@{HOMEDIRS}/*/", "/root/"],
    "HOMEDIRS": ["/home/"],
    "multiarch": ["*-linux-gnu*"],
    "PROC": ["/proc/"],
    "pid": [_PID], "pids": ["@{pid}"], "tid": ["@{pid}"],
    "uid": [_UID], "uids": ["@{uid}"],
    "sys": ["/sys/"],
    "run": ["/run/", "/var/run/"],
    "securityfs": ["@{sys}/kernel/security/"],
    "apparmorfs": ["@{securityfs}/apparmor/"],
    "etc_ro": ["/etc/", "/usr/etc/"],
    "etc_rw": ["/etc/"],
    "flatpak_exports_root": ["{flatpak/exports,flatpak/{app,runtime}/*/*/*/*/export}"],
    "system_share_dirs": ["/{usr,usr/local,var/lib/@{flatpak_exports_root}}/share"],
    "user_share_dirs": ["@{HOME}/.local{,/share/@{flatpak_exports_root}}/share"],
    "XDG_DESKTOP_DIR": ["Desktop"], "XDG_DOWNLOAD_DIR": ["Downloads"],
    "XDG_TEMPLATES_DIR": ["Templates"], "XDG_PUBLICSHARE_DIR": ["Public"],
    "XDG_DOCUMENTS_DIR": ["Documents"], "XDG_MUSIC_DIR": ["Music"],
    "XDG_PICTURES_DIR": ["Pictures"], "XDG_VIDEOS_DIR": ["Videos"],
}

# Why a rule (or part of one) is not converted. The key is what the benchmark counts.
REASONS: dict[str, str] = {
    "owner": "`owner` on an exec: policyc's `owner` is for file rules only",
    "other": "`other` (not the file's owner): policyc has no such condition",
    "exec-transition": "exec transition policyc cannot say: a child profile (cx), a fallback (pix, pux), "
                       "or px without `-> NAME` (the profile AppArmor finds by the path); policyc's is "
                       "`as policy NAME` for `px -> NAME`",
    "exec-unconfined": "unconfined exec (ux/Ux) with `owner`: policyc's `owner` is for file rules only",
    "exec-bare-x": "bare `x` in an allow rule: AppArmor needs an exec mode",
    "lock": "file locking (`k`): policyc does not decide locks",
    "link": "hard links (`l`, `link`): AppArmor names the new link, policyc decides a link's "
            "source (`link`) and its new name (`create`) apart",
    "child-profile": "in a child profile or hat: entered through a transition or change_hat, "
                     "which policyc does not have",
    "no-attachment": "the profile has no attachment path (only a transition enters it): no `subject exe`",
    "attachment": "the attachment has no policyc glob equivalent",
    "xattrs": "xattrs attachment condition: no equivalent",
    "profile-flags": "the profile's flags have no equivalent",
    "negated-class": "negated character class `[^...]`: policyc globs have no character classes",
    "class": "a character class policyc cannot write as `{...}`",
    "literal-glob-char": "a literal glob character: policyc globs have no escapes",
    "nesting": "`{...}` nested deeper than policyc allows (16)",
    "bad-pattern": "not a valid AppArmor pattern",
    "root": "a pattern policyc would read as matching the root directory `/`",
    "relative-path": "not an absolute path",
    "undefined-variable": "an undefined variable",
    "too-many-values": f"more than {MAX_EXPANSIONS} values after variable expansion",
    "not-utf8": "bytes that are not UTF-8",
    "signal-receive": "receiving signals from a peer that is not an absolute path (a profile name, "
                      "`unconfined`, any): policyc names a sender by its program (`from exe`)",
    "signal-exists": "signal `exists` (signal 0): policyc does not decide it (always allowed)",
    "signal-unknown": "a signal policyc does not name (real-time signals, emt)",
    "ptrace-receive": "tracedby from a peer that is not an absolute path: policyc names a tracer by its "
                      "program (`ptrace from exe`)",
    "ptrace-read": "ptrace `read` (/proc introspection): policyc decides attaching only (read is always allowed)",
    "peer-unconfined": "peer=unconfined: policyc names a target by its program, not its confinement",
    "peer-unknown": "peer profile not among the converted ones: policyc names a target by its program",
    "net-unix": "AF_UNIX network rule: policyc decides no AF_UNIX socket as network (their paths are files)",
    "net-netlink": "netlink: policyc does not decide netlink sockets",
    "net-family": "a socket family policyc does not decide",
    "net-type": "a socket type policyc's protocols cannot name (seqpacket, rdm, ...)",
    "net-perms": "network access list (AppArmor 4): no equivalent",
    "dbus": "D-Bus: no equivalent (the bus socket is a file: its file rule decides every message)",
    "unix": "fine-grained AF_UNIX rule: no equivalent (policyc decides a socket by its path, as a file)",
    "mount": "mount/remount/umount/pivot_root: policyc's `mount` decides all four by mount point, "
             "without source, type or options",
    "change_profile": "change_profile: policyc has no profile transitions",
    "rlimit": "rlimit: no equivalent",
    "capability-unknown": "a capability policyc does not know",
    "include-missing": "include not found under the base directory: its rules are missing",
    "conditional": "conditional block (`if`): not evaluated",
    "alias": "alias: no equivalent",
    "unknown-rule": "a rule kind policyc has no equivalent for",
    "bad-rule": "a rule this converter does not understand",
    "kernel-limit": "past what the kernel object holds for one policy",
}

APPROX: dict[str, str] = {
    "packet-wider": "policyc's `packet` is every AF_PACKET socket type: wider than the AppArmor rule",
    "raw-wider": "policyc's `raw` is every raw socket protocol: wider than the AppArmor rule",
    "peer-attachment": "peer profile read as the program it attaches to",
}

_PERM = re.compile(r"[pPcC][iuU]?x|[iuU]x|x|[rwalkm]")
_PERMS_WORD = re.compile(r"(?:[pPcC][iuU]?x|[iuU]x|x|[rwalkm])+")
_VAR = re.compile(r"@\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SKIP_SUFFIXES = (".dpkg-new", ".dpkg-old", ".dpkg-dist", ".dpkg-bak", ".dpkg-remove", ".pacsave",
                  ".pacnew", ".rpmnew", ".rpmsave", ".orig", ".rej", "~")
_AA_DOMAINS = {
    "unix", "inet", "ax25", "ipx", "appletalk", "netrom", "bridge", "atmpvc", "x25", "inet6", "rose",
    "netbeui", "security", "key", "netlink", "packet", "ash", "econet", "atmsvc", "rds", "sna", "irda",
    "pppox", "wanpipe", "llc", "ib", "mpls", "can", "tipc", "bluetooth", "iucv", "rxrpc", "isdn",
    "phonet", "ieee802154", "caif", "alg", "nfc", "vsock", "kcm", "qipcrtr", "smc", "xdp", "mctp",
}
_AA_TYPES = {"stream", "dgram", "seqpacket", "rdm", "raw", "packet"}
_AA_PROTOS = {"tcp", "udp", "icmp"}
_NET_ORDER = ("tcp", "udp", "icmp", "raw", "packet")
_AA_SIGNALS = {**{s: s for s in SIGNALS}, "stp": "tstp"}
_RESERVED = {"allow", "deny", "audit", "tcp", "udp", "icmp", "raw", "packet", "any", "include", "let",
             "policy", "ruleset", "use", "subject", "exe", "cgroup", "all", "except", "mode", "default",
             "acknowledge", "limit", "port", "to", "test", "parent", "expect", "enforce"}
_OTHER_KINDS = {
    "dbus": "dbus", "unix": "unix", "mount": "mount", "remount": "mount", "umount": "mount",
    "pivot_root": "mount", "change_profile": "change_profile", "change_hat": "change_profile",
    "set": "rlimit", "rlimit": "rlimit", "link": "link", "alias": "alias",
}
KINDS = ("file", "capability", "network", "signal", "ptrace", "dbus", "unix", "mount",
         "change_profile", "rlimit", "link", "include", "other")


class ImportError_(Exception):
    """An input that cannot be read or parsed: `message` says where."""


# --- results --------------------------------------------------------------------------------------
@dataclass
class Entry:
    """One AppArmor rule as the converter saw it, in one profile."""
    loc: Loc
    text: str
    kind: str
    status: str = "converted"        # converted | approximate | partial | not
    reasons: list[tuple[str, str]] = field(default_factory=list)   # (key, detail): not converted
    approx: list[tuple[str, str]] = field(default_factory=list)    # (key, detail): approximations
    deny: bool = False
    lines: list[str] = field(default_factory=list)                 # the policyc rules
    via: str | None = None           # the include it came through (its display path)

    @property
    def converted(self) -> bool:
        return self.status in ("converted", "approximate")

    def why(self) -> str:
        parts = [d for _, d in self.reasons] + [d for _, d in self.approx]
        return "; ".join(parts)


@dataclass
class ProfileResult:
    name: str
    file: str
    loc: Loc
    policy: str | None = None        # the policyc policy's name; None when not converted
    reason: str | None = None        # why the profile as a whole is not converted
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class FileResult:
    path: str
    error: str | None = None         # `file:line:col: message` when it could not be read
    profiles: list[ProfileResult] = field(default_factory=list)


@dataclass
class ImportResult:
    text: str
    files: list[FileResult]
    notes: list[str]

    @property
    def entries(self) -> list[Entry]:
        return [e for f in self.files for p in f.profiles for e in p.entries]

    @property
    def ok(self) -> bool:
        return all(f.error is None for f in self.files)

    def counts(self) -> dict[str, int]:
        es = self.entries
        c = {"rules": len(es)}
        for s in ("converted", "approximate", "partial", "not"):
            c[s] = sum(e.status == s for e in es)
        c["deny_not_converted"] = sum(e.deny and e.status in ("partial", "not") for e in es)
        return c


# --- small helpers ----------------------------------------------------------------------------------
def quote(s: str) -> str:
    """A policyc string literal: `\\`, `"` and a newline escaped (docs/language.md)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def printable(s: str) -> str:
    """Text safe in a one-line comment: control characters and undecodable bytes escaped."""
    out = []
    for ch in s:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 32 or o == 127 or 0xD800 <= o <= 0xDFFF:
            out.append(f"\\x{o:02x}" if o < 256 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


# `px -> NAME` converted: a profile named by a plain name or an absolute path (not a child
# `a//b`, a stack `&a`, a variable or a pattern)
_TRANSITION_TARGET = re.compile(r"/?[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*")


def _target_policy(target: str) -> str:
    """The policy name `_policyc_name` gives the profile TARGET (before any clash)."""
    return _policyc_name(target.rsplit("/", 1)[-1] if target.startswith("/") else target, set())


def _policyc_name(text: str, taken: set[str], suffix: str = "") -> str:
    n = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")
    if not n or not (n[0].isalpha() or n[0] == "_"):
        n = "aa-" + n if n else "aa-profile"
    n = n + suffix
    if n in _RESERVED:
        n += "-profile"
    base, k = n, 2
    while n in taken:
        n = f"{base}-{k}"
        k += 1
    taken.add(n)
    return n


@functools.lru_cache(maxsize=65536)
def _valid_glob(text: str) -> str | None:
    """Why policyc would refuse `text` as a path glob, or None."""
    diags = Diagnostics()
    g = parse_glob(text, Span("<import>", 1, 1, 1, 1), diags)
    if g is None or diags.has_errors:
        return diags.items[0].message if diags.items else "not a glob"
    if not is_absolute(g.parts):
        return "not an absolute path"
    if len(text) > 65536:
        return "longer than 65,536 characters"
    return None


# --- variables --------------------------------------------------------------------------------------
class Vars:
    """The `@{NAME}` sets of one profile file (its preamble and the tunables it includes)."""

    def __init__(self):
        self.sets: dict[str, list[str]] = {}
        self.defaults_used: set[str] = set()

    def assign(self, a: Assign) -> None:
        if a.name.startswith("$"):
            return              # boolean variables: only conditionals use them
        name = a.name[2:-1]
        values = list(a.values)
        if a.append:
            self.sets.setdefault(name, []).extend(values)
        else:
            self.sets[name] = values

    def values(self, name: str, extra: dict[str, list[str]]) -> list[str]:
        if name in extra:
            return extra[name]
        if name in self.sets:
            return self.sets[name]
        if name in DEFAULT_TUNABLES:
            self.defaults_used.add(name)
            return DEFAULT_TUNABLES[name]
        raise aaglob.Unconvertible("undefined-variable", f"undefined variable @{{{name}}}")

    def expand(self, text: str, extra: dict[str, list[str]] | None = None, depth: int = 0) -> list[str]:
        """Every value of `text` with its variables replaced (AppArmor expands a rule into one
        per combination of values), in order, without repeats."""
        extra = extra or {}
        if depth > 32:
            raise aaglob.Unconvertible("undefined-variable", "variables that refer to each other in a cycle")
        m = _VAR.search(text)
        if m is None:
            return [text]
        out: list[str] = []
        for v in self.values(m.group(1), extra):
            for head in self.expand(v, extra, depth + 1):
                for tail in self.expand(text[m.end():], extra, depth + 1):
                    s = text[:m.start()] + head + tail
                    if s not in out:
                        out.append(s)
                    if len(out) > MAX_EXPANSIONS:
                        raise aaglob.Unconvertible("too-many-values", f"`{text}` has more than "
                                            f"{MAX_EXPANSIONS} values after variable expansion")
        return out


# --- files and includes -----------------------------------------------------------------------------
class Loader:
    """Reads and parses files once; resolves includes against the base directory."""

    def __init__(self, base: Path | None):
        self.base = base
        self._cache: dict[str, list] = {}
        self._shown: dict[str, str] = {}
        self._base_real = Path(os.path.realpath(base)) if base is not None else None

    def display(self, path: str) -> str:
        """`path` as the output names it: relative to the base directory when it is in it."""
        shown = self._shown.get(path)
        if shown is None:
            shown = path
            if self._base_real is not None:
                try:
                    shown = str(Path(os.path.realpath(path)).relative_to(self._base_real))
                except ValueError:
                    pass
            self._shown[path] = shown
        return shown

    def load(self, path: str) -> list:
        key = os.path.realpath(path)
        if key not in self._cache:
            self._cache[key] = parse(read_text(path), path)
        return self._cache[key]

    def resolve(self, inc: Include, from_file: str) -> list[str] | None:
        """The files an include names (a directory: its files, sorted), None when absent."""
        target = inc.target
        cands: list[Path] = []
        if inc.magic:
            if self.base is not None:
                cands.append(self.base / target)
        elif os.path.isabs(target):
            cands.append(Path(target))
        else:
            cands.append(Path(target))
            cands.append(Path(from_file).parent / target)
            if self.base is not None:
                cands.append(self.base / target)
        for c in cands:
            if c.is_dir():
                return [str(p) for p in sorted(c.iterdir()) if _profile_file(p)]
            if c.is_file():
                return [str(c)]
        return None


def _profile_file(p: Path) -> bool:
    n = p.name
    return (p.is_file() and not n.startswith(".") and n != "README"
            and not n.endswith(_SKIP_SUFFIXES))


def read_text(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError as e:
        raise ImportError_(f"{path}: cannot read: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImportError_(f"{path}: not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise ImportError_(f"{path}: larger than 64 MiB")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ImportError_(f"{path}: cannot read: {e.strerror or e}") from None
    return data.decode("utf-8", "surrogateescape")


def expand_inputs(paths: list[str]) -> list[str]:
    """Command-line paths: a directory stands for the profile files directly in it."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out.extend(str(c) for c in sorted(Path(p).iterdir()) if _profile_file(c))
        else:
            out.append(p)
    return out


# --- the output's blocks ------------------------------------------------------------------------------
class Sink:
    """The lines of one policy or ruleset body."""

    def __init__(self):
        self.lines: list[str] = []
        self._rules: set[str] = set()

    def rule(self, text: str, where: str) -> None:
        if text in self._rules:
            return
        self._rules.add(text)
        self.lines.append(f"{text}  # {printable(where)}")

    def comment(self, text: str) -> None:
        self.lines.append("# " + printable(text))

    def reserve(self) -> int:
        self.lines.append("")
        return len(self.lines) - 1


@dataclass
class _ProfileInfo:
    block: Block
    file: str
    name: str
    globs: list[str] | None          # the subject's exe globs; None: no subject
    why: tuple[str, str] | None      # (reason key, detail) when there is no subject
    vars: Vars


# --- conversion ----------------------------------------------------------------------------------------
class Converter:
    def __init__(self, base: Path | None):
        self.base = base
        self.loader = Loader(base)
        self.names: set[str] = set()
        self.rulesets: dict[tuple, str] = {}                 # (file, lines) -> name
        self.ruleset_text: list[tuple[str, str, list[str]]] = []   # (name, file, lines)
        self.by_name: dict[str, _ProfileInfo] = {}
        self.notes: list[str] = []
        self.frags: dict[str, str] = {}                      # rendered variable text -> name
        self.path_memo: dict[tuple, object] = {}
        self._frag_seen: set[int] = set()

    # -- the run --
    def run(self, paths: list[str]) -> ImportResult:
        files: list[FileResult] = []
        infos: list[tuple[FileResult, list[_ProfileInfo]]] = []
        for path in paths:
            fr = FileResult(path)
            files.append(fr)
            try:
                items = self.loader.load(path)
                vars_ = Vars()
                blocks: list[tuple[Block, str]] = []
                self._preamble(items, path, vars_, blocks, 0)
                profs = [self._info(b, f, vars_) for b, f in blocks]
            except AAParseError as e:
                fr.error = str(e)
                continue
            except ImportError_ as e:
                fr.error = str(e)
                continue
            except RecursionError:
                fr.error = f"{path}: nests too deeply"
                continue
            if not profs:
                self.notes.append(f"{path}: no AppArmor profile in this file")
            infos.append((fr, profs))
            for p in profs:
                self.by_name.setdefault(p.name, p)
        policies: list[str] = []
        unconverted: list[str] = []
        for fr, profs in infos:
            done: list[tuple[ProfileResult, str]] = []
            try:
                for info in profs:
                    done.append(self._profile(info))
            except (AAParseError, ImportError_) as e:      # in an include first read here
                fr.error = str(e)
                continue
            except RecursionError:
                fr.error = f"{fr.path}: nests too deeply"
                continue
            for pr, text in done:
                fr.profiles.append(pr)
                (policies if pr.policy else unconverted).append(text)
        text = self._document(paths, policies, unconverted)
        return ImportResult(text, files, self.notes)

    def _preamble(self, items: list, path: str, vars_: Vars, blocks: list, depth: int) -> None:
        if depth > MAX_INCLUDE_DEPTH:
            raise ImportError_(f"{path}: includes nest deeper than {MAX_INCLUDE_DEPTH}")
        for it in items:
            if isinstance(it, Assign):
                vars_.assign(it)
            elif isinstance(it, Include):
                files = self.loader.resolve(it, path)
                if files is None:
                    if not it.optional:
                        note = f"{it.loc}: `{it.text}` not found under {self.base}"
                        if note not in self.notes:
                            self.notes.append(note)
                    continue
                for f in files:
                    self._preamble(self.loader.load(f), f, vars_, blocks, depth + 1)
            elif isinstance(it, Block):
                if it.kind in ("profile", "hat"):
                    blocks.append((it, path))
                else:
                    raise AAParseError(it.loc, "a block outside any profile")
            elif isinstance(it, Rule):
                first = it.toks[0]
                if first.kind == "WORD" and first.value == "abi":
                    continue
                if first.kind == "WORD" and first.value == "alias":
                    note = f"{it.loc}: `{it.text}`: {REASONS['alias']}"
                    if note not in self.notes:
                        self.notes.append(note)
                    continue
                raise AAParseError(it.loc, f"a rule outside any profile: `{it.text[:60]}`")

    def _fragments(self, vars_: Vars) -> None:
        """Long single-valued variables (`@{pid}`), as policyc writes them: the output names
        them with a top-level `let` (the same text, so the same meaning) instead of repeating
        a hundred characters of `{0,1,...}` in every path."""
        if id(vars_) in self._frag_seen:
            return
        self._frag_seen.add(id(vars_))
        before = set(vars_.defaults_used)
        sets = dict(vars_.sets)
        if not self._frag_seen - {id(vars_)}:
            sets = {**DEFAULT_TUNABLES, **sets}     # the defaults' text too, once
        for name in sorted(sets):
            try:
                values = sets[name]
                expanded = vars_.expand(values[0]) if len(values) == 1 else []
                if len(expanded) != 1:
                    continue
                text = aaglob.render(aaglob.parse(aaglob.filter_slashes(expanded[0])))
            except (aaglob.Unconvertible, aaglob.BadPattern, ValueError):
                continue
            finally:
                vars_.defaults_used = set(before)
            if len(text) < 24 or "{" not in text or '"' in text or "\\" in text or "$" in text:
                continue
            self.frags.setdefault(text, name)

    def _info(self, b: Block, file: str, vars_: Vars) -> _ProfileInfo:
        self._fragments(vars_)
        raw_name = b.name or ""
        try:
            names = vars_.expand(raw_name)
        except aaglob.Unconvertible:
            names = [raw_name]
        name = names[0]
        info = _ProfileInfo(b, file, name, None, None, vars_)
        if b.kind == "hat":
            info.why = ("child-profile", "a hat at the top level")
            return info
        attach = b.attachment
        if attach is None and (raw_name.startswith(("/", "@{"))):
            attach = raw_name
        if attach is None:
            info.why = ("no-attachment", REASONS["no-attachment"])
            return info
        if b.xattrs:
            info.why = ("xattrs", f"{REASONS['xattrs']} ({', '.join(b.xattrs)})")
            return info
        try:
            globs: list[str] = []
            for v in vars_.expand(attach, {"profile_name": [name]}):
                for g in aaglob.to_policyc(v, directories=False):
                    bad = _valid_glob(g)
                    if bad:
                        raise aaglob.Unconvertible("attachment", bad)
                    if g not in globs:
                        globs.append(g)
        except aaglob.Unconvertible as e:
            info.why = ("attachment", f"the attachment `{attach}`: {e}")
            return info
        except aaglob.BadPattern as e:
            info.why = ("attachment", f"the attachment `{attach}`: {e}")
            return info
        info.globs = globs
        return info

    # -- one profile --
    def _profile(self, info: _ProfileInfo) -> tuple[ProfileResult, str]:
        b = info.block
        pr = ProfileResult(info.name, info.file, b.loc)
        where = printable(self.loader.display(info.file))
        conv = _ProfileConverter(self, info, pr)
        mode = "enforce"
        flag_notes = []
        for fl in b.flags:
            if fl == "complain":
                mode = "audit"
            elif fl in ("enforce",):
                pass
            elif fl == "kill":
                flag_notes.append("flags=(kill): policyc denies, it does not kill the process")
            elif fl == "audit":
                flag_notes.append("flags=(audit): policyc logs denials and `audit` rules, not every access")
            elif fl == "unconfined":
                if info.why is None:
                    info.why = ("profile-flags", "flags=(unconfined): the profile does not confine")
            else:
                flag_notes.append(f"flags=({fl}): no equivalent")
        pr.notes.extend(flag_notes)
        if info.why is not None:
            pr.reason = info.why[1]
            sink = Sink()
            conv.unconverted(b.body, sink, info.why)
            head = [f"# not converted: AppArmor profile `{printable(info.name)}` ({where}:{b.loc.line}:{b.loc.col}): "
                    f"{printable(info.why[1])}"]
            return pr, "\n".join(head + sink.lines) + "\n"
        pr.policy = _policyc_name(info.name.rsplit("/", 1)[-1] if info.name.startswith("/") else info.name,
                                  self.names)
        sink = Sink()
        conv.walk(b.body, frozenset(), sink, sink, info.file, None)
        lines = [f"policy {pr.policy} {{",
                 f"    # AppArmor profile `{printable(info.name)}` ({where}:{b.loc.line}:{b.loc.col})",
                 "    subject " + ", ".join(f"exe {quote(g)}" for g in info.globs or []),
                 f"    mode {mode}" + ("  # flags=(complain)" if mode == "audit" else ""),
                 "    default deny"]
        lines += [f"    # {printable(n)}" for n in flag_notes]
        lines += ["    " + ln for ln in sink.lines if ln != ""]
        lines.append("}")
        return pr, "\n".join(lines) + "\n"

    def ruleset(self, file: str, sink: Sink) -> str:
        key = (os.path.realpath(file), tuple(sink.lines))
        name = self.rulesets.get(key)
        if name is None:
            name = _policyc_name("aa-" + self.loader.display(file), self.names)
            self.rulesets[key] = name
            self.ruleset_text.append((name, file, sink.lines))
        return name

    def _document(self, paths: list[str], policies: list[str], unconverted: list[str]) -> str:
        from .. import __version__

        head = ["# Converted from AppArmor by `policyc import-apparmor` (policyc "
                f"{__version__}); includes resolved under {printable(str(self.base))}.",
                "# Rules policyc cannot say are listed where they stood: `# not converted:`, "
                "`# in part:` and",
                "# `# approximately:` comments (docs/language.md, \"From AppArmor\").",
                "# Profiles:"]
        head += [f"#   {printable(p)}" for p in paths]
        used = sorted({v for vs in [self._defaults_used()] for v in vs})
        if used:
            head.append("# Variables from the default tunables (Debian bookworm's; none found under the base "
                        "directory): " + ", ".join(f"@{{{v}}}" for v in used))
        for n in self.notes:
            head.append("# note: " + printable(n))
        body_blocks = list(policies) + list(unconverted)
        for name, file, lines in sorted(self.ruleset_text):
            body = [f"ruleset {name} {{", f"    # {printable(self.loader.display(file))}"]
            body += ["    " + ln for ln in lines if ln != ""]
            body.append("}")
            body_blocks.append("\n".join(body) + "\n")
        lets, body_blocks = self._name_fragments(body_blocks)
        blocks = ["\n".join(head) + "\n"]
        if lets:
            blocks.append("\n".join(lets) + "\n")
        return "\n".join(blocks + body_blocks)

    def _name_fragments(self, blocks: list[str]) -> tuple[list[str], list[str]]:
        frags = sorted(self.frags.items(), key=lambda kv: (-len(kv[0]), kv[1]))
        names: dict[str, str] = {}          # fragment -> let name
        taken: set[str] = set()
        out_blocks = []
        for block in blocks:
            out = []
            for line in block.split("\n"):
                if not line.lstrip().startswith("#"):
                    for text, var in frags:
                        if text in line:
                            if text not in names:
                                names[text] = _policyc_name(var, taken)
                            line = line.replace(text, "${" + names[text] + "}")
                out.append(line)
            out_blocks.append("\n".join(out))
        lets = [f"let {n} = {quote(t)}  # @{{{self.frags[t]}}}" for t, n in sorted(names.items(), key=lambda kv: kv[1])]
        return lets, out_blocks

    def _defaults_used(self) -> set[str]:
        out: set[str] = set()
        for info in self.by_name.values():
            out |= info.vars.defaults_used
        return out


class _ProfileConverter:
    """Walks one profile's body, filling its policy (and the rulesets of its includes)."""

    def __init__(self, run: Converter, info: _ProfileInfo, result: ProfileResult):
        self.run = run
        self.info = info
        self.result = result
        self.vars = info.vars
        self.extra = {"profile_name": [info.name]}
        self.seen: set[tuple] = set()        # include files already used by this policy
        self.tasks = 0                       # signal and ptrace rules in the policy so far
        self.targets = 0                     # ... of them with `to exe`

    def where(self, loc: Loc) -> str:
        return f"{self.run.loader.display(loc.file)}:{loc.line}"

    def full(self, loc: Loc) -> str:
        return f"{self.run.loader.display(loc.file)}:{loc.line}:{loc.col}"

    # -- walking --
    def walk(self, items: list, quals: frozenset, sink: Sink, policy: Sink, file: str,
             via: str | None, depth: int = 0) -> None:
        for it in items:
            if isinstance(it, Rule):
                e = self.rule(it, quals)
                if e is None:
                    continue
                e.via = via
                self.result.entries.append(e)
                self.emit(e, sink)
            elif isinstance(it, Include):
                self.include(it, quals, sink, policy, file, depth)
            elif isinstance(it, Assign):
                sink.comment(f"ignored: {self.full(it.loc)}: a variable assignment inside a profile")
            elif isinstance(it, Block):
                if it.kind == "qualifiers":
                    self.walk(it.body, quals | frozenset(it.qualifiers), sink, policy, file, via, depth)
                elif it.kind == "if":
                    self.unconverted([it], sink, ("conditional", REASONS["conditional"]), via)
                else:
                    why = ("child-profile", f"{REASONS['child-profile']} (`{it.name}` at {self.full(it.loc)})")
                    sink.comment(f"not converted: {self.full(it.loc)}: {it.kind} `{it.name}`: "
                                 f"{REASONS['child-profile']}")
                    self.unconverted(it.body, sink, why, via)

    def include(self, inc: Include, quals: frozenset, sink: Sink, policy: Sink, file: str, depth: int) -> None:
        files = self.run.loader.resolve(inc, file)
        if files is None:
            if inc.optional:
                sink.comment(f"{self.full(inc.loc)}: `{inc.text}`: not present (an optional include)")
                return
            e = Entry(inc.loc, inc.text, "include", "not",
                      [("include-missing", f"{REASONS['include-missing']} ({self.run.base})")])
            self.result.entries.append(e)
            self.emit(e, sink)
            return
        if inc.optional:
            # not `include?`: every include is converted in place (a ruleset), and the file is
            # AppArmor's, not a policy file `include?` could read
            sink.comment(f"{self.full(inc.loc)}: `{inc.text}`: an optional include, present: "
                         "the file's rules as they are now are converted")
        if depth >= MAX_INCLUDE_DEPTH:
            raise ImportError_(f"{inc.loc}: includes nest deeper than {MAX_INCLUDE_DEPTH}")
        for f in files:
            key = os.path.realpath(f)
            if (key, quals) in self.seen:
                continue
            self.seen.add((key, quals))
            items = self.run.loader.load(f)
            slot = policy.reserve()
            body = Sink()
            self.walk(items, quals, body, policy, f, self.run.loader.display(f), depth + 1)
            name = self.run.ruleset(f, body)
            policy.lines[slot] = f"use {name}"

    def unconverted(self, items: list, sink: Sink, why: tuple[str, str], via: str | None = None,
                    seen: set | None = None, depth: int = 0) -> None:
        """Every rule of `items` (child profiles, conditionals, includes in them) listed as
        not converted for `why`."""
        seen = set() if seen is None else seen
        for it in items:
            if isinstance(it, Rule):
                e = self.rule(it, frozenset(), classify_only=True)
                if e is None:
                    continue
                e.status, e.lines, e.approx, e.reasons = "not", [], [], [why]
                e.via = via
                self.result.entries.append(e)
                sink.comment(f"not converted: {self.full(e.loc)}: {e.text}")
            elif isinstance(it, Include):
                files = self.run.loader.resolve(it, it.loc.file)
                if files is None:
                    if not it.optional:
                        e = Entry(it.loc, it.text, "include", "not", [why])
                        self.result.entries.append(e)
                        sink.comment(f"not converted: {self.full(it.loc)}: {it.text} (not found)")
                    continue
                before = len(self.result.entries)
                for f in files:
                    if os.path.realpath(f) in seen or depth >= MAX_INCLUDE_DEPTH:
                        continue
                    seen.add(os.path.realpath(f))
                    self.unconverted(self.run.loader.load(f), Sink(), why, self.run.loader.display(f),
                                     seen, depth + 1)
                sink.comment(f"not converted: {self.full(it.loc)}: {it.text} "
                             f"({len(self.result.entries) - before} rules)")
            elif isinstance(it, Block):
                if it.kind in ("profile", "hat"):
                    sink.comment(f"not converted: {self.full(it.loc)}: {it.kind} `{it.name}`: "
                                 f"{REASONS['child-profile']}")
                    self.unconverted(it.body, sink, why if why[0] != "conditional" else
                                     ("child-profile", REASONS["child-profile"]), via, seen, depth)
                else:
                    self.unconverted(it.body, sink, why, via, seen, depth)

    def emit(self, e: Entry, sink: Sink) -> None:
        self.within_limits(e)
        where = self.where(e.loc)
        for ln in e.lines:
            sink.rule(ln, where)
        full = self.full(e.loc)
        if e.status == "not":
            sink.comment(f"not converted: {full}: {e.text} -- {e.why()}")
        elif e.status == "partial":
            sink.comment(f"in part: {full}: {e.text} -- {e.why()}")
        elif e.status == "approximate":
            sink.comment(f"approximately: {full}: {e.text} -- {e.why()}")

    def within_limits(self, e: Entry) -> None:
        """Signal and ptrace rules past what the kernel object holds for one policy
        (policyc/ir/limits.py) are listed instead: the output must pass `policyc check`."""
        tasks = [ln for ln in e.lines if ln.split(" ", 2)[1:2] in (["signal"], ["ptrace"])]
        if not tasks:
            return
        targets = [ln for ln in tasks if " to exe " in ln or " from exe " in ln]   # both take a bit
        if self.tasks + len(tasks) > abi.MAX_TASK_RULES or self.targets + len(targets) > abi.MAX_TARGET_PATTERNS:
            e.lines = [ln for ln in e.lines if ln not in tasks]
            e.reasons.append(("kernel-limit", f"{REASONS['kernel-limit']} ({abi.MAX_TASK_RULES} signal/ptrace "
                                              f"rules, {abi.MAX_TARGET_PATTERNS} with `to exe`)"))
            e.approx = []
            e.status = "partial" if e.lines else "not"
            return
        self.tasks += len(tasks)
        self.targets += len(targets)

    # -- one rule --
    def rule(self, r: Rule, quals: frozenset, classify_only: bool = False) -> Entry | None:
        toks = list(r.toks)
        q = set(quals)
        i = 0
        while i < len(toks) - 1 and toks[i].kind == "WORD" and toks[i].value in QUALIFIERS:
            q.add(toks[i].value)
            i += 1
        rest = toks[i:]
        first = rest[0]
        word = first.value if first.kind == "WORD" else None
        if word == "abi":
            return None
        kind = self.kind_of(rest)
        e = Entry(r.loc, printable(r.text), kind, deny="deny" in q)
        if classify_only:
            return e
        decision = "deny" if "deny" in q else "audit" if "audit" in q else "allow"
        owner = "owner" in q
        try:
            if any(_has_surrogate(t.value) for t in rest):
                raise aaglob.Unconvertible("not-utf8", REASONS["not-utf8"])
            if "other" in q and kind in ("file", "link"):
                raise aaglob.Unconvertible("other", REASONS["other"])
            if kind == "file":
                self.file_rule(e, rest[1:] if word == "file" else rest, decision, owner)
            elif kind == "capability":
                self.capability(e, rest[1:], decision)
            elif kind == "network":
                self.network(e, rest[1:], decision)
            elif kind == "signal":
                self.signal(e, rest[1:], decision)
            elif kind == "ptrace":
                self.ptrace(e, rest[1:], decision)
            elif kind in ("dbus", "unix", "mount", "change_profile", "rlimit", "link"):
                raise aaglob.Unconvertible(kind, REASONS[kind])
            elif word in _OTHER_KINDS:
                key = _OTHER_KINDS[word]
                raise aaglob.Unconvertible(key, REASONS[key])
            else:
                raise aaglob.Unconvertible("unknown-rule", f"{REASONS['unknown-rule']} (`{first.raw}`)")
        except aaglob.Unconvertible as x:
            e.lines = []
            e.approx = []
            e.reasons = [(x.key, str(x))]
        except aaglob.BadPattern as x:
            e.lines = []
            e.approx = []
            e.reasons = [("bad-pattern", f"{REASONS['bad-pattern']}: {x}")]
        except _BadRule as x:
            e.lines = []
            e.approx = []
            e.reasons = [("bad-rule", f"{REASONS['bad-rule']}: {x}")]
        if e.lines:
            e.status = "partial" if e.reasons else "approximate" if e.approx else "converted"
        else:
            e.status = "not"
            if not e.reasons:
                e.reasons = [("bad-rule", REASONS["bad-rule"])]
        return e

    @staticmethod
    def kind_of(rest: list[Tok]) -> str:
        first = rest[0]
        w = first.value if first.kind == "WORD" else None
        if w in ("capability", "network", "signal", "ptrace", "file"):
            return w
        if w in _OTHER_KINDS:
            return {"alias": "other"}.get(_OTHER_KINDS[w], _OTHER_KINDS[w])
        if first.kind == "STRING" or (w and w[0] in "/@{"):
            return "file"
        if w and _PERMS_WORD.fullmatch(w) and len(rest) > 1:
            return "file"
        return "other"

    # -- paths --
    def paths(self, text: str) -> list[str]:
        """The policyc globs of an AppArmor path (memoized per variable set: abstractions are
        converted again for every profile that includes them)."""
        key = (id(self.vars), text, self.info.name if "@{profile_name}" in text else None)
        hit = self.run.path_memo.get(key)
        if hit is None:
            try:
                hit = self._paths(text)
            except (aaglob.Unconvertible, aaglob.BadPattern) as e:
                hit = e
            self.run.path_memo[key] = hit
        if isinstance(hit, Exception):
            raise hit
        return hit

    def _paths(self, text: str) -> list[str]:
        out: list[str] = []
        for v in self.vars.expand(text, self.extra):
            if not aaglob.filter_slashes(v).startswith(("/", "{")):
                raise aaglob.Unconvertible("relative-path", f"`{v}` is not an absolute path")
            for g in aaglob.to_policyc(v):
                bad = _valid_glob(g)
                if bad:
                    raise aaglob.Unconvertible("bad-pattern", f"`{g}`: {bad}")
                if g not in out:
                    out.append(g)
        if not out:
            raise aaglob.Unconvertible("bad-pattern", f"`{text}` names no path policyc can see")
        return out

    def file_rule(self, e: Entry, toks: list[Tok], decision: str, owner: bool = False) -> None:
        """OWNER: AppArmor's `owner` qualifier, policyc's `owner` (file rules only: an exec
        part is not converted)."""
        toks = [t for t in toks]
        if toks and toks[0].kind == "WORD" and toks[0].value in ("safe", "unsafe"):
            toks = toks[1:]
        if not toks:            # `file,`: every file permission and ix on every path
            if owner:           # `owner` needs a path: every path
                e.lines = [f'{decision} file owner "/**"']
                e.reasons.append(("owner", REASONS["owner"]))
            else:
                e.lines = [f"{decision} file", f"{decision} exec"]
            e.reasons.append(("lock", REASONS["lock"]))
            return
        target = None
        if len(toks) >= 2 and toks[-2].kind == "ARROW":
            target = toks[-1].value
            toks = toks[:-2]
        path_tok = perms_tok = None
        if len(toks) == 2 and _is_path(toks[0]) and toks[1].kind == "WORD":
            path_tok, perms_tok = toks
        elif len(toks) == 2 and toks[0].kind == "WORD" and _is_path(toks[1]):
            perms_tok, path_tok = toks
        elif len(toks) == 3 and toks[0].kind == "WORD" and toks[1].kind == "WORD" \
                and toks[1].value == "subset" and _is_path(toks[2]):
            perms_tok, path_tok = toks[0], toks[2]
        else:
            raise _BadRule("expected PATH PERMISSIONS or PERMISSIONS PATH")
        perms = _parse_perms(perms_tok.value)
        if perms is None:
            raise _BadRule(f"invalid access mode `{perms_tok.value}`")
        paths = self.paths(path_tok.value)
        has = set(perms)
        execs = [p for p in perms if p.endswith("x")]
        ops: list[str] = []
        exec_rule = False
        moves: list[str] = []   # `as unconfined` (ux, Ux), `as policy NAME` (px, Px -> NAME)
        if "r" in has:
            ops.append("read")
        if "w" in has:
            ops += ["write", "create", "delete", "chmod", "chown"]
            if "r" in has and decision != "deny":
                ops.append("rename")
        elif "a" in has:
            ops.append("append")
        if decision == "deny":
            if "m" in has:
                ops.append("exec-map")
            exec_rule = bool(execs)
        else:
            for x in execs:
                if x == "ix":
                    exec_rule = True
                elif x == "x":
                    e.reasons.append(("exec-bare-x", REASONS["exec-bare-x"]))
                elif x.lower() == "ux":
                    moves.append("as unconfined")   # (Ux's scrubbed environment: policyc always)
                elif x.lower() == "px" and target and _TRANSITION_TARGET.fullmatch(target):
                    # the profile NAME as the importer names its policy (a profile of this
                    # import keeps that name unless two clash); not loaded: the exec is
                    # denied, as AppArmor denies a px to a missing profile
                    moves.append(f"as policy {_target_policy(target)}")
                else:
                    to = f" -> {target}" if target else ""
                    e.reasons.append(("exec-transition", f"{x}{to}: {REASONS['exec-transition']}"))
            if "m" in has and not exec_rule:
                ops.append("exec-map")
        if "l" in has and not (decision == "deny" and "w" in has):
            # (a `deny` with `w` already denies the new name: policyc decides a link's new name
            # as `create`, and any `deny` rule protects its paths from being linked away)
            e.reasons.append(("link", REASONS["link"]))
        if "k" in has:
            e.reasons.append(("lock", REASONS["lock"]))
        ops = [o for o in FILE_OPS if o in ops]
        plist = ", ".join(quote(p) for p in paths)
        if ops:
            e.lines.append(f"{decision} file {', '.join(ops)} {'owner ' if owner else ''}{plist}")
        if (exec_rule or moves) and owner:
            e.reasons.append(("owner", REASONS["owner"]))
        elif exec_rule:
            e.lines.append(f"{decision} exec {plist}")
        if moves and not owner:
            e.lines += [f"{decision} exec {plist} {m}" for m in moves]

    # -- capabilities --
    def capability(self, e: Entry, toks: list[Tok], decision: str) -> None:
        names = []
        for t in toks:
            if t.kind != "WORD":
                raise _BadRule(f"unexpected `{t.raw}`")
            names.append(t.value.lower())
        if not names:
            e.lines = [f"{decision} capability", f"{decision} module load", f"{decision} bpf"]
            return
        known = [n for n in names if n in CAPABILITIES]
        unknown = [n for n in names if n not in CAPABILITIES]
        if unknown:
            e.reasons.append(("capability-unknown", f"{REASONS['capability-unknown']}: {', '.join(unknown)}"))
        if not known:
            return
        e.lines.append(f"{decision} capability {', '.join(dict.fromkeys(known))}")
        if "sys_module" in known:
            e.lines.append(f"{decision} module load")
        if decision != "deny" and ("bpf" in known or "sys_admin" in known):
            e.lines.append(f"{decision} bpf")

    # -- network --
    def network(self, e: Entry, toks: list[Tok], decision: str) -> None:
        if any(t.kind in ("LPAREN", "EQ") for t in toks):
            raise aaglob.Unconvertible("net-perms", REASONS["net-perms"])
        domain = typ = proto = None
        for t in toks:
            w = t.value.lower()
            if w in _AA_DOMAINS and domain is None and typ is None and proto is None:
                domain = w
            elif w in _AA_TYPES and typ is None:
                typ = w
            elif w in _AA_PROTOS and proto is None:
                proto = w
            else:
                raise _BadRule(f"`{t.raw}` is not a socket family, type or protocol")
        if domain is None and typ is None and proto is None:
            e.lines = [f"{decision} net"]
            return
        if domain == "unix":
            raise aaglob.Unconvertible("net-unix", REASONS["net-unix"])
        if domain == "netlink":
            raise aaglob.Unconvertible("net-netlink", REASONS["net-netlink"])
        if domain not in (None, "inet", "inet6", "packet"):
            raise aaglob.Unconvertible("net-family", f"{REASONS['net-family']} ({domain})")
        protos: list[str] = []
        if domain in (None, "inet", "inet6"):
            by_type = {"stream": ["tcp"], "dgram": ["udp", "icmp"], "raw": ["raw"]}
            if typ is not None and typ not in by_type and domain is not None:
                raise aaglob.Unconvertible("net-type", f"{REASONS['net-type']} ({typ})")
            inet = by_type.get(typ, []) if typ else ["tcp", "udp", "icmp", "raw"]
            if proto is not None:
                if typ == "raw":
                    inet = ["raw"]
                    e.approx.append(("raw-wider", APPROX["raw-wider"]))
                else:
                    inet = [p for p in inet if p == proto]
            protos += inet
        if domain == "packet" or (domain is None and proto is None and typ in ("raw", "dgram", "packet")):
            protos.append("packet")
            if typ is not None and decision != "deny":
                e.approx.append(("packet-wider", APPROX["packet-wider"]))
        if not protos:
            raise aaglob.Unconvertible("net-type", f"{REASONS['net-type']} ({typ} {proto})")
        scope = {"inet": "0.0.0.0/0", "inet6": "::/0"}.get(domain or "")
        for p in [p for p in _NET_ORDER if p in protos]:
            if scope is None or p == "packet":
                e.lines.append(f"{decision} net {p}")
            else:
                if decision != "deny":
                    e.lines.append(f"{decision} net create {p}")
                e.lines.append(f"{decision} net connect, bind {p} {scope}")

    # -- signals and ptrace --
    def peer_targets(self, peer: str | None) -> list[str] | None:
        """The `to exe` globs of an AppArmor peer (a profile name), None for any peer."""
        if peer is None:
            return None
        out: list[str] = []
        for v in self.vars.expand(peer, self.extra):
            if v == "unconfined":
                raise aaglob.Unconvertible("peer-unconfined", REASONS["peer-unconfined"])
            if v == self.info.name and self.info.globs:
                globs = self.info.globs
            elif v.startswith("/"):
                globs = aaglob.to_policyc(v, directories=False)
            else:
                other = self.run.by_name.get(v)
                if other is None or not other.globs:
                    raise aaglob.Unconvertible("peer-unknown", f"{REASONS['peer-unknown']} (peer={v})")
                globs = other.globs
            for g in globs:
                bad = _valid_glob(g)
                if bad:
                    raise aaglob.Unconvertible("bad-pattern", f"peer `{v}`: {bad}")
                if g not in out:
                    out.append(g)
        return out

    def receive(self, e: Entry, head: str, peer: str | None, reason: str) -> None:
        """The receive half (`signal (receive)`, `ptrace (tracedby)`): `HEAD from exe "X"` for a
        peer that is an absolute path (a profile named by its program); any other peer (a
        profile name, `unconfined`, none: any sender) is listed, as policyc names a sender by
        its program. AppArmor's receive side is closed (what no rule allows is denied); the
        converted one is not: no `deny ... from all` is added, since the peers that were not
        converted (systemd's `unconfined` above all) would then be denied."""
        if peer is None or not peer.startswith("/"):
            e.reasons.append((reason, REASONS[reason]))
            return
        senders = self.peer_targets(peer)
        e.lines += [f"{head} from exe {quote(g)}" for g in _one_target(senders)]

    def signal(self, e: Entry, toks: list[Tok], decision: str) -> None:
        args = _args(toks)
        perms: set[str] = set()
        sigs: list[str] | None = None
        peer = None
        for a in args:
            if a[0] in ("word", "group"):
                for w in (a[1] if a[0] == "group" else [a[1]]):
                    w = w.lower()
                    if w in ("send", "w", "write"):
                        perms.add("send")
                    elif w in ("receive", "r", "read"):
                        perms.add("receive")
                    elif w == "rw":
                        perms |= {"send", "receive"}
                    else:
                        raise _BadRule(f"`{w}` is not a signal permission")
            elif a[0] == "kv" and a[1] == "set":
                sigs = (sigs or []) + [s.lower() for v in a[2] for s in v.replace(",", " ").split()]
            elif a[0] == "kv" and a[1] == "peer":
                peer = a[2][0] if a[2] else None
            else:
                raise _BadRule(f"unexpected `{a}` in a signal rule")
        if not perms:
            perms = {"send", "receive"}
        names: list[str] = []
        if sigs is not None:
            for s in sigs:
                if s == "exists":
                    e.reasons.append(("signal-exists", REASONS["signal-exists"]))
                elif s in _AA_SIGNALS:
                    names.append(_AA_SIGNALS[s])
                else:
                    e.reasons.append(("signal-unknown", f"{REASONS['signal-unknown']}: {s}"))
            if not names:
                return
        ops = (" " + ", ".join(dict.fromkeys(names))) if names else ""
        if "receive" in perms:
            self.receive(e, f"{decision} signal{ops}", peer, "signal-receive")
        if "send" not in perms:
            return
        targets = self.peer_targets(peer)
        if targets is None:
            e.lines.append(f"{decision} signal{ops}")
        else:
            if peer is not None and not peer.startswith("/"):
                e.approx.append(("peer-attachment", APPROX["peer-attachment"]))
            e.lines += [f"{decision} signal{ops} to exe {quote(g)}" for g in _one_target(targets)]

    def ptrace(self, e: Entry, toks: list[Tok], decision: str) -> None:
        perms: set[str] = set()
        peer = None
        for a in _args(toks):
            if a[0] in ("word", "group"):
                for w in (a[1] if a[0] == "group" else [a[1]]):
                    w = w.lower()
                    m = {"r": {"read"}, "read": {"read"}, "w": {"trace"}, "trace": {"trace"},
                         "rw": {"read", "trace"}, "readby": {"readby"}, "tracedby": {"tracedby"}}.get(w)
                    if m is None:
                        raise _BadRule(f"`{w}` is not a ptrace permission")
                    perms |= m
            elif a[0] == "kv" and a[1] == "peer":
                peer = a[2][0] if a[2] else None
            else:
                raise _BadRule(f"unexpected `{a}` in a ptrace rule")
        if not perms:
            perms = {"read", "trace", "readby", "tracedby"}
        if "tracedby" in perms:
            self.receive(e, f"{decision} ptrace", peer, "ptrace-receive")
        if "readby" in perms and "read" not in perms:
            e.reasons.append(("ptrace-read", REASONS["ptrace-read"]))   # /proc introspection of it
        if "read" in perms and "trace" not in perms:
            e.reasons.append(("ptrace-read", REASONS["ptrace-read"]))
        if "trace" not in perms:
            return
        targets = self.peer_targets(peer)
        if targets is None:
            e.lines.append(f"{decision} ptrace")
        else:
            if peer is not None and not peer.startswith("/"):
                e.approx.append(("peer-attachment", APPROX["peer-attachment"]))
            e.lines += [f"{decision} ptrace to exe {quote(g)}" for g in _one_target(targets)]


class _BadRule(Exception):
    pass


def _one_target(globs: list[str]) -> list[str]:
    """Several `to exe` globs as one (`{a,b}`): the kernel holds 64 targets per policy."""
    if len(globs) > 1:
        merged = "{" + ",".join(globs) + "}"
        if _valid_glob(merged) is None:
            return [merged]
    return globs


def _has_surrogate(s: str) -> bool:
    return any(0xDC80 <= ord(c) <= 0xDCFF for c in s)


def _is_path(t: Tok) -> bool:
    return t.kind == "STRING" or (t.kind == "WORD" and t.value[:1] in ("/", "@", "{"))


def _parse_perms(s: str) -> list[str] | None:
    out: list[str] = []
    pos = 0
    for m in _PERM.finditer(s):
        if m.start() != pos:
            return None
        out.append(m.group(0))
        pos = m.end()
    if pos != len(s) or not out:
        return None
    return out


def _args(toks: list[Tok]) -> list[tuple]:
    """A rule's arguments: ("word", w), ("group", [w...]) for `(a, b)`, ("kv", key, [v...])
    for `key=value` and `key=(a b)`."""
    out: list[tuple] = []
    i, n = 0, len(toks)

    def group(i: int) -> tuple[list[str], int]:
        vals: list[str] = []
        depth = 0
        j = i
        while j < n:
            t = toks[j]
            if t.kind == "LPAREN":
                depth += 1
            elif t.kind == "RPAREN":
                depth -= 1
                if depth == 0:
                    return vals, j + 1
            elif t.kind in ("WORD", "STRING"):
                vals.append(t.value)
            j += 1
        raise _BadRule("unclosed `(`")

    while i < n:
        t = toks[i]
        if t.kind in ("WORD", "STRING") and i + 1 < n and toks[i + 1].kind == "EQ":
            key = t.value.lower()
            i += 2
            if i < n and toks[i].kind == "LPAREN":
                vals, i = group(i)
            elif i < n and toks[i].kind in ("WORD", "STRING"):
                vals = [toks[i].value]
                i += 1
            else:
                raise _BadRule(f"`{key}=` without a value")
            out.append(("kv", key, vals))
        elif t.kind == "LPAREN":
            vals, i = group(i)
            out.append(("group", vals))
        elif t.kind in ("WORD", "STRING"):
            out.append(("word", t.value))
            i += 1
        else:
            raise _BadRule(f"unexpected `{t.raw}`")
    return out


def import_apparmor(paths: list[str], base: str | os.PathLike | None = DEFAULT_BASE) -> ImportResult:
    """Convert the profiles of `paths` (files; a directory stands for the files in it)."""
    b = Path(base) if base is not None else None
    return Converter(b).run(expand_inputs(list(paths)))


__all__ = ["import_apparmor", "ImportResult", "FileResult", "ProfileResult", "Entry", "REASONS",
           "APPROX", "DEFAULT_BASE", "DEFAULT_TUNABLES", "KINDS"]
