"""A process that performs file, exec, network and other operations on request and reports the
errno of each: the kernel suite's hands inside a governed process.

Protocol: one JSON request per line on stdin, one JSON answer per line on stdout:
    {"op": "read", "path": "/x"} -> {"ok": false, "errno": "EPERM"}
It imports everything it needs before it answers its first request ("ready"), so that once
governed it opens no file but the ones asked for (under `default deny` nothing else works).
"""

import ctypes
import errno
import fcntl
import json
import mmap
import os
import socket
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
OPEN_TREE_CLONE = 1
AT_RECURSIVE = 0x8000
O_CLOEXEC = 0o2000000
SYS_OPEN_TREE = 428

preopened = {}


def _errno(e: OSError) -> str:
    return errno.errorcode.get(e.errno, str(e.errno))


def _net_call(fn, *args) -> dict:
    """A socket call: a denial (EPERM, EACCES) raises; any other failure is the network's,
    not the policy's, and is answered as `net_errno`."""
    try:
        fn(*args)
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EACCES):
            raise
        return {"net_errno": _errno(e)}
    return {}


def do(req: dict):
    op = req["op"]
    p = req.get("path")
    if op == "read":
        os.close(os.open(p, os.O_RDONLY))
    elif op == "write":
        os.close(os.open(p, os.O_WRONLY))
    elif op == "append":
        os.close(os.open(p, os.O_WRONLY | os.O_APPEND))
    elif op == "trunc-rdonly":
        os.close(os.open(p, os.O_RDONLY | os.O_TRUNC))
    elif op == "create":
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    elif op == "mkdir":
        os.mkdir(p)
    elif op == "symlink":
        os.symlink(req["target"], p)
    elif op == "delete":
        os.unlink(p)
    elif op == "rmdir":
        os.rmdir(p)
    elif op == "rename":
        os.rename(p, req["dest"])
    elif op == "link":
        os.link(p, req["dest"])
    elif op == "chmod":
        os.chmod(p, os.stat(p).st_mode & 0o7777)  # a real chmod that changes nothing
    elif op == "chown":
        os.chown(p, 0, 0)
    elif op == "truncate":
        os.truncate(p, 0)
    elif op == "preopen":
        preopened[p] = os.open(p, os.O_RDONLY)
    elif op == "exec-map":
        fd = preopened.get(p)
        if fd is None:
            fd = os.open(p, os.O_RDONLY)
        m = mmap.mmap(fd, 1, prot=mmap.PROT_READ | mmap.PROT_EXEC)
        m.close()
    elif op == "exec":
        pid = os.fork()
        if pid == 0:
            try:
                os.execv(p, [p])
            except OSError as e:
                os._exit(100 + e.errno)
            os._exit(99)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code in (100 + errno.EPERM, 100 + errno.EACCES):
            raise PermissionError(code - 100, "exec")
        return {"exit": code}
    elif op in ("connect", "sendto", "bind"):
        fam = socket.AF_INET6 if ":" in req["addr"] else socket.AF_INET
        kind = socket.SOCK_STREAM if req.get("proto", "tcp") == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(fam, kind)
        addr = (req["addr"], req["port"])
        try:
            s.settimeout(0.5)
            if op == "connect":
                return _net_call(s.connect, addr)
            if op == "sendto":
                return _net_call(s.sendto, b"x", addr)
            return _net_call(s.bind, addr)
        finally:
            s.close()
    elif op == "unix-connect":
        # AF_UNIX: a connect is a `file write` of the socket's path (`@NAME`: abstract)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(0.5)
            name = req["path"]
            return _net_call(s.connect, "\0" + name[1:] if name.startswith("@") else name)
        finally:
            s.close()
    elif op == "reopen-proc-fd":
        fd = os.open(p, os.O_PATH)
        try:
            os.close(os.open(f"/proc/self/fd/{fd}", os.O_RDONLY))
        finally:
            os.close(fd)
    elif op == "openat":
        dfd = os.open(req["dir"], os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.close(os.open(req["name"], os.O_RDONLY, dir_fd=dfd))
        finally:
            os.close(dfd)
    elif op == "chdir-read":
        old = os.getcwd()
        os.chdir(req["dir"])
        try:
            os.close(os.open(req["name"], os.O_RDONLY))
        finally:
            os.chdir(old)
    elif op == "open-tree-read":
        # a detached copy of a directory's mount (open_tree(OPEN_TREE_CLONE)) runs no mount
        # hook; read a file through it
        fd = libc.syscall(SYS_OPEN_TREE, -100, req["dir"].encode(), OPEN_TREE_CLONE | O_CLOEXEC | AT_RECURSIVE)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        try:
            os.close(os.open(req["name"], os.O_RDONLY, dir_fd=fd))
        finally:
            os.close(fd)
    elif op == "deep-read":
        # walk down `depth` directories named `name` relative to each other, then open
        # `leaf`: a path longer than PATH_MAX, reachable only through dirfds
        fd = os.open(req["dir"], os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(req["depth"]):
                nfd = os.open(req["name"], os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = nfd
            os.close(os.open(req["leaf"], os.O_RDONLY, dir_fd=fd))
        finally:
            os.close(fd)
    elif op == "pid":
        return {"pid": os.getpid()}
    elif op == "signal":
        os.kill(req["pid"], req["sig"])
    elif op == "ptrace":
        if libc.ptrace(16, req["pid"], 0, 0) != 0:  # PTRACE_ATTACH
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        os.waitpid(req["pid"], 0)
        libc.ptrace(17, req["pid"], 0, 0)  # PTRACE_DETACH
    elif op == "sigio":
        # the kernel signals a file's owner when I/O is possible (send_sigio), not kill(2)
        r, w = os.pipe()
        try:
            fcntl.fcntl(r, fcntl.F_SETOWN, req["pid"])
            fcntl.fcntl(r, 10, req["sig"])  # F_SETSIG
            fcntl.fcntl(r, fcntl.F_SETFL, os.O_ASYNC)
            os.write(w, b"x")
        finally:
            os.close(r)
            os.close(w)
    elif op == "perf":
        # a software counter on another process: decided as ptrace of it
        attr = ctypes.create_string_buffer(struct.pack("<IIQ", 1, 128, 0) + bytes(112))
        fd = libc.syscall(298, attr, req["pid"], -1, -1, 0)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        os.close(fd)
    elif op == "listen":
        # listen(2) on a socket never bound: the kernel binds it (autobind)
        s = socket.socket(socket.AF_INET6 if req.get("family") == 6 else socket.AF_INET)
        try:
            s.listen(1)
        finally:
            s.close()
    elif op == "setflags":
        # FS_IOC_SETFLAGS through a read-only fd: decided as a write of the file
        # (an fd opened before the worker was governed, when there is one: the open is
        # not what is being decided)
        fd = preopened[p] if p in preopened else os.open(p, os.O_RDONLY)
        try:
            try:
                fcntl.ioctl(fd, 0x40086602, struct.pack("l", 0))
            except OSError as e:
                if e.errno in (errno.EPERM, errno.EACCES):
                    raise
                return {"other_errno": errno.errorcode.get(e.errno, str(e.errno))}
        finally:
            if p not in preopened:
                os.close(fd)
    elif op == "module-load":
        buf = b"not a module" * 8  # init_module: the LSM hook runs before the image is parsed
        if libc.syscall(175, buf, len(buf), b"") != 0:
            e = ctypes.get_errno()
            if e == errno.EPERM:
                raise OSError(e, os.strerror(e))
            return {"other_errno": errno.errorcode.get(e, str(e))}
    elif op == "bpf":
        _bpf(0, (ctypes.c_uint32 * 16)(1, 4, 4, 1), 64)  # BPF_MAP_CREATE: array, 4-byte key/value
    elif op == "bpf-obj-get":
        # BPF_OBJ_GET (7) of a pinned object: the fd of a policy's map, program or link
        path = ctypes.create_string_buffer(p.encode())
        _bpf(7, (ctypes.c_uint64 * 8)(ctypes.addressof(path), 0), 16)  # pathname, bpf_fd 0, file_flags 0
    elif op == "bpf-get-fd-by-id":
        # BPF_{PROG,MAP,LINK}_GET_FD_BY_ID (13, 14, 30): the fd of a loaded object by its id,
        # the way to a link to detach or a map to write without its pin
        _bpf(req["cmd"], (ctypes.c_uint32 * 16)(req["id"]), 64)
    elif op == "mount":
        if libc.mount(b"none", p.encode(), b"tmpfs", 0, None) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        libc.umount2(p.encode(), 0)
    elif op == "net-create":
        proto = req["proto"]
        if proto == "packet":
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        elif proto == "raw":
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        elif proto == "icmp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        s.close()
    elif op == "cap":
        return capability(req["name"], req.get("path"))
    else:
        raise ValueError(f"unknown op {op}")
    return {}


def _bpf(cmd: int, attr, size: int) -> None:
    """bpf(2) with `attr`; the fd it returns is closed, a failure raised with its errno."""
    fd = libc.syscall(321, cmd, attr, size)
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    os.close(fd)


def _in_child(fn) -> None:
    """Run a state-changing trigger (setuid...) in a child; its errno comes back."""
    pid = os.fork()
    if pid == 0:
        try:
            fn()
        except OSError as e:
            os._exit(100 + e.errno)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code >= 100:
        raise OSError(code - 100, os.strerror(code - 100))


def capability(name: str, scratch: str | None):
    """Make the kernel check capability `name` (we run as root: the check passes unless an
    LSM denies it). A denied capability surfaces as EPERM or EACCES."""
    if name == "net_raw":
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    elif name == "net_bind_service":
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", 80))
        finally:
            s.close()
    elif name == "setuid":
        _in_child(lambda: os.setuid(12345))
    elif name == "setgid":
        _in_child(lambda: os.setgid(12345))
    elif name == "chown":
        _in_child(lambda: os.chown(scratch, 12345, 12345))
    elif name == "sys_chroot":
        _in_child(lambda: os.chroot("/"))
    elif name == "sys_admin":
        host = socket.gethostname().encode()
        if libc.sethostname(host, len(host)) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    elif name == "sys_module":
        buf = b"x" * 64
        if libc.syscall(175, buf, len(buf), b"") != 0 and ctypes.get_errno() == errno.EPERM:
            raise OSError(errno.EPERM, "init_module")
    elif name == "mknod":
        _in_child(lambda: os.mknod(scratch + ".node", 0o600 | 0o020000, os.makedev(1, 3)))
    elif name == "dac_override":
        os.chmod(scratch, 0)
        os.close(os.open(scratch, os.O_RDONLY))
    else:
        return {"unsupported": f"policyc does not know how to make the kernel check `{name}`"}
    return {}


def main() -> None:
    out = sys.stdout
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        try:
            extra = do(req) or {}
            ans = {"ok": True, "errno": None, **extra}
        except OSError as e:
            ans = {"ok": False, "errno": _errno(e)}
        except Exception as e:  # noqa: BLE001 - a probe that cannot run says so
            ans = {"ok": False, "errno": None, "error": f"{type(e).__name__}: {e}"}
        out.write(json.dumps(ans) + "\n")
        out.flush()


def zygote(sock_fd: int) -> None:
    """`probe.py --zygote FD`: a worker made ready once, forked for each worker asked for.

    Under TCG a Python start and these imports cost 2-3 s, paid by every worker the kernel
    suite started (tests/kernel/harness.py): about 85 per kernel. Each request on the UNIX
    socket FD carries two descriptors, the new worker's stdin and stdout; the child takes them
    as 0 and 1 and serves as `main` does, its first line naming its own pid. The zygote is
    never governed (nothing governs it: a worker is governed by pid once it is ready), so a
    child starts as a worker started afresh would, ungoverned, its imports done. Exits when
    the socket closes."""
    import signal

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # the kernel reaps the workers
    sock = socket.socket(fileno=sock_fd)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 16, 2)
        except OSError:
            return
        if not msg:
            return
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        pid = os.fork()
        if pid == 0:
            try:
                sock.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)   # a worker waits for what it runs
                os.dup2(fds[0], 0)
                os.dup2(fds[1], 1)
                for fd in fds:
                    os.close(fd)
                sys.stdin = open(0, "r", closefd=False)
                sys.stdout = open(1, "w", closefd=False)
                main()
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--zygote":
        zygote(int(sys.argv[2]))
    else:
        main()
