"""Converters from other policy languages to policyc (`policyc import-apparmor`)."""

from __future__ import annotations

from .apparmor import ImportResult, import_apparmor

__all__ = ["import_apparmor", "ImportResult"]
