"""`policyc check --load-test`: every program of a policy's object loaded alone on this kernel,
nothing attached; a program the verifier refuses is named, with its reason."""

import subprocess
import sys
from pathlib import Path

from policyc.diagnostics import Diagnostics
from policyc.load_test import load_test_program
from policyc.lower import load_program

from policyc import runtime

REPO = Path(__file__).resolve().parents[2]

EVERY_FAMILY = """
policy every {
    subject exe "/nonexistent/every" except exe "/nonexistent/trusted"
    default deny
    deny file read "/x"
    deny exec "/y"
    deny net connect any 127.0.0.0/8
    deny mount
    deny capability sys_admin
    deny signal kill to exe "/usr/bin/sleep"
    deny ptrace
    deny module load
    deny bpf
}
"""

# A program that reads a register nothing wrote: every verifier refuses it (an out-of-range
# return value is not enough: 6.1 does not check an LSM program's return range).
REFUSED_C = r"""
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
char LICENSE[] SEC("license") = "GPL";
SEC("lsm/file_open")
int BPF_PROG(fine, struct file *file, int ret) { return 0; }
SEC("lsm/path_unlink")
int refused(void *ctx)
{
	long v;
	asm volatile("%0 = r7" : "=r"(v));
	return v;
}
"""


def test_every_program_of_every_family_loads_here(tmp_path):
    src = tmp_path / "every.policy"
    src.write_text(EVERY_FAMILY)
    diags = Diagnostics()
    program = load_program([str(src)], diags)
    assert program is not None
    refusals = load_test_program(program, diags)
    assert refusals == [] and not diags.has_errors, [str(d) for d in diags.items]
    assert runtime.list_loaded() == [] or all("every" not in p for p in runtime.list_loaded())


def test_a_refused_program_is_named_with_its_reason(tmp_path):
    c = tmp_path / "refused.bpf.c"
    c.write_text(REFUSED_C)
    obj = tmp_path / "refused.bpf.o"
    subprocess.run(["clang-19", "-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86",
                    f"-I{REPO / 'templates' / 'common'}", "-c", str(c), "-o", str(obj)], check=True)
    verdicts = {v.program: v for v in runtime.load_test(str(obj))}
    assert verdicts["fine"].ok and verdicts["fine"].hook == "file_open"
    assert not verdicts["refused"].ok and verdicts["refused"].hook == "path_unlink"
    assert "R7" in verdicts["refused"].reason, verdicts["refused"].reason
