"""Load, attach, pin, replace and unload one compiled policy object.

Pins of policy NAME under PIN_ROOT (nothing else is written there):

    PIN_ROOT/NAME/links/<program name>   one BPF link per program (keeps it attached)
    PIN_ROOT/NAME/maps/<map name>        every map of the object but libbpf's internal ones
                                         (.rodata, .bss, .data, .kconfig: bpffs refuses
                                         names with a dot anyway)
    PIN_ROOT/NAME/staging/{links,maps}/  only while a replace runs (see `_replace`)

Every step registers its inverse in an `_Undo` list; any failure runs the list backwards, so a
failed `load` leaves nothing attached and nothing pinned, and a failed replace leaves the old
version enforcing as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from . import _libbpf as B
from .errors import BpfError

DEFAULT_PIN_ROOT = "/sys/fs/bpf/policyc"
BPFFS = "/sys/fs/bpf"
# PIN_ROOT-shared/MAP: maps every policy loaded under PIN_ROOT uses as one (`load(shared=...)`),
# beside the root, not in it, where every directory is a policy (bpffs refuses names with a
# dot, which no policy name has)
SHARED_SUFFIX = "-shared"


def shared_dir(pin_root: str) -> str:
    return pin_root.rstrip("/") + SHARED_SUFFIX
STAGING = "staging"  # PIN_ROOT/NAME/staging/{links,maps}: exists only while a replace runs
WAIT_TIMEOUT = 5.0  # seconds unload/unwinding wait for the kernel to free detached links


@dataclass
class MapFill:
    """What to put in one map before the programs attach.

    `max_entries` (when set) resizes the map before load. Each entry is `(key, value)`; for a
    per-CPU map `value` is either one value, replicated on every possible CPU, or a list with
    one value per possible CPU.
    """

    max_entries: int | None = None
    entries: list[tuple[bytes, bytes | list[bytes]]] = field(default_factory=list)
    # Use the map pinned at this path instead of creating one (bpf_map__reuse_fd): state that
    # must survive a reload (which tasks are governed, the ring buffer a reader holds).
    reuse_pin: str | None = None
    # More entries, packed: (count, keys, values), the COUNT keys one after the other and the
    # COUNT values likewise (as BPF_MAP_UPDATE_BATCH takes them; not for per-CPU maps), put in
    # after `entries`. A large map comes this way without a pair of bytes objects per entry;
    # where the batch is refused they go in entry by entry, as `entries` do.
    packed: tuple[int, bytes, bytes] | None = None

    def pairs(self) -> list[tuple[bytes, bytes | list[bytes]]]:
        """Every entry as a (key, value) pair: `entries`, then `packed` cut in COUNT keys and
        COUNT values."""
        out = list(self.entries)
        if self.packed is not None:
            n, keys, values = self.packed
            if n:
                k, v = len(keys) // n, len(values) // n
                out += [(keys[i * k:(i + 1) * k], values[i * v:(i + 1) * v]) for i in range(n)]
        return out


@dataclass(frozen=True)
class LoadedPolicy:
    name: str
    pin_dir: str
    links: dict[str, str]  # program name -> pin path
    maps: dict[str, str]  # map name -> pin path
    log: str = ""  # what libbpf printed during the load
    replaced: bool = False
    swapped_in_place: tuple[str, ...] = ()  # programs switched by BPF_LINK_UPDATE (no overlap)


# ---- bpffs -----------------------------------------------------------------------------------


def _mounts() -> list[tuple[str, str]]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mnt = left.split()[4].replace("\\040", " ")
            out.append((mnt, right.split()[0]))
    return out


def ensure_bpffs(path: str = BPFFS) -> None:
    """Mount the BPF filesystem at /sys/fs/bpf unless it is mounted there already."""
    if any(m == path and t == "bpf" for m, t in _mounts()):
        return
    os.makedirs(path, exist_ok=True)
    rc = B.libc().mount(b"bpf", path.encode(), b"bpf", 0, B.ffi.NULL)
    if rc != 0:
        raise BpfError(f"mounting bpffs at `{path}` failed: {B.describe(B.ffi.errno)}")


@contextlib.contextmanager
def _locked(pin_root: str) -> Iterator[None]:
    """Serialise loads, replaces and unloads under one pin root (flock on the directory)."""
    fd = os.open(pin_root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _check_name(kind: str, name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise BpfError(f"invalid {kind} name `{name}`")


def _fs_type(path: str) -> str:
    """The type of the filesystem mounted at PATH or its closest mounted ancestor."""
    path = os.path.realpath(path)
    best, fstype = "", "?"
    for mnt, t in _mounts():
        inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best):
            best, fstype = mnt, t
    return fstype


def _prepare_root(pin_root: str) -> None:
    ensure_bpffs()
    try:
        os.makedirs(pin_root, exist_ok=True)
    except OSError as e:
        raise BpfError(f"creating pin root `{pin_root}` failed: {B.describe(e.errno)}") from None
    fstype = _fs_type(pin_root)
    if fstype != "bpf":
        raise BpfError(f"pin root `{pin_root}` is not on a BPF filesystem (it is on {fstype})")


# ---- undo log ---------------------------------------------------------------------------------


class _Undo:
    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []
        self.errors: list[str] = []
        self.links: list[tuple[int, int]] = []  # (link id, prog id) that unwinding detaches

    def push(self, what: str, fn: Callable[[], object]) -> None:
        self._steps.append((what, fn))

    def run(self) -> None:
        while self._steps:
            what, fn = self._steps.pop()
            try:
                fn()
            except Exception as e:  # keep unwinding; report what could not be undone
                self.errors.append(f"{what}: {e}")

    def forget(self) -> None:
        self._steps.clear()
        self.links.clear()


def _fail(message: str, log: str, undo: _Undo) -> BpfError:
    """Unwind, wait until the links it destroyed are gone, and build the error."""
    undo.run()
    alive = wait_links_gone([li for li, _ in undo.links], [pi for _, pi in undo.links])
    undo.links.clear()
    if alive:
        undo.errors.append(f"links {alive} are still alive after {WAIT_TIMEOUT:g} s")
    if undo.errors:
        message += "; unwinding also failed: " + "; ".join(undo.errors)
    return BpfError(message, log)


def _unlink(path: str) -> None:
    """Undo step: remove a pin we made (already gone is fine: a rename moved it)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _remove_tree(path: str) -> None:
    """Remove a pin directory tree (pins and subdirectories)."""
    for entry in os.listdir(path):
        full = os.path.join(path, entry)
        if os.path.isdir(full) and not os.path.islink(full):
            _remove_tree(full)
        else:
            os.unlink(full)
    os.rmdir(path)


def _obj_get(path: str) -> int:
    fd = B.lib().bpf_obj_get(path.encode())
    if fd < 0:
        raise BpfError(f"opening pinned object `{path}` failed: {B.describe(fd)}")
    return fd


def _obj_pin(fd: int, path: str) -> None:
    rc = B.lib().bpf_obj_pin(fd, path.encode())
    if rc < 0:
        raise BpfError(f"pinning at `{path}` failed: {B.describe(rc)}")


# ---- the object: open, size, load, fill -------------------------------------------------------


class _Object:
    """An opened, loaded and filled bpf_object; `programs` and `maps` in ELF order."""

    @staticmethod
    def open_only(obj_path: str):
        """The bpf_object of OBJ_PATH, opened and not loaded (the caller closes it)."""
        lib = B.lib()
        if not os.path.isfile(obj_path):
            raise BpfError(f"object `{obj_path}` does not exist")
        with B.LogCapture() as cap:
            obj = lib.bpf_object__open_file(os.fsencode(obj_path), B.ffi.NULL)
            err = B.ffi.errno
        if obj == B.ffi.NULL:
            raise BpfError(f"opening `{obj_path}` failed: {B.describe(err or errno.EINVAL)}", cap.text)
        return obj

    def __init__(self, obj_path: str, maps: dict[str, MapFill], undo: _Undo, log: list[str]):
        lib = B.lib()
        self.lib = lib
        if not os.path.isfile(obj_path):
            raise BpfError(f"object `{obj_path}` does not exist")
        with B.LogCapture() as cap:
            obj = lib.bpf_object__open_file(os.fsencode(obj_path), B.ffi.NULL)
            err = B.ffi.errno
        log.append(cap.text)
        if obj == B.ffi.NULL:
            raise BpfError(f"opening `{obj_path}` failed: {B.describe(err or errno.EINVAL)}",
                           cap.text)
        self.obj = obj
        undo.push("close the object", self.close)

        self.maps: dict[str, object] = {}
        m = lib.bpf_object__next_map(obj, B.ffi.NULL)
        while m != B.ffi.NULL:
            self.maps[B.ffi.string(lib.bpf_map__name(m)).decode()] = m
            m = lib.bpf_object__next_map(obj, m)
        self.programs: dict[str, object] = {}
        p = lib.bpf_object__next_program(obj, B.ffi.NULL)
        while p != B.ffi.NULL:
            if lib.bpf_program__autoload(p):
                self.programs[B.ffi.string(lib.bpf_program__name(p)).decode()] = p
            p = lib.bpf_object__next_program(obj, p)
        for pname in self.programs:
            _check_name("program", pname)

        unknown = sorted(set(maps) - set(self.maps))
        if unknown:
            raise BpfError(f"the object has no map `{unknown[0]}` (it has: "
                           f"{', '.join(sorted(self.maps)) or 'none'})")
        for mname, m in self.maps.items():
            # An object may ask libbpf to pin maps by name under /sys/fs/bpf: we pin ourselves.
            lib.bpf_map__set_pin_path(m, B.ffi.NULL)
            fill = maps.get(mname)
            if fill is not None and fill.reuse_pin is not None:
                try:
                    fd = _obj_get(fill.reuse_pin)
                except OSError as e:
                    raise BpfError(f"map `{mname}`: cannot reuse `{fill.reuse_pin}`: "
                                   f"{B.describe(e.errno)}") from None
                try:
                    rc = lib.bpf_map__reuse_fd(m, fd)
                finally:
                    os.close(fd)  # reuse_fd keeps its own duplicate
                if rc < 0:
                    raise BpfError(f"map `{mname}`: reusing `{fill.reuse_pin}` failed: {B.describe(rc)}")
                continue
            if fill is not None and fill.max_entries is not None:
                rc = lib.bpf_map__set_max_entries(m, fill.max_entries)
                if rc < 0:
                    raise BpfError(f"map `{mname}`: setting max_entries to {fill.max_entries} "
                                   f"failed: {B.describe(rc)}")

        with B.LogCapture() as cap:
            rc = lib.bpf_object__load(obj)
        log.append(cap.text)
        if rc < 0:
            raise BpfError(f"loading `{obj_path}` failed: {B.describe(rc)}", "".join(log))

        for mname, fill in maps.items():
            self._fill(mname, self.maps[mname], fill)

    def _fill(self, mname: str, m, fill: MapFill) -> None:
        lib = self.lib
        ksize = lib.bpf_map__key_size(m)
        vsize = lib.bpf_map__value_size(m)
        percpu = lib.bpf_map__type(m) in B.PERCPU_MAP_TYPES
        ncpu = B.possible_cpus() if percpu else 1
        stride = (vsize + 7) // 8 * 8 if percpu else vsize
        fd = lib.bpf_map__fd(m)
        entries = fill.entries
        if fill.packed is not None:
            n, keys, values = fill.packed
            if not (n and not percpu and len(keys) == n * ksize and len(values) == n * vsize
                    and self._update_batch(mname, fd, n, keys, values)):
                entries = fill.pairs()   # entry by entry: the bad entry named, or no batch here
            elif not entries:
                return
        if not percpu and len(entries) > 64 and self._fill_batch(mname, fd, ksize, vsize, entries):
            return
        kbuf = B.ffi.new("char[]", max(ksize, 1))
        vbuf = B.ffi.new("char[]", max(stride * ncpu, 1))
        for i, (key, value) in enumerate(entries):
            if len(key) != ksize:
                raise BpfError(f"map `{mname}` entry {i}: key is {len(key)} bytes, "
                               f"the map's keys are {ksize}")
            values = value if isinstance(value, list) else [value] * ncpu
            if len(values) != ncpu:
                raise BpfError(f"map `{mname}` entry {i}: {len(values)} per-CPU values for "
                               f"{ncpu} possible CPUs")
            for c, v in enumerate(values):
                if len(v) != vsize:
                    raise BpfError(f"map `{mname}` entry {i}: value is {len(v)} bytes, "
                                   f"the map's values are {vsize}")
                B.ffi.memmove(vbuf + c * stride, v, vsize)
            B.ffi.memmove(kbuf, key, ksize)
            rc = lib.bpf_map_update_elem(fd, kbuf, vbuf, B.BPF_ANY)
            if rc < 0:
                raise BpfError(f"map `{mname}` entry {i} (key {key.hex()}): update failed: "
                               f"{B.describe(rc)}")

    def _fill_batch(self, mname: str, fd: int, ksize: int, vsize: int, entries: list) -> bool:
        """One BPF_MAP_UPDATE_BATCH per 8,192 entries (hash and array maps): a 10,000-rule
        policy has ~300,000 entries, one syscall each is slow. False when the map type does
        not batch (LPM tries): the caller then goes entry by entry."""
        for i, (key, value) in enumerate(entries):
            if len(key) != ksize or isinstance(value, list) or len(value) != vsize:
                return False  # the entry-by-entry path names the bad entry
        return self._update_batch(mname, fd, len(entries), b"".join(k for k, _ in entries),
                                  b"".join(v for _, v in entries))

    BATCH = 8192

    def _update_batch(self, mname: str, fd: int, n: int, keys: bytes, values: bytes) -> bool:
        """N entries, packed (N keys, N values of the map's sizes), by BPF_MAP_UPDATE_BATCH,
        BATCH entries a call. False when the map type does not batch and nothing was put in."""
        ksize, vsize = len(keys) // n, len(values) // n
        kview, vview = memoryview(keys), memoryview(values)
        for start in range(0, n, self.BATCH):
            end = min(n, start + self.BATCH)
            kbuf = B.ffi.from_buffer(kview[start * ksize:end * ksize])
            vbuf = B.ffi.from_buffer(vview[start * vsize:end * vsize])
            count = B.ffi.new("__u32 *", end - start)
            rc = self.lib.bpf_map_update_batch(fd, kbuf, vbuf, count, B.ffi.NULL)
            if rc < 0:
                if start == 0 and -rc in (errno.EINVAL, errno.ENOTSUPP if hasattr(errno, "ENOTSUPP") else 524,
                                          errno.EOPNOTSUPP, 524):
                    return False
                raise BpfError(f"map `{mname}`: batch update of entries {start}..{end - 1} "
                               f"failed after {count[0]}: {B.describe(rc)}")
        return True

    def pinnable_maps(self) -> dict[str, object]:
        return {n: m for n, m in self.maps.items() if not self.lib.bpf_map__is_internal(m)}

    def prog_fd(self, pname: str) -> int:
        return self.lib.bpf_program__fd(self.programs[pname])

    def attach(self, pname: str, undo: _Undo, log: list[str]):
        lib = self.lib
        with B.LogCapture() as cap:
            link = lib.bpf_program__attach(self.programs[pname])
            err = B.ffi.errno
        log.append(cap.text)
        if link == B.ffi.NULL:
            sec = B.ffi.string(lib.bpf_program__section_name(self.programs[pname])).decode()
            raise BpfError(f"attaching program `{pname}` (section `{sec}`) failed: "
                           f"{B.describe(err or errno.EINVAL)}", "".join(log))
        undo.push(f"detach `{pname}`", lambda: lib.bpf_link__destroy(link))
        undo.links.append(_link_ids(lib.bpf_link__fd(link)))
        return link

    def close(self) -> None:
        if self.obj is not None:
            self.lib.bpf_object__close(self.obj)
            self.obj = None


def _pin_link(link, path: str, undo: _Undo) -> None:
    rc = B.lib().bpf_link__pin(link, path.encode())
    if rc < 0:
        raise BpfError(f"pinning link at `{path}` failed: {B.describe(rc)}")
    undo.push(f"unpin `{path}`", lambda: _unlink(path))


def _pin_map(m, path: str, undo: _Undo) -> None:
    rc = B.lib().bpf_map__pin(m, path.encode())
    if rc < 0:
        raise BpfError(f"pinning map at `{path}` failed: {B.describe(rc)}")
    undo.push(f"unpin `{path}`", lambda: _unlink(path))


def _mkdir(path: str, undo: _Undo) -> None:
    try:
        os.mkdir(path)
    except OSError as e:
        raise BpfError(f"creating `{path}` failed: {B.describe(e.errno)}") from None
    undo.push(f"remove `{path}`", lambda: _rmdir(path))


def _rmdir(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(path)


def _move_in(staged: str, final: str, old_fd: int | None, undo: _Undo) -> None:
    """Rename the pin STAGED over FINAL (atomic on bpffs). Undo puts the old object, held by
    OLD_FD, back the same way, or removes FINAL when there was none."""
    os.rename(staged, final)
    if old_fd is None:
        undo.push(f"unpin `{final}`", lambda: _unlink(final))
    else:
        def back() -> None:
            _obj_pin(old_fd, staged)
            os.rename(staged, final)
        undo.push(f"restore the old pin `{final}`", back)


def _unpin_old(path: str, fd: int, undo: _Undo) -> None:
    """Unpin an old object we hold by FD (so it lives on until we close FD)."""
    os.unlink(path)
    undo.push(f"re-pin `{path}`", lambda: _obj_pin(fd, path))


# ---- public API -------------------------------------------------------------------------------


def load(obj_path: str, name: str, maps: dict[str, MapFill] | None = None,
         pin_root: str = DEFAULT_PIN_ROOT, replace: bool = False, shared: tuple[str, ...] = ()) -> LoadedPolicy:
    """Load OBJ_PATH as policy NAME: fill its maps, attach every program, pin links and maps.

    With replace=True and NAME loaded, the new version is loaded and attached before the old
    one lets go (see `_replace`). Raises BpfError; on error nothing of the new version remains.

    SHARED: maps every object loaded under PIN_ROOT uses as one (PIN_ROOT-shared/MAP): the
    first load's map is pinned there, and every later load reuses it. Decided under the pin
    root's lock, so two loads never make two.
    """
    _check_name("policy", name)
    maps = dict(maps or {})
    _prepare_root(pin_root)
    pin_dir = os.path.join(pin_root, name)
    shared_at = shared_dir(pin_root)
    with _locked(pin_root):
        for mname in shared:
            pin = os.path.join(shared_at, mname)
            if os.path.exists(pin):
                maps[mname] = MapFill(reuse_pin=pin)
        if os.path.lexists(pin_dir):
            if not replace:
                raise BpfError(f"policy `{name}` is already loaded (pins in `{pin_dir}`); "
                               "unload it or load with replace")
            loaded = _replace(obj_path, name, maps, pin_dir)
        else:
            loaded = _load_fresh(obj_path, name, maps, pin_dir)
        for mname in shared:
            pin = os.path.join(shared_at, mname)
            own = loaded.maps.get(mname)
            if own is None or os.path.exists(pin):
                continue
            try:
                os.makedirs(shared_at, exist_ok=True)
                fd = _obj_get(own)
                try:
                    _obj_pin(fd, pin)
                finally:
                    os.close(fd)
            except (OSError, BpfError) as e:
                # loaded and enforcing; what fails is only handing tasks between policies
                # (an `as policy` exec into this one fails closed): said, not undone
                loaded = dataclasses.replace(loaded, log=loaded.log + f"runtime: pinning the shared map "
                                             f"`{mname}` at `{pin}` failed: {e}\n")
        return loaded


def _load_fresh(obj_path: str, name: str, maps: dict[str, MapFill], pin_dir: str) -> LoadedPolicy:
    undo = _Undo()
    log: list[str] = []
    try:
        obj = _Object(obj_path, maps, undo, log)
        links = {p: obj.attach(p, undo, log) for p in obj.programs}
        _mkdir(pin_dir, undo)
        _mkdir(os.path.join(pin_dir, "links"), undo)
        _mkdir(os.path.join(pin_dir, "maps"), undo)
        link_pins = {p: os.path.join(pin_dir, "links", p) for p in links}
        for p, link in links.items():
            _pin_link(link, link_pins[p], undo)
        map_pins = {}
        for mname, m in obj.pinnable_maps().items():
            map_pins[mname] = os.path.join(pin_dir, "maps", mname)
            _pin_map(m, map_pins[mname], undo)
    except BpfError as e:
        raise _fail(e.message, e.log or "".join(log), undo) from None
    except BaseException:
        _fail("interrupted", "", undo)
        raise
    # Success: drop our references; the pins keep links (and through them programs) and maps.
    undo.forget()
    for link in links.values():
        B.lib().bpf_link__destroy(link)
    obj.close()
    return LoadedPolicy(name, pin_dir, link_pins, map_pins, "".join(log))


@dataclass(frozen=True)
class ProgramVerdict:
    """What the running kernel's verifier said of one program, loaded alone."""
    program: str
    hook: str          # the LSM hook (the section name after `lsm/`)
    ok: bool
    reason: str        # empty when ok: libbpf's error and the verifier's last lines


def load_test(obj_path: str, maps: dict[str, MapFill] | None = None) -> list[ProgramVerdict]:
    """Load each program of OBJ_PATH on its own, attaching and pinning nothing, and report
    which ones this kernel's verifier refuses. (libbpf fails a whole object on one refused
    program: loading them one by one names every refusal, not just the first.) Only map
    sizes are taken from MAPS; nothing is filled."""
    lib = B.lib()
    sizes = {m: f for m, f in (maps or {}).items() if f.max_entries is not None}
    names: list[tuple[str, str]] = []
    probe = _Object.open_only(obj_path)
    try:
        p = lib.bpf_object__next_program(probe, B.ffi.NULL)
        while p != B.ffi.NULL:
            if lib.bpf_program__autoload(p):
                section = B.ffi.string(lib.bpf_program__section_name(p)).decode()
                names.append((B.ffi.string(lib.bpf_program__name(p)).decode(), section))
            p = lib.bpf_object__next_program(probe, p)
    finally:
        lib.bpf_object__close(probe)
    out = []
    for pname, section in names:
        obj = _Object.open_only(obj_path)
        try:
            p = lib.bpf_object__next_program(obj, B.ffi.NULL)
            while p != B.ffi.NULL:
                lib.bpf_program__set_autoload(p, B.ffi.string(lib.bpf_program__name(p)).decode() == pname)
                p = lib.bpf_object__next_program(obj, p)
            m = lib.bpf_object__next_map(obj, B.ffi.NULL)
            while m != B.ffi.NULL:
                lib.bpf_map__set_pin_path(m, B.ffi.NULL)
                fill = sizes.get(B.ffi.string(lib.bpf_map__name(m)).decode())
                if fill is not None:
                    lib.bpf_map__set_max_entries(m, fill.max_entries)
                m = lib.bpf_object__next_map(obj, m)
            with B.LogCapture() as cap:
                rc = lib.bpf_object__load(obj)
            reason = ""
            if rc < 0:
                lines = [ln for ln in cap.text.splitlines() if ln.strip() and not ln.startswith("libbpf: prog")]
                verifier = [ln for ln in cap.text.splitlines() if ln and not ln.startswith("libbpf:")
                            and not ln[:1].isdigit() and not ln.startswith(";")]
                reason = f"{B.describe(rc)}: " + " / ".join((verifier or lines)[-3:])
            out.append(ProgramVerdict(pname, section.split("/", 1)[-1], rc >= 0, reason))
        finally:
            lib.bpf_object__close(obj)
    return out


def _link_ids(link_fd: int) -> tuple[int, int]:
    """(link id, program id) of a link fd."""
    info = B.ffi.new("struct bpf_link_info *")
    size = B.ffi.new("__u32 *", B.ffi.sizeof("struct bpf_link_info"))
    rc = B.lib().bpf_obj_get_info_by_fd(link_fd, info, size)
    if rc < 0:
        raise BpfError(f"BPF_OBJ_GET_INFO_BY_FD on a link failed: {B.describe(rc)}")
    return info.id, info.prog_id


def _link_prog_id(link_fd: int) -> int:
    return _link_ids(link_fd)[1]


def _alive(get_fd_by_id, obj_id: int) -> bool:
    fd = get_fd_by_id(obj_id)
    if fd >= 0:
        os.close(fd)
        return True
    return fd != -errno.ENOENT


def wait_links_gone(link_ids: list[int], prog_ids: list[int] = (),
                    timeout: float = WAIT_TIMEOUT) -> list[int]:
    """Wait until the kernel has freed LINK_IDS (their programs are then detached), then,
    within the same deadline, until PROG_IDS are freed too. The link ids still alive.

    Why wait: a link whose last reference was a bpffs pin is released only after an RCU grace
    period (bpffs frees inodes through call_rcu), and newer kernels free the program later
    still; measured 0.2-0.3 s on 6.18. Without the wait, `unload` would return while the
    programs still run. A link that outlives the deadline is held by someone else (an fd or
    another pin) and stays attached: the caller reports it. A program that outlives it is only
    held (e.g. by bpftool), not attached: ignored.
    """
    lib = B.lib()
    deadline = time.monotonic() + timeout
    pending = [i for i in link_ids if i]
    delay = 0.001
    while pending:
        pending = [i for i in pending if _alive(lib.bpf_link_get_fd_by_id, i)]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    progs = [i for i in prog_ids if i]
    while progs and time.monotonic() < deadline:
        progs = [i for i in progs if _alive(lib.bpf_prog_get_fd_by_id, i)]
        if progs:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    return pending


def _prog_fd_by_id(prog_id: int) -> int:
    fd = B.lib().bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        raise BpfError(f"BPF_PROG_GET_FD_BY_ID {prog_id} failed: {B.describe(fd)}")
    return fd


def _link_update(link_fd: int, new_prog_fd: int, old_prog_fd: int) -> int:
    opts = B.ffi.new("struct bpf_link_update_opts *")
    opts.sz = B.ffi.sizeof("struct bpf_link_update_opts")
    opts.flags = B.BPF_F_REPLACE
    opts.old_prog_fd = old_prog_fd
    return B.lib().bpf_link_update(link_fd, new_prog_fd, opts)


# BPF_LINK_UPDATE answers for link types without update_prog (tracing links: fentry, LSM; perf
# links: tracepoints, kprobes): EINVAL in link_update(); ENOTSUPP (524, kernel-internal) or
# EOPNOTSUPP elsewhere.
_NO_LINK_UPDATE = frozenset({errno.EINVAL, errno.EOPNOTSUPP, 524})


def _swap_back(link_fd: int, old_prog_fd: int, new_prog_fd: int) -> None:
    rc = _link_update(link_fd, old_prog_fd, new_prog_fd)
    if rc < 0:
        raise BpfError(f"BPF_LINK_UPDATE back to the old program failed: {B.describe(rc)}")


def _replace(obj_path: str, name: str, maps: dict[str, MapFill], pin_dir: str) -> LoadedPolicy:
    """Zero-gap replacement of a loaded policy.

    1. Load and fill the new object (the old version is untouched).
    2. For each new program whose name has an old pinned link: BPF_LINK_UPDATE the old link to
       the new program (atomic, where the kernel supports it for that link type). Where it
       does not (EINVAL/EOPNOTSUPP: tracing links, hence every LSM link on 6.1..6.12), attach
       the new program beside the old one: for a moment both run, and an LSM hook denies if
       either denies, so there is never a moment with neither. New programs attach too.
    3. Move the pins: the new links and maps are pinned under PIN_DIR/staging/ and renamed
       over their final paths, one by one (rename is atomic: a final path always names an
       attached link, old or new, even if this process is killed). Old pins with no new
       counterpart are unpinned. We still hold every old link and map by fd.
    4. Only then close the old fds: the old links detach (waited for, as in `unload`).
    A failure in 1-3 undoes everything in reverse: pins restored from the held fds, in-place
    swaps switched back, new links destroyed. The old version keeps enforcing throughout.
    """
    lib = B.lib()
    links_dir = os.path.join(pin_dir, "links")
    maps_dir = os.path.join(pin_dir, "maps")
    undo = _Undo()
    log: list[str] = []
    held: list[int] = []  # fds closed at the very end, success or failure

    def hold(fd: int) -> int:
        held.append(fd)
        return fd

    try:
        try:
            old_links = {p: hold(_obj_get(os.path.join(links_dir, p)))
                         for p in sorted(os.listdir(links_dir))}
            old_maps = {m: hold(_obj_get(os.path.join(maps_dir, m)))
                        for m in sorted(os.listdir(maps_dir))}
        except OSError as e:
            raise BpfError(f"reading the pins of `{name}` in `{pin_dir}` failed: "
                           f"{B.describe(e.errno)}") from None
        old_ids = {p: _link_ids(fd) for p, fd in old_links.items()}
        obj = _Object(obj_path, maps, undo, log)

        new_links = {}
        swapped: list[str] = []
        for p in obj.programs:
            new_fd = obj.prog_fd(p)
            if p in old_links:
                old_prog_fd = hold(_prog_fd_by_id(old_ids[p][1]))
                rc = _link_update(old_links[p], new_fd, old_prog_fd)
                if rc == 0:
                    swapped.append(p)
                    undo.push(f"swap `{p}` back",
                              lambda lf=old_links[p], of=old_prog_fd, nf=new_fd:
                              _swap_back(lf, of, nf))
                    continue
                if -rc not in _NO_LINK_UPDATE:
                    raise BpfError(f"BPF_LINK_UPDATE of `{p}` failed: {B.describe(rc)}")
            new_links[p] = obj.attach(p, undo, log)

        # Pin the new links and maps in a staging directory, then rename each over its final
        # path: the path always names an attached link (old or new), even if we die midway.
        staging = os.path.join(pin_dir, STAGING)
        if os.path.lexists(staging):  # left by a replace that was killed: drop it
            _remove_tree(staging)
        for d in (staging, os.path.join(staging, "links"), os.path.join(staging, "maps")):
            _mkdir(d, undo)
        link_pins = {p: os.path.join(links_dir, p) for p in obj.programs}
        for p, link in new_links.items():
            staged = os.path.join(staging, "links", p)
            _pin_link(link, staged, undo)
            _move_in(staged, link_pins[p], old_links.get(p), undo)
        for p, fd in old_links.items():
            if p not in obj.programs:  # a program the new version no longer has
                _unpin_old(os.path.join(links_dir, p), fd, undo)
        map_pins = {}
        for m, mp in obj.pinnable_maps().items():
            map_pins[m] = os.path.join(maps_dir, m)
            staged = os.path.join(staging, "maps", m)
            _pin_map(mp, staged, undo)
            _move_in(staged, map_pins[m], old_maps.get(m), undo)
        for m, fd in old_maps.items():
            if m not in map_pins:
                _unpin_old(os.path.join(maps_dir, m), fd, undo)
        for d in (os.path.join(staging, "links"), os.path.join(staging, "maps"), staging):
            os.rmdir(d)
        undo.forget()
    except BpfError as e:
        raise _fail(f"replacing `{name}` failed, the loaded version is unchanged: {e.message}",
                    e.log or "".join(log), undo) from None
    except OSError as e:
        raise _fail(f"replacing `{name}` failed, the loaded version is unchanged: "
                    f"{e.filename}: {B.describe(e.errno)}", "".join(log), undo) from None
    except BaseException:
        _fail("interrupted", "", undo)
        raise
    finally:
        for fd in held:  # on success this detaches the old links that were not updated
            os.close(fd)
    for link in new_links.values():
        lib.bpf_link__destroy(link)
    obj.close()
    alive = wait_links_gone([li for p, (li, _) in old_ids.items() if p not in swapped],
                            [pi for _, pi in old_ids.values()])
    if alive:
        log.append(f"runtime: old links {alive} of `{name}` are still alive after "
                   f"{WAIT_TIMEOUT:g} s: another pin or open fd holds them\n")
    return LoadedPolicy(name, pin_dir, link_pins, map_pins, "".join(log), replaced=True,
                        swapped_in_place=tuple(swapped))


def list_loaded(pin_root: str = DEFAULT_PIN_ROOT) -> list[str]:
    """Names of the policies pinned under PIN_ROOT (every directory there), sorted."""
    try:
        names = os.listdir(pin_root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.isdir(os.path.join(pin_root, n)))


def unload(name: str, pin_root: str = DEFAULT_PIN_ROOT, timeout: float = WAIT_TIMEOUT) -> None:
    """Unpin the links, then the maps, and remove PIN_ROOT/NAME.

    A link detaches when its last reference goes; for a pin that happens an RCU grace period
    after the unlink, so this waits (up to TIMEOUT seconds) until the kernel has freed the
    links. Raises BpfError if NAME is not loaded, a pin cannot be removed, or a link is still
    alive at the deadline (someone else holds it: it stays attached).
    """
    _check_name("policy", name)
    pin_dir = os.path.join(pin_root, name)
    if not os.path.isdir(pin_dir):
        raise BpfError(f"policy `{name}` is not loaded (no `{pin_dir}`)")
    with _locked(pin_root):
        failed: list[str] = []
        ids: list[tuple[int, int]] = []
        # links first (enforcement stops), then maps; staging/ exists only if a replace died
        for sub in ("links", f"{STAGING}/links", "maps", f"{STAGING}/maps", STAGING):
            d = os.path.join(pin_dir, sub)
            if not os.path.isdir(d):
                continue
            for e in sorted(os.listdir(d)):
                path = os.path.join(d, e)
                if os.path.isdir(path):
                    continue  # staging/links, staging/maps: handled on their own
                if sub.endswith("links"):
                    with contextlib.suppress(BpfError):  # not a link: removed all the same
                        fd = _obj_get(path)
                        try:
                            ids.append(_link_ids(fd))
                        finally:
                            os.close(fd)
                try:
                    os.unlink(path)
                except OSError as err:
                    failed.append(f"`{path}`: {B.describe(err.errno)}")
        for sub in ("links", "maps", f"{STAGING}/links", f"{STAGING}/maps", STAGING):
            d = os.path.join(pin_dir, sub)
            if os.path.isdir(d):
                try:
                    os.rmdir(d)
                except OSError as err:
                    failed.append(f"`{d}`: {B.describe(err.errno)}")
        try:
            os.rmdir(pin_dir)
        except OSError as err:
            failed.append(f"`{pin_dir}`: {B.describe(err.errno)}")
        alive = wait_links_gone([li for li, _ in ids], [pi for _, pi in ids], timeout)
        if alive:
            failed.append(f"links {alive} are still alive after {timeout:g} s (another pin or "
                          "an open fd holds them: their programs stay attached)")
        if failed:
            raise BpfError(f"unloading `{name}` was incomplete: " + "; ".join(failed))
