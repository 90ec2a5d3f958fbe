#!/usr/bin/env bash
# The package as a user gets it: build the wheel, install it with its dependencies into a
# clean venv, and run it from a directory that holds nothing of the repository but a copy of
# policies/ (the .policy files, the abstractions they include, the .policy.test files):
#   policyc --version, check, fmt --check, test, build -o out (clang: scripts/setup.sh);
# the wheel must carry the precompiled BPF objects (POLICYC_PREBUILT=require, setup.py), and
# the `default deny` example policies must build from them with no clang on PATH.
# Any failure fails the script. Run by scripts/test.sh before the kernel suite.
#   PYTHON=python3.12 scripts/test_wheel.sh      the interpreter of the clean venv
#   POLICYC_KEEP_WHEEL_TEST=1 scripts/test_wheel.sh   keep the work directory
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/policyc-wheel.XXXXXX")
cleanup() { if [ "${POLICYC_KEEP_WHEEL_TEST:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

say() { printf 'test_wheel: %s\n' "$*" >&2; }
die() { printf 'test_wheel: error: %s\n' "$*" >&2; exit 1; }

# Run a command quietly; on failure show its output and stop.
quiet() {
    local log="$WORK/step.log"
    if ! "$@" >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        die "failed: $*"
    fi
}

# Nothing of the repository may reach the installed policyc: no PYTHONPATH, no checkout
# config, a fresh object cache (so `build` really runs clang on the installed templates).
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
export POLICYC_CACHE="$WORK/cache" PIP_DISABLE_PIP_VERSION_CHECK=1

# Build from a copy of the tracked and new (not ignored) files: a build/ left in the
# checkout by an earlier build could carry files that no longer exist.
SRC="$WORK/src"
mkdir -p "$SRC"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$REPO" ls-files -z --cached --others --exclude-standard \
        | tar -C "$REPO" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$SRC" -xf -
else
    tar -C "$REPO" --exclude=./.venv --exclude=./build --exclude='*.egg-info' -cf - . | tar -C "$SRC" -xf -
fi

say "pip wheel . --no-deps -w $WORK/dist (POLICYC_PREBUILT=require: the BPF objects compiled in)"
(cd "$SRC" && POLICYC_PREBUILT=require quiet "$PYTHON" -m pip wheel . --no-deps -w "$WORK/dist")
WHEELS=("$WORK"/dist/policyc-*.whl)
# shellcheck disable=SC2015  # die when either test fails: that is what A && B || C means here
[ ${#WHEELS[@]} -eq 1 ] && [ -f "${WHEELS[0]}" ] || die "expected one policyc wheel in $WORK/dist"
WHEEL=${WHEELS[0]}
VERSION=$(basename "$WHEEL" | cut -d- -f2)
say "built $(basename "$WHEEL") ($(stat -c %s "$WHEEL") bytes)"
"$PYTHON" - "$WHEEL" <<'EOF' || die "the wheel carries no precompiled BPF objects (policyc/codegen/objects)"
import sys, zipfile
objs = [i for i in zipfile.ZipFile(sys.argv[1]).infolist() if i.filename.startswith("policyc/codegen/objects/")]
assert objs and all(i.filename.endswith(".o.xz") for i in objs), [i.filename for i in objs]
print(f"test_wheel: {len(objs)} precompiled BPF objects, {sum(i.file_size for i in objs):,} bytes", file=sys.stderr)
EOF

say "$PYTHON -m venv; pip install the wheel with its dependencies"
VENV="$WORK/venv"
quiet "$PYTHON" -m venv "$VENV"
quiet "$VENV/bin/python" -m pip install "$WHEEL"

RUN="$WORK/run"
mkdir -p "$RUN"
cp -R "$REPO/policies" "$RUN/policies"
cd "$RUN"
POLICYC="$VENV/bin/policyc"

# The installed package, not the checkout: policyc and policyc.runtime from the venv, the
# data through importlib.resources inside the package.
quiet "$VENV/bin/python" - "$VENV" <<'EOF'
import importlib.util, sys
from pathlib import Path
import policyc, policyc.runtime
from policyc.resources import NAMES, resource_dir
venv = Path(sys.argv[1]).resolve()
for mod in (policyc, policyc.runtime):
    assert venv in Path(mod.__file__).resolve().parents, (mod.__name__, mod.__file__)
assert importlib.util.find_spec("runtime") is None, "a top-level `runtime` is installed"
pkg = Path(policyc.__file__).resolve().parent
for name in NAMES:
    assert resource_dir(name).resolve() == pkg / name, (name, resource_dir(name))
assert (pkg / "grammar" / "policy.lark").is_file()
EOF
say "the installed package is used (policyc, policyc.runtime, grammar/templates/kernels data)"

out=$("$POLICYC" --version) || die "policyc --version failed"
[ "$out" = "policyc $VERSION" ] || die "policyc --version printed '$out', expected 'policyc $VERSION'"
say "policyc --version: $out"

step() {
    say "policyc $*"
    quiet "$POLICYC" "$@"
}
step check policies/
step fmt --check policies/
step test policies/
step build policies/ -o out

# one object, one manifest and one maps file per policy, stamped with the package's version
"$VENV/bin/python" - "$VERSION" <<'EOF' || die "build output is incomplete"
import json, sys
from pathlib import Path
manifests = sorted(Path("out").glob("*.manifest.json"))
assert manifests, "no manifest in out/"
for m in manifests:
    name = m.name.removesuffix(".manifest.json")
    assert (m.parent / f"{name}.bpf.o").stat().st_size > 0, f"{name}.bpf.o missing or empty"
    assert (m.parent / f"{name}.maps").stat().st_size > 0, f"{name}.maps missing or empty"
    v = json.loads(m.read_text()).get("policyc_version")
    assert v == sys.argv[1], f"{m}: policyc_version {v!r}, expected {sys.argv[1]!r}"
print("test_wheel: built " + ", ".join(m.name.removesuffix(".manifest.json") for m in manifests), file=sys.stderr)
EOF

# The `default deny` policies (every hook family) from the shipped objects: no clang on PATH,
# an empty cache, and the objects are the ones the build with clang above wrote.
say "policyc build (default deny policies) with no clang on PATH and an empty cache"
mkdir -p "$WORK/noclang-cache"
(unset POLICYC_CLANG; export POLICYC_CACHE="$WORK/noclang-cache" PATH="$VENV/bin"
 quiet "$POLICYC" build policies/ -p nginx -p ci-runner -o out-noclang)
for name in nginx ci-runner; do
    cmp -s "out/$name.bpf.o" "out-noclang/$name.bpf.o" || die "$name.bpf.o differs without clang"
    cmp -s "out/$name.maps" "out-noclang/$name.maps" || die "$name.maps differs without clang"
done
[ -z "$(ls -A "$WORK/noclang-cache/objects" 2>/dev/null)" ] || die "a shipped object was compiled again"

say "ok: $(basename "$WHEEL") works from $RUN"
