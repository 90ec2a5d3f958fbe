"""Derive policyc/kernels/VERSION.json from a supported kernel's own BTF, in a VM:

    .venv/bin/python scripts/derive_kernel_facts.py 6.1 6.12 7.2

The JSON lists the kernel's BPF LSM hooks (with their argument types) and BPF helpers;
`policyc check --kernel` reads it.
"""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from policyc.vm import run_in_vm  # noqa: E402


def main(versions: list[str]) -> int:
    for v in versions or ["6.1", "6.12", "7.2"]:
        res = run_in_vm([sys.executable, "-m", "policyc.kernel_facts", "--derive", "/sys/kernel/btf/vmlinux"], kernel=v)
        lines = [l for l in res.output.splitlines() if l.startswith("policyc-facts:")]
        if res.returncode != 0 or not lines:
            print(res.output[-2000:], file=sys.stderr)
            return 1
        facts = json.loads(lines[-1][len("policyc-facts:"):])
        facts["source"] = f"/sys/kernel/btf/vmlinux of Debian {facts['kernel']}"
        out = REPO / "policyc" / "kernels" / f"{v}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
        print(f"{out}: {len(facts['lsm_hooks'])} LSM hooks, {len(facts['helpers'])} helpers ({facts['kernel']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
