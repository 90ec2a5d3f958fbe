"""Strings read as what they name, after interpolation: path globs (paths, `exe` subjects
and targets) and cgroup paths (`cgroup` subjects, exceptions and targets). Used by the
subject, rule and test passes."""

from __future__ import annotations

from ..ir import model as M
from ..ir import syntax as S
from .context import Context
from ..ir.glob import is_absolute, parse_glob
from .lets import MAX_VALUE_CHARS, PATH_MAX, Scope

# What makes a string a glob (docs/language.md); `[` is a plain character there.
GLOB_CHARS = "*?{}"


def _too_long(ctx: Context, s: S.Str, text: str, what: str) -> bool:
    """P018 for a pattern no path can match by its length (said before its glob is parsed:
    a 2 MB literal took 6 s and 1 GB before it reached the automaton's cap, #12). A glob of
    any length up to MAX_VALUE_CHARS (16 times PATH_MAX: room for many `{...}`
    alternatives); a literal up to the longest path the kernel decides."""
    if len(text) > MAX_VALUE_CHARS:
        ctx.diags.error("P018", s.span, f"this {what} is {len(text):,} characters long",
                        hints=(f"a pattern is at most {MAX_VALUE_CHARS:,} characters (16 times the longest "
                               "path): split it into shorter patterns",))
        return True
    if not any(c in text for c in GLOB_CHARS) and len(text.encode("utf-8", "surrogatepass")) >= PATH_MAX:
        ctx.diags.error("P018", s.span, f"this {what} is {len(text.encode('utf-8', 'surrogatepass')):,} bytes long: "
                        f"no path the kernel decides is longer than {PATH_MAX - 1:,} bytes",
                        hints=("the kernel decides no longer path (it fails closed on one, reason "
                               "`path-too-long`): this rule can never match",))
        return True
    return False


def glob(ctx: Context, s: S.Str, scope: Scope, what: str, abstract_socket: bool = False) -> M.Glob | None:
    """An absolute glob (or, with `abstract_socket`, `@NAME`), or None after an error."""
    r = ctx.vars.interpolate(s, scope)
    if r is None:
        return None
    text, offset_map = r
    if _too_long(ctx, s, text, what):
        return None
    if abstract_socket and text.startswith("@"):
        return parse_glob(text, s.span, ctx.diags, offset_map)
    if not text.startswith(("/", "{")):
        ctx.diags.error("P018", s.span, f"{what} `{text}` is not an absolute path",
                        hints=(f"write `/{text}`" if text and not text.startswith("*") else
                               "paths start with `/`",))
        return None
    g = parse_glob(text, s.span, ctx.diags, offset_map)
    if g is not None and not is_absolute(g.parts):
        ctx.diags.error("P018", s.span, f"{what} `{text}` is not an absolute path",
                        hints=("every alternative of a leading `{...}` must start with `/`",))
        return None
    return g


def cgroup(ctx: Context, s: S.Str, scope: Scope, absolute: bool = True) -> str | None:
    """A cgroup v2 path (a trailing `/` dropped; `/` is the root), or None after an error.

    Not a glob: the kernel side compares cgroup ids (the cgroup and its ancestors), so a
    `*` could only match a cgroup named `*`, which is never what was meant."""
    r = ctx.vars.interpolate(s, scope)
    if r is None:
        return None
    text, offset_map = r
    if absolute and not text.startswith("/"):
        ctx.diags.error("P018", s.span, f"cgroup `{text}` is not an absolute cgroup v2 path",
                        hints=('write it as under /sys/fs/cgroup, e.g. "/system.slice/nginx.service"',))
        return None
    bad = next((i for i, ch in enumerate(text) if ch in GLOB_CHARS), None)
    if bad is not None:
        parent = text[: text.rfind("/", 0, bad)] or "/"
        ctx.diags.error("P018", s.span.at_offset(offset_map(bad) + 1),
                        f"cgroup `{text}` contains `{text[bad]}`: a cgroup is a path, not a glob",
                        hints=(f"name each cgroup, or their parent `{parent}` (a cgroup covers every "
                               "cgroup below it); the kernel matches cgroups by id, not by name",))
        return None
    return text.rstrip("/") or "/"
