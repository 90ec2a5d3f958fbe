"""Syntax trees to the resolved model: includes, `${vars}`, rulesets, globs, addresses, tests.

`load_program(paths, diags)` is the front end's single entry: it reads every file (and the
files they include), and returns a `Program`, or None when anything was an error. Programs
are normally made by policyc/pipeline.py, which also runs the checks.

The passes, in the order they run, one job each:

1. `sources.py`    files and includes: command-line paths (`expand_paths`) to parsed files,
                   includes resolved where they stand (program order), cycles and depth
2. `names.py`      policies, rulesets and test blocks declared; names defined twice
3. `lets.py`       variables: each scope's lets resolved in dependency order (cycles are
                   errors), `${NAME}` interpolation with a size bound; unused lets (last)
4. `policies.py`   each policy: settings, then, using
     `subjects.py`   subjects and exceptions (`patterns.py`: strings read as globs and
                     cgroup paths)
     `rulesets.py`   `use` splicing a ruleset's rules in place, in the ruleset's scope
     `rules.py`      each rule: family, operations, objects, target, limit; numbered
5. `testblocks.py` test blocks to test cases, against the lowered policies

`context.py` holds what passes 4 and 5 share. Globs themselves are parsed by `globs.py`.
"""

from __future__ import annotations

import contextlib
import gc

from ..diagnostics import Diagnostics
from ..ir import model as M
from . import names as _names
from . import policies as _policies
from . import sources as _sources
from . import testblocks as _testblocks
from .context import Context
from .lets import Variables
from .rulesets import Rulesets
from .sources import MAX_INCLUDE_DEPTH, expand_paths

__all__ = ["MAX_INCLUDE_DEPTH", "expand_paths", "load_program", "paused_gc"]


@contextlib.contextmanager
def paused_gc():
    """The cyclic garbage collector paused: parsing and lowering allocate hundreds of
    thousands of small acyclic objects, and full collections over them used to take half
    the time of `check` on 10,000 rules. Reference counting still frees everything."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def load_program(paths: list[str], diags: Diagnostics) -> M.Program | None:
    """Read, resolve and lower `paths`; None when there were errors (all in `diags`)."""
    with paused_gc():
        return _load_program(paths, diags)


def _load_program(paths: list[str], diags: Diagnostics) -> M.Program | None:
    sources = _sources.read(paths, diags)                      # 1
    if diags.has_errors:
        return None
    names = _names.declare(sources, diags)                     # 2
    variables = Variables(sources, diags)                      # 3
    variables.resolve_files()
    ctx = Context(diags, sources, names, variables)
    rulesets = Rulesets(ctx)
    policies = [_policies.policy(ctx, rulesets, pol, key)      # 4
                for pol, key in names.policies.values()]
    by_name = {p.name: p for p in policies}
    tests = [tc for block, key in names.tests                  # 5
             if (tc := _testblocks.lower_test(ctx, block, key, by_name)) is not None]
    variables.report_unused()                                  # 3, the end
    if diags.has_errors:
        return None
    files = {k: t.source for k, t in sources.files.items() if t is not None}
    return M.Program(tuple(policies), tuple(tests), tuple(sources.order), files)
