#!/usr/bin/env bash
# The main job on built-in defaults: set up, check, test and build the example policies,
# then enforce one in a real kernel (a Debian kernel booted under qemu: this machine's own
# kernel refuses BPF LSM) and show the denials with their audit lines.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
"$REPO/scripts/setup.sh"
export PATH="${POLICYC_VENV:-$REPO/.venv}/bin:$PATH"

echo "== policyc check policies/"
policyc check policies/
echo "== policyc test policies/  (against the reference evaluator)"
policyc test policies/
echo "== policyc build policies/ -o out/policies"
policyc build policies/ -o out/policies
echo "== in a VM: policyc exec -p policies/ci-runner.policy -- sh -c '...'"
# The CI-runner policy lets a job read /etc and run tools, but not read /etc/shadow, nor
# reach the cloud metadata address. Each denial prints its audit line: the rule's file:line.
policyc vm --kernel "${POLICYC_KERNEL:-6.1}" -- policyc exec -p policies/ci-runner.policy -- sh -c '
    echo "--- cat /etc/hostname (allowed):"; cat /etc/hostname
    echo "--- cat /etc/shadow (denied):"; cat /etc/shadow
    echo "--- connect to 169.254.169.254 (denied):"
    bash -c "exec 3<>/dev/tcp/169.254.169.254/80" 2>&1
    exit 0'
