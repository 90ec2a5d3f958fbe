"""Where policyc's data files are: the grammar (`grammar`), the C templates (`templates`) and
the shipped kernel facts (`kernels`).

An installed policyc (`pip install .`, a wheel) carries all three as package data inside the
`policyc` package (policyc/grammar/policy.lark, policyc/templates/..., policyc/kernels/*.json;
pyproject.toml maps the repository's top-level grammar/ and templates/ there when the wheel is
built), found in the package's directory (`files`). A source checkout (PYTHONPATH, an
editable install, the test VM) has policyc/kernels but keeps grammar/ and templates/ at the
repository root, beside the package: they are found there.
"""

from __future__ import annotations

import os
from pathlib import Path

NAMES = ("grammar", "templates", "kernels")

# The repository root when this file is in a source checkout (policyc/resources.py).
_CHECKOUT = Path(__file__).resolve().parents[1]


def files(package: str):
    """importlib.resources.files(package) for policyc: the package's directory when policyc is
    on the file system (a wheel unpacked in site-packages, a checkout), which is what
    importlib.resources answers for it, without importing importlib.resources and its zip
    readers (2.5 ms of every command's start-up, docs/benchmarks.md). Anything else (policyc
    imported from a zip) asks importlib.resources."""
    if package == __package__ and os.path.isfile(__file__):
        return Path(__file__).parent
    from importlib.resources import files as package_files

    return package_files(package)


def resource_dir(name: str) -> Path:
    """The directory of `name` (one of NAMES): the package's own copy when it has one, else the
    source checkout's."""
    if name not in NAMES:
        raise ValueError(f"unknown resource directory `{name}` (known: {', '.join(NAMES)})")
    packaged = files(__package__) / name
    if packaged.is_dir():
        # Jinja's FileSystemLoader, Lark and clang's -I want file-system paths: policyc is
        # installed unpacked (a wheel in site-packages), never run from a zip.
        if not isinstance(packaged, Path):
            raise RuntimeError(f"policyc's `{name}` is not on the file system ({packaged}); "
                               "install policyc unpacked (pip install)")
        return packaged
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / name).is_dir():
        return _CHECKOUT / name
    raise FileNotFoundError(f"policyc's `{name}` directory is missing: it is neither package data "
                            f"({packaged}) nor in a source checkout ({_CHECKOUT / name}); "
                            "reinstall policyc")
