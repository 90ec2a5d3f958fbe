"""The code generator's registries: the template families (C programs, their hooks and
helpers), and per rule family which templates decide a rule and which DFA verdict columns a
path rule speaks for.

One entry per family of policyc/ir/vocab.py FAMILIES; tests/unit/test_family_registries.py
fails when a layer forgets one. The columns are the op enum (policyc/abi.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..ir.dfa import PATH_FAMILIES   # the automaton's columns, which `check` builds too
from ..ir.model import Rule
from .. import abi



# The maps a template declares beyond the common ones (config, the DFA, rule_limits), filled
# from the policy: (maps by name, cgroup fixups). codegen/tables.py builds them; it is imported
# at call time because it reads this registry for the DFA columns.
def _net_maps(policy):
    from .tables import net_maps
    return net_maps(policy), []


def _cap_maps(policy):
    from .tables import simple_maps
    return {"cap_verdicts": simple_maps(policy)["cap_verdicts"]}, []


def _simple_maps(policy):
    # module and bpf share one map; each template declares only its own maps (a `deny module
    # load` policy without capability rules has no cap_verdicts, and loading failed on it)
    from .tables import simple_maps
    return {"simple_verdicts": simple_maps(policy)["simple_verdicts"]}, []


def _task_maps(policy):
    from .tables import task_maps
    return task_maps(policy)


@dataclass(frozen=True)
class TemplateFamily:
    """One C program family (templates/NAME.bpf.c.j2): the LSM hooks it attaches, the BPF
    helpers it calls beyond the subject test's (kernel_facts checks a kernel has them), and
    how its own maps are filled."""
    hooks: tuple[str, ...]
    helpers: tuple[str, ...] = ()
    maps: Callable | None = None


# In the order the object lists them (`subject` always comes first).
TEMPLATE_FAMILIES: dict[str, TemplateFamily] = {
    # the commit hooks and ptrace_access_check: subjects, exceptions and exec transitions
    # (`as policy`, `as unconfined`) take effect where an exec can no longer fail, and no
    # governed process attaches to a task that was excepted or left
    "subject": TemplateFamily(
        ("task_alloc", "bprm_check_security", "bprm_creds_for_exec", "bprm_committing_creds",
         "ptrace_access_check"),
        ("loop", "task_storage_get", "bprm_opts_set", "send_signal", "get_current_task_btf", "ringbuf_output", "probe_read_kernel",
         "ktime_get_boot_ns", "get_current_pid_tgid", "get_current_uid_gid", "get_current_comm",
         "get_current_cgroup_id", "map_lookup_elem", "spin_lock", "spin_unlock")),
    "file": TemplateFamily(
        ("file_open", "path_mknod", "path_mkdir", "path_symlink", "path_unlink", "path_rmdir", "path_chmod",
         "path_chown", "path_truncate", "path_rename", "path_link", "unix_stream_connect", "unix_may_send",
         "file_ioctl"), ("task_pt_regs",)),
    "execmap": TemplateFamily(("mmap_file", "file_mprotect"), ("get_func_arg",)),
    "net": TemplateFamily(("socket_connect", "socket_bind", "socket_sendmsg", "socket_create", "socket_listen",
                           "sctp_bind_connect"), maps=_net_maps),
    "mount": TemplateFamily(("sb_mount", "move_mount", "sb_umount", "sb_pivotroot", "capable"), ("task_pt_regs",)),
    "capability": TemplateFamily(("capable", "uring_override_creds"), ("get_func_arg",), _cap_maps),
    "task": TemplateFamily(("task_kill", "ptrace_access_check", "ptrace_traceme", "perf_event_alloc", "file_fcntl",
                            "file_ioctl", "file_set_fowner", "file_free_security", "file_send_sigiotask"),
                           ("get_func_arg",), _task_maps),
    "module": TemplateFamily(("kernel_read_file", "kernel_load_data", "kernel_module_request"),
                             ("probe_read_kernel_str",), _simple_maps),
    "bpf": TemplateFamily(("bpf",), maps=_simple_maps),
}
TEMPLATE_ORDER = tuple(TEMPLATE_FAMILIES)
# Hooks with no HOOK_ value of their own: they keep state, never decide. The SIGIO-owner ones'
# refusals are reported as HOOK_FILE_SEND_SIGIOTASK (the signal it would let through);
# bprm_creds_for_exec forgets what a failed exec left pending.
STATE_ONLY_HOOKS = frozenset({"file_fcntl", "file_set_fowner", "file_free_security", "bprm_creds_for_exec"})


@dataclass(frozen=True)
class CodegenFamily:
    # Every template family that takes part in deciding a rule of this family (kernel_facts
    # reports a rule whose templates' hooks a kernel lacks).
    templates: tuple[str, ...]
    # The templates a non-allow rule of this family needs in the object (`subject` is always
    # there); a function because some depend on the rule's ops.
    needs: Callable[[Rule], tuple[str, ...]]
    # DFA verdict columns a path rule of this family decides; None: not decided in the DFA.
    columns: Callable[[Rule], int] | None = None
    # A deny rule of this family protects its paths from rename/link (dfa_state.protect_rule).
    protects: bool = False


def _fixed(*names: str) -> Callable[[Rule], tuple[str, ...]]:
    return lambda rule: names


FAMILIES: dict[str, CodegenFamily] = {
    "file": CodegenFamily(("file",), lambda r: ("file", "execmap") if "exec-map" in r.ops else ("file",),
                          *PATH_FAMILIES["file"]),
    "exec": CodegenFamily(("subject", "execmap"), _fixed("execmap"), *PATH_FAMILIES["exec"]),
    "net": CodegenFamily(("net",), _fixed("net")),
    "mount": CodegenFamily(("mount",), _fixed("mount"), *PATH_FAMILIES["mount"]),
    "capability": CodegenFamily(("capability",), _fixed("capability")),
    "signal": CodegenFamily(("task",), _fixed("task")),
    "ptrace": CodegenFamily(("task",), _fixed("task")),
    "module": CodegenFamily(("module",), _fixed("module")),
    "bpf": CodegenFamily(("bpf",), _fixed("bpf")),
}
