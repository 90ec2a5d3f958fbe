"""Replacing a file so that no reader ever sees half of it."""

from __future__ import annotations

import os
import tempfile


def write_atomically(path: str, text: str, mode: int | None = None) -> None:
    """Replace PATH with TEXT (UTF-8): written to a new hidden file beside it, then renamed
    over it (a reader such as node_exporter sees the old file or the new one, never a part).
    `mode`: the file's permission bits (None: 0600, as tempfile.mkstemp makes it). On any
    failure the hidden file is removed and PATH is left as it was."""
    fd, tmp = tempfile.mkstemp(prefix=".policyc-", suffix=".tmp", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


__all__ = ["write_atomically"]
