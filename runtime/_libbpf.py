"""cffi ABI-mode binding of the system libbpf (1.1 and newer) and the few libc calls we need.

Nothing is compiled: the declarations below are the subset of <bpf/libbpf.h>, <bpf/bpf.h> and
<linux/bpf.h> that the runtime uses, written so that they hold for libbpf 1.1 and later:

- Option structs (`bpf_prog_load_opts`, `bpf_link_update_opts`) are declared with their libbpf
  1.1 layout and passed with `sz = sizeof(1.1 layout)`; newer libbpf accepts a smaller `sz` and
  treats the missing tail as zero.
- Kernel info structs (`bpf_prog_info`, `bpf_map_info`, `bpf_link_info`) are UAPI: the kernel
  copies `min(info_len, its size)` bytes, so a prefix of the real struct is fine.
  tests/unit/test_runtime_abi.py checks every size and offset against the C headers.
- `bpf_obj_get_info_by_fd` is used rather than the `bpf_{prog,map,link}_get_info_by_fd` of
  libbpf >= 1.2, which 1.1 does not export.
- `va_list` (the third argument of a libbpf print callback) is declared `void *`: on x86-64 a
  `va_list` parameter is a pointer to `struct __va_list_tag`, on arm64 the 32-byte struct is
  passed by reference. It is only handed on, untouched, to libc's vasprintf.
"""

from __future__ import annotations

import errno as _errno
import os
import threading

from cffi import FFI

CDEF = """
typedef uint8_t  __u8;
typedef int16_t  __s16;
typedef uint16_t __u16;
typedef int32_t  __s32;
typedef uint32_t __u32;
typedef uint64_t __u64;

struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
struct btf;
struct ring_buffer;
struct bpf_object_open_opts;
struct ring_buffer_opts;

/* ---- libbpf.h ---- */
enum libbpf_print_level { LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG };
typedef int (*libbpf_print_fn_t)(enum libbpf_print_level level, const char *fmt, void *ap);
libbpf_print_fn_t libbpf_set_print(libbpf_print_fn_t fn);

struct bpf_object *bpf_object__open_file(const char *path, const struct bpf_object_open_opts *opts);
int bpf_object__load(struct bpf_object *obj);
void bpf_object__close(struct bpf_object *obj);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj,
                                             struct bpf_program *prog);
struct bpf_map *bpf_object__next_map(const struct bpf_object *obj, const struct bpf_map *map);
struct bpf_map *bpf_object__find_map_by_name(const struct bpf_object *obj, const char *name);

const char *bpf_program__name(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
bool bpf_program__autoload(const struct bpf_program *prog);
int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
int bpf_program__fd(const struct bpf_program *prog);
struct bpf_link *bpf_program__attach(const struct bpf_program *prog);

int bpf_link__fd(const struct bpf_link *link);
int bpf_link__pin(struct bpf_link *link, const char *path);
int bpf_link__unpin(struct bpf_link *link);
int bpf_link__destroy(struct bpf_link *link);

const char *bpf_map__name(const struct bpf_map *map);
int bpf_map__fd(const struct bpf_map *map);
int bpf_map__type(const struct bpf_map *map);
bool bpf_map__is_internal(const struct bpf_map *map);
__u32 bpf_map__max_entries(const struct bpf_map *map);
int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries);
int bpf_map__reuse_fd(struct bpf_map *map, int fd);
__u32 bpf_map__key_size(const struct bpf_map *map);
__u32 bpf_map__value_size(const struct bpf_map *map);
int bpf_map__set_pin_path(struct bpf_map *map, const char *path);
int bpf_map__pin(struct bpf_map *map, const char *path);

int libbpf_num_possible_cpus(void);

struct btf *btf__load_vmlinux_btf(void);
__s32 btf__find_by_name_kind(const struct btf *btf, const char *type_name, __u32 kind);
void btf__free(struct btf *btf);

typedef int (*ring_buffer_sample_fn)(void *ctx, void *data, size_t size);
struct ring_buffer *ring_buffer__new(int map_fd, ring_buffer_sample_fn sample_cb, void *ctx,
                                     const struct ring_buffer_opts *opts);
int ring_buffer__add(struct ring_buffer *rb, int map_fd, ring_buffer_sample_fn sample_cb,
                     void *ctx);
int ring_buffer__poll(struct ring_buffer *rb, int timeout_ms);
int ring_buffer__consume(struct ring_buffer *rb);
int ring_buffer__epoll_fd(const struct ring_buffer *rb);
void ring_buffer__free(struct ring_buffer *rb);

/* ---- bpf.h (low level, fd based) ---- */
struct bpf_insn {
    __u8  code;
    __u8  regs;   /* dst_reg:4 (low nibble), src_reg:4 */
    __s16 off;
    __s32 imm;
};

struct bpf_prog_load_opts {           /* libbpf 1.1 layout */
    size_t sz;
    int attempts;
    int expected_attach_type;
    __u32 prog_btf_fd;
    __u32 prog_flags;
    __u32 prog_ifindex;
    __u32 kern_version;
    __u32 attach_btf_id;
    __u32 attach_prog_fd;
    __u32 attach_btf_obj_fd;
    const int *fd_array;
    const void *func_info;
    __u32 func_info_cnt;
    __u32 func_info_rec_size;
    const void *line_info;
    __u32 line_info_cnt;
    __u32 line_info_rec_size;
    __u32 log_level;
    __u32 log_size;
    char *log_buf;
};
int bpf_prog_load(int prog_type, const char *prog_name, const char *license,
                  const struct bpf_insn *insns, size_t insn_cnt,
                  const struct bpf_prog_load_opts *opts);

struct bpf_link_update_opts {         /* libbpf 1.1 layout */
    size_t sz;
    __u32 flags;
    __u32 old_prog_fd;
};
int bpf_link_update(int link_fd, int new_prog_fd, const struct bpf_link_update_opts *opts);

int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
int bpf_map_delete_elem(int fd, const void *key);
int bpf_map_update_batch(int fd, const void *keys, const void *values, __u32 *count,
                         const void *opts);
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int bpf_obj_pin(int fd, const char *pathname);
int bpf_obj_get(const char *pathname);
int bpf_prog_get_fd_by_id(__u32 id);
int bpf_link_get_fd_by_id(__u32 id);
int bpf_prog_get_next_id(__u32 start_id, __u32 *next_id);
int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);
int bpf_enable_stats(int type);

/* ---- linux/bpf.h info structs (UAPI; see the module docstring) ---- */
struct bpf_prog_info {
    __u32 type;
    __u32 id;
    __u8  tag[8];
    __u32 jited_prog_len;
    __u32 xlated_prog_len;
    __u64 jited_prog_insns;
    __u64 xlated_prog_insns;
    __u64 load_time;
    __u32 created_by_uid;
    __u32 nr_map_ids;
    __u64 map_ids;
    char  name[16];
    __u32 ifindex;
    __u32 gpl_compatible_bits;        /* gpl_compatible:1 + pad */
    __u64 netns_dev;
    __u64 netns_ino;
    __u32 nr_jited_ksyms;
    __u32 nr_jited_func_lens;
    __u64 jited_ksyms;
    __u64 jited_func_lens;
    __u32 btf_id;
    __u32 func_info_rec_size;
    __u64 func_info;
    __u32 nr_func_info;
    __u32 nr_line_info;
    __u64 line_info;
    __u64 jited_line_info;
    __u32 nr_jited_line_info;
    __u32 line_info_rec_size;
    __u32 jited_line_info_rec_size;
    __u32 nr_prog_tags;
    __u64 prog_tags;
    __u64 run_time_ns;
    __u64 run_cnt;
    __u64 recursion_misses;
    __u32 verified_insns;
    __u32 attach_btf_obj_id;
    __u32 attach_btf_id;
    __u32 _pad;
};

struct bpf_map_info {
    __u32 type;
    __u32 id;
    __u32 key_size;
    __u32 value_size;
    __u32 max_entries;
    __u32 map_flags;
    char  name[16];
    __u32 ifindex;
    __u32 btf_vmlinux_value_type_id;
    __u64 netns_dev;
    __u64 netns_ino;
    __u32 btf_id;
    __u32 btf_key_type_id;
    __u32 btf_value_type_id;
    __u32 _pad;
    __u64 map_extra;
};

struct bpf_link_info {                /* prefix: the union after prog_id is left zero */
    __u32 type;
    __u32 id;
    __u32 prog_id;
    __u32 _union[9];
};

/* ---- libc (LIBC_FUNCTIONS) ---- */
int vasprintf(char **strp, const char *fmt, void *ap);
void free(void *ptr);
int mount(const char *source, const char *target, const char *fstype,
          unsigned long flags, const void *data);
"""
ffi = FFI()
ffi.cdef(CDEF)

LIBC_FUNCTIONS = frozenset({"vasprintf", "free", "mount"})

# linux/bpf.h constants (checked against the headers in tests/unit/test_runtime_abi.py)
BPF_ANY = 0
BPF_F_REPLACE = 1 << 2
BPF_PROG_TYPE_LSM = 29
BPF_LSM_MAC = 27
BTF_KIND_FUNC = 12
BPF_STATS_RUN_TIME = 0
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE = 21
BPF_MAP_TYPE_RINGBUF = 27
BPF_MAP_TYPE_TASK_STORAGE = 29
PERCPU_MAP_TYPES = frozenset(
    {
        BPF_MAP_TYPE_PERCPU_HASH,
        BPF_MAP_TYPE_PERCPU_ARRAY,
        BPF_MAP_TYPE_LRU_PERCPU_HASH,
        BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
    }
)

_lib = None
_libc = None
_load_lock = threading.Lock()


def lib():
    """The libbpf library, opened on first use (importing `runtime` needs no libbpf)."""
    global _lib
    if _lib is None:
        with _load_lock:
            if _lib is None:
                _lib = ffi.dlopen("libbpf.so.1")
    return _lib


def libc():
    global _libc
    if _libc is None:
        with _load_lock:
            if _libc is None:
                _libc = ffi.dlopen(None)
    return _libc


# Names the kernel's documentation uses where Python's errno table picks an alias (95 is
# ENOTSUP there), plus the kernel-internal ENOTSUPP that BPF commands can leak to user space.
_ERRNAMES = {_errno.EOPNOTSUPP: "EOPNOTSUPP", 524: "ENOTSUPP"}


def errname(err: int) -> str:
    """`EPERM` for 1 or -1; `errno 4242` for an unknown number."""
    err = abs(err)
    return _ERRNAMES.get(err) or _errno.errorcode.get(err, f"errno {err}")


def describe(err: int) -> str:
    """`EPERM (Operation not permitted)`."""
    err = abs(err)
    text = "Operation not supported" if err == 524 else os.strerror(err)
    return f"{errname(err)} ({text})"


def possible_cpus() -> int:
    n = lib().libbpf_num_possible_cpus()
    if n <= 0:
        raise OSError(-n, "libbpf_num_possible_cpus failed")
    return n


# ---- capturing libbpf's log -------------------------------------------------------------------
#
# libbpf has one global print callback. While a capture is active every message, at every level
# (the verifier log arrives as one WARN message), is formatted with vasprintf and appended to the
# capture's list. The cffi callback object is created once and kept in a module global for the
# life of the process: libbpf keeps the raw function pointer, and a collected ffi.callback would
# leave it pointing at freed memory.

_print_lock = threading.RLock()
_capture_stack: list[list[str]] = []


def _on_print(level, fmt, ap):
    strp = ffi.new("char **")
    n = libc().vasprintf(strp, fmt, ap)
    if n < 0 or strp[0] == ffi.NULL:
        return 0
    try:
        text = ffi.string(strp[0], n).decode("utf-8", "replace")
    finally:
        libc().free(strp[0])
    if _capture_stack:
        _capture_stack[-1].append(text)
    return 0


_print_cb = ffi.callback("libbpf_print_fn_t", _on_print, error=0)


class LogCapture:
    """Context manager: route all libbpf output into `.text` while active."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self._old = None

    def __enter__(self) -> "LogCapture":
        _print_lock.acquire()
        _capture_stack.append(self.chunks)
        self._old = lib().libbpf_set_print(_print_cb)
        return self

    def __exit__(self, *exc) -> None:
        try:
            lib().libbpf_set_print(self._old)
            _capture_stack.pop()
        finally:
            _print_lock.release()

    @property
    def text(self) -> str:
        return "".join(self.chunks)
