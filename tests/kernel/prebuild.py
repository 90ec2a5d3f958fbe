"""Compile every template variant on the host, into the object cache the VM guest reads
(clang under TCG emulation is many times slower). Run by scripts/test.sh before the boots."""

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from policyc.codegen import all_variants, compile_c, render_c  # noqa: E402


def main() -> int:
    start = time.monotonic()
    variants = list(all_variants())
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda v: compile_c(render_c(v[0], v[1], v[2]), "policy"), variants))
    print(f"prebuild: {len(variants)} object variants ready in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
