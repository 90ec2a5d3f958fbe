"""policyc: a declarative policy compiler for Linux process security."""

from pathlib import Path as _Path

# The one place the version is written: pyproject.toml reads it (`dynamic = ["version"]`,
# [tool.setuptools.dynamic]), `policyc --version`, build manifests and SARIF logs import it.
__version__ = "0.1.0"

# The runtime (`policyc.runtime`) lives in the repository's top-level runtime/, which a wheel
# installs as policyc/runtime (pyproject.toml, package-dir). In a source checkout there is no
# policyc/runtime: run with PYTHONPATH, from an editable install, or in the test VM (which
# runs the checkout over 9p with `python -m pytest` from the repository root), this package
# also searches the repository root, so `policyc.runtime` is runtime/ itself: one module, no
# copy, no loader code. Only then: an installed policyc has its own runtime/ and never looks
# outside its directory. (The side effect, in a checkout only: the repository's other
# top-level folders can be named as `policyc.<folder>`; nothing does.)
_here = _Path(__file__).resolve().parent
if not (_here / "runtime").is_dir() and (_here.parent / "runtime" / "__init__.py").is_file() \
        and (_here.parent / "pyproject.toml").is_file():
    __path__.append(str(_here.parent))
del _Path, _here
