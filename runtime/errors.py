"""The one exception type of the runtime."""

from __future__ import annotations

import re

_PROG_LOG = re.compile(r"-- BEGIN PROG LOAD LOG --\n.*?-- END PROG LOAD LOG --", re.DOTALL)


class BpfError(Exception):
    """A failed BPF operation.

    `message` says what failed, with the errno name (`... failed: EPERM (Operation not
    permitted)`); `log` is everything libbpf printed meanwhile, at every level, the verifier
    log included. str() is the message plus the verifier log(s) found in `log`, if any.
    """

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.log = log

    @property
    def verifier_log(self) -> str:
        """The BEGIN/END PROG LOAD LOG blocks libbpf printed, or ''."""
        return "\n".join(m.group(0) for m in _PROG_LOG.finditer(self.log))

    def __str__(self) -> str:
        v = self.verifier_log
        return f"{self.message}\n{v}" if v else self.message
