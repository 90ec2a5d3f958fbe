"""Source spans: every IR node keeps the place it came from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Span:
    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def at_offset(self, offset: int, length: int = 1) -> "Span":
        """A span `offset` characters into this one (same line): used inside string literals."""
        col = self.col + offset
        return Span(self.file, self.line, col, self.line, col + max(length, 1))


NO_SPAN = Span("<builtin>", 0, 0, 0, 0)


def comment_start(line: str) -> int | None:
    """The index of the `#` that starts the line's comment (a `#` inside a string is text)."""
    if "#" not in line:
        return None
    in_str = False
    i = 0
    while i < len(line):
        ch = line[i]
        if in_str and ch == "\\":
            i += 1
        elif ch == '"':
            in_str = not in_str
        elif ch == "#" and not in_str:
            return i
        i += 1
    return None
