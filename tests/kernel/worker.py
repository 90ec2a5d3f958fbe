"""A process that performs file, exec and network operations on request and reports the
errno of each: the kernel suite's hands inside a governed process.

Protocol: one JSON request per line on stdin, one JSON answer per line on stdout:
    {"op": "read", "path": "/x"} -> {"ok": false, "errno": "EPERM"}
It imports everything it needs before it answers its first request ("ready"), so that once
governed it opens no file but the ones asked for (under `default deny` nothing else works).
"""

import ctypes
import errno
import json
import mmap
import os
import socket
import sys

libc = ctypes.CDLL(None, use_errno=True)
OPEN_TREE_CLONE = 1
AT_RECURSIVE = 0x8000
O_CLOEXEC = 0o2000000
SYS_OPEN_TREE = 428

preopened = {}


def _errno(e: OSError) -> str:
    return errno.errorcode.get(e.errno, str(e.errno))


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
        os.chmod(p, 0o644)
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
        if code == 100 + errno.EPERM:
            raise PermissionError(errno.EPERM, "exec")
        return {"exit": code}
    elif op in ("connect", "sendto", "bind"):
        fam = socket.AF_INET6 if ":" in req["addr"] else socket.AF_INET
        kind = socket.SOCK_STREAM if req.get("proto", "tcp") == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(fam, kind)
        try:
            s.settimeout(0.5)
            if op == "connect":
                try:
                    s.connect((req["addr"], req["port"]))
                except OSError as e:
                    if e.errno in (errno.EPERM, errno.EACCES):
                        raise
                    return {"net_errno": _errno(e)}
            elif op == "sendto":
                try:
                    s.sendto(b"x", (req["addr"], req["port"]))
                except OSError as e:
                    if e.errno in (errno.EPERM, errno.EACCES):
                        raise
                    return {"net_errno": _errno(e)}
            else:
                try:
                    s.bind((req["addr"], req["port"]))
                except OSError as e:
                    if e.errno in (errno.EPERM, errno.EACCES):
                        raise
                    return {"net_errno": _errno(e)}
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
    else:
        raise ValueError(f"unknown op {op}")
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
        out.write(json.dumps(ans) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
