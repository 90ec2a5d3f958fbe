"""io_uring from Python (raw system calls), for the kernel suite's credential tests.

    python3 uring.py personality PATH   open PATH through a personality registered before a
                                        credential change (prctl(PR_SET_KEEPCAPS))
    python3 uring.py worker PATH ALLOWED   start an io-wq worker (an async open of ALLOWED),
                                        change credentials, then open PATH in that worker
    python3 uring.py plain PATH         open PATH through io_uring, nothing else

Prints `res N`: the completion's result (a file descriptor, or -errno).
"""

import ctypes
import mmap
import os
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
NR_SETUP, NR_ENTER, NR_REGISTER = 425, 426, 427
OP_OPENAT, AT_FDCWD, IOSQE_ASYNC = 18, -100, 1 << 4
REGISTER_PERSONALITY, ENTER_GETEVENTS, PR_SET_KEEPCAPS = 9, 1, 8


class SqOff(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("head", "tail", "ring_mask", "ring_entries", "flags",
                                               "dropped", "array", "resv1")] + [("user_addr", ctypes.c_uint64)]


class CqOff(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("head", "tail", "ring_mask", "ring_entries", "overflow",
                                               "cqes", "flags", "resv1")] + [("user_addr", ctypes.c_uint64)]


class Params(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("sq_entries", "cq_entries", "flags", "sq_thread_cpu",
                                               "sq_thread_idle", "features", "wq_fd")] + [
        ("resv", ctypes.c_uint32 * 3), ("sq_off", SqOff), ("cq_off", CqOff)]


class Ring:
    def __init__(self):
        self.p = Params()
        self.fd = libc.syscall(NR_SETUP, 8, ctypes.byref(self.p))
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "io_uring_setup")
        p = self.p
        sq_size = p.sq_off.array + p.sq_entries * 4
        cq_size = p.cq_off.cqes + p.cq_entries * 16
        self.sq = mmap.mmap(self.fd, max(sq_size, cq_size), offset=0)
        self.cq = self.sq if p.features & 1 else mmap.mmap(self.fd, cq_size, offset=0x8000000)
        self.sqes = mmap.mmap(self.fd, p.sq_entries * 64, offset=0x10000000)
        self.keep = []

    def u32(self, m, off, value=None):
        if value is None:
            return struct.unpack_from("<I", m, off)[0]
        struct.pack_into("<I", m, off, value)

    def openat(self, path: str, flags: int = os.O_RDONLY, personality: int = 0, sqe_flags: int = 0) -> int:
        buf = ctypes.create_string_buffer(path.encode())
        self.keep.append(buf)
        p = self.p
        tail = self.u32(self.sq, p.sq_off.tail)
        idx = tail & self.u32(self.sq, p.sq_off.ring_mask)
        sqe = bytearray(64)
        struct.pack_into("<BBHiQQIIQHH", sqe, 0, OP_OPENAT, sqe_flags, 0, AT_FDCWD, 0,
                         ctypes.addressof(buf), 0, flags, 7, 0, personality)
        self.sqes[idx * 64:(idx + 1) * 64] = bytes(sqe)
        self.u32(self.sq, p.sq_off.array + idx * 4, idx)
        self.u32(self.sq, p.sq_off.tail, tail + 1)
        n = libc.syscall(NR_ENTER, self.fd, 1, 1, ENTER_GETEVENTS, None, 0)
        if n < 0:
            return -ctypes.get_errno()
        head = self.u32(self.cq, p.cq_off.head)
        off = p.cq_off.cqes + (head & self.u32(self.cq, p.cq_off.ring_mask)) * 16
        _, res, _ = struct.unpack_from("<QiI", self.cq, off)
        self.u32(self.cq, p.cq_off.head, head + 1)
        return res

    def register_personality(self) -> int:
        r = libc.syscall(NR_REGISTER, self.fd, REGISTER_PERSONALITY, None, 0)
        if r < 0:
            raise OSError(ctypes.get_errno(), "IORING_REGISTER_PERSONALITY")
        return r


def change_credentials():
    # a new `struct cred` for the task (commit_creds); needs no privilege
    if libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl")


def main(argv):
    mode, path = argv[0], argv[1]
    ring = Ring()
    if mode == "personality":
        pid = ring.register_personality()
        change_credentials()
        res = ring.openat(path, personality=pid)
    elif mode == "worker":
        first = ring.openat(argv[2], sqe_flags=IOSQE_ASYNC)  # starts an io-wq worker
        if first < 0:
            print("first", first)
        change_credentials()
        res = ring.openat(path, sqe_flags=IOSQE_ASYNC)
    else:
        res = ring.openat(path)
    print("res", res, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
