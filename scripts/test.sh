#!/usr/bin/env bash
# The test command (README, .ci/run): install what is needed, run the unit tests on the host,
# then the kernel suite inside VMs: one boot per kernel, the whole suite batched inside it.
# The kernel suite never skips: if a VM cannot boot, this fails.
#   scripts/test.sh                 unit tests + kernel suite on 6.1 and 6.12
#   POLICYC_KERNELS="6.1" scripts/test.sh     only the kernels named
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
"$REPO/scripts/setup.sh"
PY="${POLICYC_VENV:-$REPO/.venv}/bin/python"

echo "== unit tests (host) =="
"$PY" -m pytest tests/unit -q -p no:cacheprovider

echo "== kernel suite (VM: ${POLICYC_KERNELS:-6.1 6.12}) =="
# Build the objects the suite needs on the host first: clang under TCG is slow, and the
# guest reads the host's object cache.
"$PY" tests/kernel/prebuild.py
args=()
for k in ${POLICYC_KERNELS:-6.1 6.12}; do args+=(--kernel "$k"); done
"$PY" tests/kernel/run_suite.py "${args[@]}"
