"""The one exception type of the runtime."""

from __future__ import annotations


class BpfError(Exception):
    """A failed BPF operation.

    `message` says what failed, with the errno name (`... failed: EPERM (Operation not
    permitted)`); `log` is everything libbpf printed meanwhile, the verifier log included.
    """

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.log = log

    def __str__(self) -> str:
        if not self.log:
            return self.message
        return f"{self.message}\n--- libbpf log ---\n{self.log.rstrip()}"
