"""Where policyc lives on a host, for the modules that must not import the runtime (cffi):
the lowering of `protect policyc` (policyc/lower/protect.py) names these paths in rules.

The install layout (sources, build output, logs, units) is policyc/install.py's; this module
holds the rest: the bpffs pin root (runtime/loader.py's default, which `POLICYC_PIN_ROOT`
overrides at run time in policyc/deploy.py), the state directory of loaded policies, the
cgroup v2 mount, and the systemd paths the units can be overridden or controlled through.
"""

from __future__ import annotations

# runtime/loader.py's BPFFS and DEFAULT_PIN_ROOT, which the runtime keeps as its own (it
# imports nothing of policyc: tests/unit/test_runtime_abi.py) and which importing would cost
# the lowering cffi; tests/unit/test_protect.py holds the two equal.
BPFFS = "/sys/fs/bpf"
DEFAULT_PIN_ROOT = BPFFS + "/policyc"    # PIN_ROOT/NAME/{links,maps}
STATE_DIR = "/run/policyc"               # NAME.manifest.json, NAME.load.json: deploy.state_dir()
CGROUP_ROOT = "/sys/fs/cgroup"           # cgroup v2; a `cgroup "/x"` is CGROUP_ROOT/x: deploy.CGROUP_ROOT
# systemd
# The units run in their own slice (`Slice=policyc.slice`, policyc/units/*.service.in): its
# cgroup exists from the loader's first start at boot and stays while policyc.service is
# active (RemainAfterExit), so a `to cgroup` rule resolved at load keeps naming the audit
# reader across its restarts (a unit's own cgroup is made anew at each start: a new id).
POLICYC_SLICE = "policyc.slice"
SLICE_CGROUP = "/" + POLICYC_SLICE       # below CGROUP_ROOT
RUNTIME_UNIT_DIR = "/run/systemd/system"  # units and drop-ins that override /etc until reboot
SYSTEMD_PRIVATE = "/run/systemd/private"  # systemctl's socket to PID 1 (root only)
# Every unit of install.UNITS (policyc.service, policyc-audit.service) and their prefix
# drop-in directory (`policyc-.service.d` applies to every `policyc-*.service`).
UNIT_GLOB = "policyc*.service"
