"""Source lines for snippets and suppression comments: from the texts the front end already
read, else from disk."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable

MAX_SNIPPET_SOURCE = 64 * 1024 * 1024   # the front end's own bound (policyc/parse MAX_FILE_BYTES)


class Sources:
    def __init__(self, texts: dict[str, str] | None = None):
        self._texts = dict(texts or {})
        self._lines: dict[str, list[str] | None] = {}
        self._unreadable: set[str] = set()

    def add(self, path: str, text: str) -> None:
        self._texts[path] = text
        self._lines.pop(path, None)

    def text(self, path: str) -> str | None:
        """The whole text of `path`, or None when it cannot be had."""
        text = self._texts.get(path)
        if text is None and path not in self._unreadable:
            try:
                # a snippet is shown only from a regular file, and never more than the front
                # end reads (a FIFO would block, /dev/zero would never end)
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as f:
                    if not stat.S_ISREG(os.fstat(fd).st_mode):
                        raise OSError("not a regular file")
                    text = f.read(MAX_SNIPPET_SOURCE + 1).decode("utf-8", errors="replace")
                if len(text) > MAX_SNIPPET_SOURCE:
                    raise OSError("too large")
            except OSError:
                self._unreadable.add(path)
                return None
        return text

    def line(self, path: str, lineno: int) -> str | None:
        """Line `lineno` (1-based) of `path`, or None when it cannot be had."""
        if path not in self._lines:
            text = self.text(path)
            self._lines[path] = text.split("\n") if text is not None else None
        lines = self._lines[path]
        if lines is None or not 1 <= lineno <= len(lines):
            return None
        return lines[lineno - 1].rstrip("\r")


def default_base_dir(paths: Iterable[str]) -> Path:
    """SARIF's %SRCROOT% unless `--base-dir` is given (policyc/report/sarif.py): the git
    top-level of the first input (a directory with `.git`, a directory or a file for
    worktrees), else the working directory."""
    first = next(iter(paths), None)
    if first is not None:
        try:
            p = Path(os.path.abspath(first))
            start = p if p.is_dir() else p.parent
            for d in (start, *start.parents):
                if (d / ".git").exists():
                    return d
        except (OSError, ValueError):
            pass
    return Path.cwd()
