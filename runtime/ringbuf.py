"""Reading pinned BPF ring buffers."""

from __future__ import annotations

import errno
import os
from typing import Callable

from . import _libbpf as B
from .errors import BpfError


class RingBufferReader:
    """Deliver every sample of the pinned ring buffers to CALLBACK(bytes).

    The sample is copied out of the ring before CALLBACK runs, so CALLBACK may keep it. If
    CALLBACK raises, polling stops and the exception is re-raised from poll()/consume(). If it
    returns RingBufferReader.STOP, the sample counts as consumed and poll()/consume() return
    early (a consumer whose own queue is full, or that was asked to stop: libbpf's consume
    otherwise loops as long as a producer keeps writing).
    The cffi callback object lives as long as the reader: libbpf holds its raw pointer until
    ring_buffer__free in close().
    """

    STOP = object()

    def __init__(self, pin_paths: list[str], callback: Callable[[bytes], object]) -> None:
        if not pin_paths:
            raise BpfError("no ring buffer to read")
        self._callback = callback
        self._error: BaseException | None = None
        self._stopped = False
        self._rb = B.ffi.NULL
        self._fds: list[int] = []
        self._c_cb = B.ffi.callback("ring_buffer_sample_fn", self._on_sample, error=-1)
        lib = B.lib()
        try:
            for path in pin_paths:
                fd = lib.bpf_obj_get(os.fsencode(path))
                if fd < 0:
                    raise BpfError(f"opening pinned ring buffer `{path}` failed: "
                                   f"{B.describe(fd)}")
                self._fds.append(fd)
                with B.LogCapture() as cap:
                    if self._rb == B.ffi.NULL:
                        self._rb = lib.ring_buffer__new(fd, self._c_cb, B.ffi.NULL, B.ffi.NULL)
                        rc = -B.ffi.errno if self._rb == B.ffi.NULL else 0
                    else:
                        rc = lib.ring_buffer__add(self._rb, fd, self._c_cb, B.ffi.NULL)
                if rc < 0:
                    raise BpfError(f"reading ring buffer `{path}` failed: "
                                   f"{B.describe(rc or -errno.EINVAL)}", cap.text)
        except BaseException:
            self.close()
            raise

    def _on_sample(self, ctx, data, size) -> int:
        try:
            if self._callback(bytes(B.ffi.buffer(data, size))) is RingBufferReader.STOP:
                self._stopped = True
                return -1   # libbpf has already moved past this sample
            return 0
        except BaseException as e:  # noqa: BLE001 - re-raised from poll()
            self._error = e
            return -1

    def _check(self, rc: int, what: str) -> int:
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        if self._stopped:
            self._stopped = False
            return max(rc, 0)
        if rc == -errno.EINTR:
            return 0
        if rc < 0:
            raise BpfError(f"{what} failed: {B.describe(rc)}")
        return rc

    def poll(self, timeout_ms: int) -> int:
        """Wait up to TIMEOUT_MS for samples, deliver them; the count (0 on EINTR)."""
        if self._rb == B.ffi.NULL:
            raise BpfError("ring buffer reader is closed")
        return self._check(B.lib().ring_buffer__poll(self._rb, timeout_ms), "ring_buffer__poll")

    def consume(self) -> int:
        """Deliver what is in the rings now, without waiting; the count."""
        if self._rb == B.ffi.NULL:
            raise BpfError("ring buffer reader is closed")
        return self._check(B.lib().ring_buffer__consume(self._rb), "ring_buffer__consume")

    def fileno(self) -> int:
        """An epoll fd that becomes readable when a sample arrives (for select/asyncio)."""
        return B.lib().ring_buffer__epoll_fd(self._rb)

    def close(self) -> None:
        if self._rb != B.ffi.NULL:
            B.lib().ring_buffer__free(self._rb)
            self._rb = B.ffi.NULL
        while self._fds:
            os.close(self._fds.pop())

    def __enter__(self) -> "RingBufferReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
