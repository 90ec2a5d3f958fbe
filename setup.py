"""setuptools hook (pyproject.toml holds the rest of the package's description): when a wheel
is built, compile the BPF objects policyc ships and put them in the wheel as
policyc/codegen/objects/KEY.o.xz (policyc/codegen/prebuilt.py says which and why), so a
build on a fresh host finds them without clang.

POLICYC_PREBUILT (environment of `pip wheel` / `python -m build`):
    unset or `auto`   compile them when clang, llvm-strip and the libbpf headers are there;
                      otherwise warn and build the wheel without them (policyc then compiles
                      every object on first use, as a source checkout does)
    `require`         fail the build without them (scripts/test_wheel.sh)
    `0`               never (a wheel without objects)
An editable install never compiles them. Building them reads and fills the object cache
(POLICYC_CACHE, ~/.cache/policyc): a second wheel build compiles nothing.
"""

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def ship_objects(build_lib, mode: str, warn=print) -> list:
    """Compile the shipped objects into BUILD_LIB/policyc/codegen/objects (POLICYC_PREBUILT
    `mode`, above); the files written."""
    if mode not in ("auto", "require", "0"):
        raise SystemExit(f"POLICYC_PREBUILT={mode!r}: expected auto, require or 0")
    dest = Path(build_lib) / "policyc" / "codegen" / "objects"
    shutil.rmtree(dest, ignore_errors=True)   # an earlier build's (build/ is reused): only this build's ship
    if mode == "0":
        return []
    sys.path.insert(0, str(ROOT))
    try:
        from policyc.codegen import BuildError
        from policyc.codegen.prebuilt import write_shipped
    finally:
        sys.path.remove(str(ROOT))
    try:
        return write_shipped(dest)
    except BuildError as e:
        msg = f"policyc: no shipped BPF objects in this wheel: {e.message}" + (f" ({e.hint})" if e.hint else "")
        if mode == "require":
            raise SystemExit(msg + " [POLICYC_PREBUILT=require]") from None
        warn(msg)
        return []


class build_py_with_objects(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False) or self.dry_run:
            return
        written = ship_objects(self.build_lib, os.environ.get("POLICYC_PREBUILT", "auto"), self.warn)
        if written:
            size = sum(p.stat().st_size for p in written)
            self.announce(f"policyc: shipped {len(written)} BPF objects ({size:,} bytes)", level=2)


if __name__ == "__main__":   # setuptools' PEP 517 backend runs this file as __main__
    setup(
        cmdclass={"build_py": build_py_with_objects},
        # the hook renders the C templates: pip installs jinja2 in the isolated build environment
        # (setuptools' PEP 517 backend returns setup_requires from get_requires_for_build_wheel)
        setup_requires=["jinja2>=3.1"],
    )
