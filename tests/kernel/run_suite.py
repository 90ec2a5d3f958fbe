"""Run the kernel test suite inside VMs: one boot per kernel, one after the other.

    python tests/kernel/run_suite.py --kernel 6.1 --kernel 6.12 [-- extra pytest args]

Without --kernel, runs 6.1, 7.2, then 6.12. Pytest args naming tests/kernel/... files run only
those (`-- tests/kernel/test_vm_sanity.py`); otherwise the whole of tests/kernel runs. Use the
python of the venv made by scripts/setup.sh: the guest runs `<that python> -m pytest` by
absolute path. Prints one summary line per kernel; exits 0 when every kernel passed, 1 when
tests failed, 2 when a VM could not boot or never reported.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from policyc.vm import VmError, resolve_kernel, run_in_vm  # noqa: E402

DEFAULT_KERNELS = ["6.1", "7.2", "6.12"]
PASSED, FAILED, VM_ERROR = 0, 1, 2


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    cut = argv.index("--") if "--" in argv else len(argv)
    own, pytest_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel", action="append", metavar="SPEC",
                        help='"6.1", "6.12", "7.2", "newest" or a path to DIR/boot/vmlinuz-V (repeatable)')
    parser.add_argument("--timeout", type=float, default=3000, help="seconds per boot (3000)")
    args = parser.parse_args(own)
    args.kernel = args.kernel or DEFAULT_KERNELS
    return args, pytest_args


def pytest_summary(output: str) -> str:
    """pytest's last `=== 5 passed in 0.1s ===` line, without the rule."""
    lines = re.findall(r"^=+ (.+ in [\d.]+s.*?) =+\s*$", output, re.MULTILINE)
    return lines[-1] if lines else "no pytest summary"


def guest_env(version: str) -> dict[str, str]:
    env = {
        "POLICYC_IN_VM": "1",
        "POLICYC_EXPECT_KERNEL": version,
        "PYTHONDONTWRITEBYTECODE": "1",  # the repo is read-only in the guest
        "PYTHONUNBUFFERED": "1",  # stream test progress as it happens
    }
    if "CI" in os.environ:
        env["CI"] = os.environ["CI"]
    return env


def run_kernel(spec: str, pytest_args: list[str], timeout: float) -> tuple[int, str]:
    """(PASSED | FAILED | VM_ERROR, summary line) for one kernel."""
    try:
        image = resolve_kernel(spec)
        named = any(arg.startswith("tests/kernel/") for arg in pytest_args)
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
        result = run_in_vm(
            [*command, *([] if named else ["tests/kernel"]), *pytest_args],
            kernel=image,
            env=guest_env(image.version),
            timeout=timeout,
            memory=os.environ.get("POLICYC_VM_MEMORY", "2G"),
            stream=sys.stdout,
            cwd=str(REPO),
        )
    except VmError as exc:
        print(f"run_suite: {spec}: {exc}", file=sys.stderr)
        return VM_ERROR, f"{spec}: VM ERROR: {str(exc).splitlines()[0]}"
    status = PASSED if result.returncode == 0 else FAILED
    word = "ok" if status == PASSED else f"FAILED (pytest exit {result.returncode})"
    retry = ", 2 boots" if result.boots > 1 else ""
    return status, (
        f"{spec} ({image.version}): {word}: {pytest_summary(result.output)}; "
        f"boot+suite {result.seconds:.1f} s{retry}"
    )


def main(argv: list[str] | None = None) -> int:
    args, pytest_args = parse_args(sys.argv[1:] if argv is None else argv)
    results = [run_kernel(spec, pytest_args, args.timeout) for spec in args.kernel]
    print()
    for _, line in results:
        print(f"run_suite: {line}")
    return max(status for status, _ in results)


if __name__ == "__main__":
    sys.exit(main())
