"""BuildError, the one exception a build raises for the user, in a module of its own.

It is the code generator's (policyc/codegen re-exports it: `from policyc.codegen import
BuildError` keeps working), but lives here so that policyc/pipeline.py can define `Refused`
as an ordinary subclass and callers can catch either without importing the code generator
(and jinja2): `policyc check` never builds (tests/unit/test_startup_lazy.py). Import
nothing heavy here.
"""

from __future__ import annotations


class BuildError(Exception):
    """A build problem for the user (missing clang, clang error, a too-large policy)."""

    def __init__(self, message: str, detail: str = "", hint: str = ""):
        super().__init__(message)
        self.message, self.detail, self.hint = message, detail, hint
