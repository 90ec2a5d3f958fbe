#!/usr/bin/env bash
# Install what policyc needs on a fresh Debian bookworm machine; safe to run again.
#   - apt: clang/llvm 19, libbpf headers, bpftool, what virtme-ng needs to boot a Debian
#     kernel under qemu (kmod for depmod, busybox-static for the initramfs, udev), and the
#     shells and linter the unit suite needs (zsh, fish, shellcheck);
#     skipped when every package is already installed.
#   - a venv at ${POLICYC_VENV:-REPO/.venv} with policyc installed editable, extras test, vm
#     and journald (the unit tests cover the journal sink).
# Progress lines go to stderr; tool output is kept quiet and shown only when a step fails.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${POLICYC_VENV:-$REPO/.venv}
PYTHON=${PYTHON:-python3}
# zsh, fish, shellcheck: the unit suite runs the completion scripts in each shell and lints the
# bash one and the repository's shell scripts (tests/unit/test_completion.py), never skipping.
# mmdebstrap and e2fsprogs: the boot test's Debian image (tests/boot/run_boot_test.py).
APT_PACKAGES=(clang-19 llvm-19 libbpf-dev bpftool qemu-system-x86 kmod busybox-static udev
              linux-libc-dev zsh fish shellcheck git mmdebstrap e2fsprogs)
# Real programs the kernel suite runs under policies in the VM (which sees this host's files):
# installed here, never started here (a policy-rc.d refuses their services while apt runs).
# nginx and openssh-server for their shipped policies; git, make, gcc and python3-venv for the
# CI job the ci-runner policy confines (tests/kernel/test_real_*.py).
REAL_PACKAGES=(nginx openssh-server openssh-client git make gcc python3-venv)

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# Run a command quietly; on failure show its output and stop.
quiet() {
    local log
    log=$(mktemp)
    if ! "$@" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        rm -f "$log"
        die "failed: $*"
    fi
    rm -f "$log"
}

missing_apt_packages() {
    local pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
        [ "$status" = installed ] || printf '%s\n' "$pkg"
    done
}

mapfile -t missing < <(missing_apt_packages "${APT_PACKAGES[@]}")
mapfile -t missing_real < <(missing_apt_packages "${REAL_PACKAGES[@]}")
if [ ${#missing[@]} -eq 0 ] && [ ${#missing_real[@]} -eq 0 ]; then
    say "apt packages already installed"
else
    [ "$(id -u)" -eq 0 ] || die "apt packages missing (${missing[*]} ${missing_real[*]}): run as root"
    say "apt-get update"
    quiet apt-get update
    if [ ${#missing[@]} -gt 0 ]; then
        say "apt-get install ${missing[*]}"
        quiet env DEBIAN_FRONTEND=noninteractive apt-get install -y "${APT_PACKAGES[@]}"
    fi
    if [ ${#missing_real[@]} -gt 0 ]; then
        say "apt-get install ${missing_real[*]} (not started on this host)"
        rc_d=/usr/sbin/policy-rc.d
        own_rc_d=
        if [ ! -e "$rc_d" ]; then
            printf '#!/bin/sh\nexit 101\n' > "$rc_d" && chmod 755 "$rc_d" && own_rc_d=1
        fi
        quiet env DEBIAN_FRONTEND=noninteractive apt-get install -y "${REAL_PACKAGES[@]}"
        [ -z "$own_rc_d" ] || rm -f "$rc_d"
    fi
fi

command -v "$PYTHON" >/dev/null || die "$PYTHON not found (policyc needs Python >= 3.11)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is $("$PYTHON" -V 2>&1); policyc needs Python >= 3.11"

if [ ! -x "$VENV/bin/python" ]; then
    say "creating venv $VENV"
    quiet "$PYTHON" -m venv "$VENV"
fi
say "pip install -e ${REPO}[test,vm,journald] into $VENV"
# editable_mode=compat: the repository on sys.path through a plain .pth line. setuptools'
# default editable finder imports pathlib, dataclasses and more in every Python start (about
# 1 s of each process started in the test VM, where files come over 9p); policyc/__init__.py
# finds the runtime beside the package in a source tree.
quiet "$VENV/bin/python" -m pip install --quiet -e "${REPO}[test,vm,journald]" \
    --config-settings editable_mode=compat

[ -x "$VENV/bin/vng" ] || die "virtme-ng did not install $VENV/bin/vng"
say "done: activate with  . $VENV/bin/activate"
