"""The project configuration of `policyc check`: `policyc.toml`, or `[tool.policyc]` in
`pyproject.toml`.

    # policyc.toml                       # pyproject.toml
    werror = true                        [tool.policyc]
    disable = ["W107"]                   werror = true
    format = "github"                    disable = ["W107"]

Found by walking up from the working directory to the root: in each directory
`policyc.toml` is taken first, then a `pyproject.toml` that has a `[tool.policyc]` table (a
`pyproject.toml` without one is passed over); the nearest wins and nothing is merged.

Keys: `werror` (bool: warnings fail the check), `disable` (list of warning codes never
reported), `format` (the default `--format` of `policyc check`). Anything else (an unknown
key, a wrong type, an error code in `disable`, a file that is not TOML) is a ConfigError
naming the file; the command line's flags win over the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .diagnostics import CODES, did_you_mean, is_warning_code
from .report import FORMATS as CHECK_FORMATS

FILE = "policyc.toml"
PYPROJECT = "pyproject.toml"
KEYS = ("werror", "disable", "format")


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Config:
    path: str | None = None              # the file it came from (None: no file)
    werror: bool | None = None           # None: not set
    disable: frozenset[str] = field(default_factory=frozenset)
    format: str | None = None


def find_config(start: Path | None = None) -> tuple[Path, dict] | None:
    """(file, its policyc table) of the nearest configuration at or above `start` (the working
    directory by default), or None."""
    try:
        here = (start or Path.cwd()).resolve()
    except OSError:              # the working directory was removed
        return None
    for d in (here, *here.parents):
        p = d / FILE
        if _is_file(p):
            return p, _read(p)
        p = d / PYPROJECT
        if _is_file(p):
            tool = _read(p).get("tool")
            if isinstance(tool, dict) and "policyc" in tool:
                table = tool["policyc"]
                if not isinstance(table, dict):
                    raise ConfigError(f"{_show(p)}: `tool.policyc` must be a table")
                return p, table
    return None


def load_config(start: Path | None = None) -> Config:
    found = find_config(start)
    if found is None:
        return Config()
    path, table = found
    return parse_config(table, path)


def parse_config(table: dict, path: Path) -> Config:
    where = _show(path)
    prefix = "tool.policyc." if path.name == PYPROJECT else ""
    for key in table:
        if key not in KEYS:
            hint = did_you_mean(key, KEYS)
            raise ConfigError(f"{where}: unknown key `{prefix}{key}` (known keys: {', '.join(KEYS)})"
                              + (f"; {hint[0]}" if hint else ""))
    werror = table.get("werror")
    if werror is not None and not isinstance(werror, bool):
        raise ConfigError(f"{where}: `{prefix}werror` must be true or false, not {_kind(werror)}")
    fmt = table.get("format")
    if fmt is not None and (not isinstance(fmt, str) or fmt not in CHECK_FORMATS):
        raise ConfigError(f"{where}: `{prefix}format` must be one of "
                          f"{', '.join(_value(f) for f in CHECK_FORMATS)}, not {_value(fmt)}")
    disable = table.get("disable", [])
    if not isinstance(disable, list) or not all(isinstance(c, str) for c in disable):
        raise ConfigError(f"{where}: `{prefix}disable` must be a list of codes (strings), not {_value(disable)}")
    codes = set()
    for c in disable:
        code = c.strip().upper()
        if code not in CODES:
            hint = did_you_mean(code, CODES)
            raise ConfigError(f"{where}: `{prefix}disable` names unknown code `{c}`"
                              + (f"; {hint[0]}" if hint else ""))
        if not is_warning_code(code):
            raise ConfigError(f"{where}: `{prefix}disable` names `{code}`, an error: only warnings can be disabled")
        codes.add(code)
    return Config(str(path), werror, frozenset(codes), fmt)


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except OSError:
        return False


def _read(p: Path) -> dict:
    # Imported here (and json where a message needs it): a check with no policyc.toml or
    # pyproject.toml at or above its directory reads no TOML (tomllib and json were 3-5 ms
    # of `policyc check`'s start-up, docs/benchmarks.md).
    import tomllib

    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{_show(p)}: not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{_show(p)}: cannot be read: {e}") from None


def _show(p: Path) -> str:
    """The path relative to the working directory when it is inside it."""
    try:
        cwd = Path.cwd().resolve()
        return os.path.relpath(p, cwd) if p.is_relative_to(cwd) else str(p)
    except (OSError, ValueError):
        return str(p)


def _kind(v) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(v), type(v).__name__)


def _value(v) -> str:
    if isinstance(v, str):
        import json

        return json.dumps(v)
    return _kind(v)


__all__ = ["CHECK_FORMATS", "Config", "ConfigError", "find_config", "load_config", "parse_config"]
