"""Compile, on the host, every object the kernel suite and the demo will ask for, into the
object cache the VM guest reads (clang under TCG emulation is many times slower).

Objects depend only on a policy's hook families (rules are map data), so this lowers each
policy the suite builds (module-level policy texts of tests/kernel/test_*.py, the seeded
differential policies, the example policies) and compiles each distinct variant once.
Run by scripts/test.sh before the boots.

It also compiles every module of policyc, runtime and the tests to bytecode beside its source:
the guest sees the tree read-only and cannot write it (PYTHONDONTWRITEBYTECODE there), so in a
clean clone each Python the suite starts (a worker, `policyc` itself) compiled from source
every module the host had not imported: 0.6 s more for each `policyc` start under TCG, with
20-40 such starts in a 6.1 run.
"""

import importlib
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from policyc import pipeline  # noqa: E402
from policyc.codegen import compile_c, render_c, template_families, template_flags  # noqa: E402


def policy_texts():
    for f in sorted((REPO / "tests" / "kernel").glob("test_*.py")):
        try:
            mod = importlib.import_module(f"tests.kernel.{f.stem}")
        except RuntimeError:  # a module that refuses to load outside the VM holds no policy
            continue
        for value in vars(mod).values():
            if isinstance(value, str) and "policy " in value and "subject" in value:
                yield value
        if f.stem == "test_differential":
            import random

            for idx in range(mod.N_POLICIES):
                yield mod.random_policy(random.Random(1000 + idx), idx)[0]


def variants(paths):
    # the suite's own front end (checks included): a policy the harness would refuse to
    # build is said here, before any kernel boots
    front = pipeline.front_end([str(p) for p in paths])
    if not front.ok:
        raise SystemExit(f"prebuild: a policy does not load: {[str(d) for d in front.diags.items][:3]}")
    for p in front.program.policies:
        flags = template_flags(p)
        yield (tuple(template_families(p)), tuple(sorted(flags.items())))


def compile_bytecode() -> None:
    """Every .py of policyc, runtime, tests and bench as bytecode beside it (__pycache__),
    what the guest's Pythons then read instead of compiling each module at each start."""
    import compileall

    for d in ("policyc", "runtime", "tests", "bench"):
        compileall.compile_dir(str(REPO / d), quiet=1, workers=2)


def main() -> int:
    start = time.monotonic()
    compile_bytecode()
    wanted = set()
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(policy_texts()):
            f = Path(tmp) / f"p{i}.policy"
            f.write_text(text)
            wanted.update(variants([f]))
    wanted.update(variants([REPO / "policies"]))
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda v: compile_c(render_c(list(v[0]), **dict(v[1])), "policy"), sorted(wanted)))
    print(f"prebuild: {len(wanted)} object variants ready in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
