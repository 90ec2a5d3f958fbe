"""policyc: a declarative policy compiler for Linux process security."""

__version__ = "0.1.0"
