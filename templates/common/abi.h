/* GENERATED from policyc/abi.py by `python -m policyc.abi --write`: do not edit.
 *
 * The kernel ABI: every constant, enum and struct Python and the BPF programs share (map
 * contents, the ring-buffer event, counters). Change policyc/abi.py and regenerate;
 * tests/unit/test_abi.py compares this file, and clang's layout of it, with policyc/abi.py.
 * Needs the __u8..__u64 types and struct bpf_spin_lock (vmlinux_min.h) first. */
#ifndef POLICYC_ABI_H
#define POLICYC_ABI_H

/* Limits both sides hold to. */
#define POLICYC_PATH_MAX 4096           /* longest path decided, NUL included */
/* offsets into the event's tail (path, exe, parent exe, args) are masked with this: the
 * verifier's bound; the tail never reaches it */
#define POLICYC_TAIL_MASK 8191
/* the event's tail: the object's path (at most POLICYC_PATH_MAX), then the executable's, the
 * parent's executable's and the args in what is left (a path that does not fit is flagged
 * unresolved), with room for one more name while building. struct scratch holds it and the
 * walk's names in one per-CPU value, which must stay under 32 KiB */
#define POLICYC_PATH_BUF (8192 + 256)
/* bytes of argv an event carries (NUL-separated, cut there) */
#define POLICYC_ARGS_MAX 256
/* names a walk records: a 4,096-byte path has at most 2,048 */
#define MAX_COMPONENTS 2048
#define MAX_NET_ENTRIES 4096            /* longest slice of net_entries a lookup scans */
#define MAX_TASK_RULES 256              /* task_rules a signal or ptrace scans at most */
#define MAX_TARGET_PATTERNS 64          /* `to exe` targets: the bits of verdict.targets */
#define LOADED_POLICIES_MAX 1024        /* loaded_policies' entries: policies loaded at once */
#define CGROUP_LEVELS 31                /* config.cgroup_levels: ancestors tested, root first */
#define RULE_DROPS_MAX 4096             /* rule ids rule_drops counts; past them: per hook only */
#define RULE_SUPPRESSED_MAX 4096        /* rules with a `limit` (build refuses more) */
#define POLICYC_N_CAPS 64               /* capability numbers cap_verdicts holds */
#define POLICYC_CAP_PERSONALITY 64      /* event.aux at uring_override_creds: not a capability */
#define POLICYC_N_SIMPLE 2              /* simple_verdicts' entries (enum policyc_simple) */
#define DEFAULT_RINGBUF_BYTES (1 << 22) /* events' size when the manifest gives none */
#define NET_KEY_OP_BITS 8               /* net_key.prefixlen counts op's bits before addr */
#define PROTO_MASK_ANY 0xff             /* net_entry.proto_mask of `any`: every policyc_proto bit */

/* dfa_state.flags and dfa_edge.check */
#define DFA_ABSORBING 0x1     /* no byte leaves the state: the walk stops there */
#define DFA_NO_STATE 0xffffff /* dfa_edge.check of a slot no state owns (above MAX_STATES) */

/* config.flags */
#define CFG_SUBJECT_ALL 0x1
#define CFG_SUBJECT_CGROUP 0x2
#define CFG_MODE_AUDIT 0x4
#define CFG_EXCEPT_CGROUP 0x8
#define CFG_RATE_LIMITS 0x10    /* some rule has a `limit`: look rule_limits up */
/* some signal rule is receive-side (`from`): task_kill looks the receiver's task storage up */
#define CFG_RECEIVE_SIGNAL 0x20
/* some ptrace rule is receive-side: an attach to a governed process is decided by those rules
 * (else by the ptrace rules, the process as target) */
#define CFG_RECEIVE_PTRACE 0x40
#define CFG_TRANSITIONS 0x80    /* some exec rule has `as`: look exec_transitions up */

/* subject_state.state: task storage bits (`policyc exec` writes PENDING through a pidfd). The
 * NEXT bits are what the exec in progress will make of the task, applied only at
 * bprm_committing_creds, where the exec can no longer fail: an exec that fails after
 * bprm_check_security (E2BIG on a `#!` line, a missing ELF interpreter) leaves the old program
 * as it was. */
#define SUBJECT_GOVERNED 0x1       /* started a subject executable, or descends from one */
#define SUBJECT_PENDING 0x2        /* `policyc exec`: governed from its next exec on (unchecked) */
#define SUBJECT_EXCEPTED 0x4       /* runs an `except exe` program: not governed; not inherited */
#define SUBJECT_STICKY 0x8         /* governed through a subject cgroup, wherever it moves */
#define SUBJECT_NEXT_GOVERNED 0x10 /* the exec in progress governs the task (at commit) */
#define SUBJECT_NEXT_EXCEPTED 0x20 /* the exec in progress excepts the task (at commit) */
/* ran a program an `as policy`/`as unconfined` rule let leave: not governed, and neither is
 * anything it starts */
#define SUBJECT_LEFT 0x40
#define SUBJECT_NEXT_LEFT 0x80     /* the exec in progress leaves the policy (at commit) */

/* event.id_flags: how the process's identity was read when the event was sent. An executable
 * whose path cannot be read whole is named by exe_ino/exe_dev alone. */
/* no executable: a kernel thread, or an exiting task without mm */
#define ID_NO_EXE 0x1
#define ID_EXE_UNRESOLVED 0x2     /* the path could not be read (too long, detached, fault) */
#define ID_EXE_PSEUDO 0x4         /* no path: a memfd or anonymous file, named by its leaf */
#define ID_EXE_DELETED 0x8        /* the file was unlinked after exec (nlink 0) */
#define ID_PARENT_NO_EXE 0x10
#define ID_PARENT_UNRESOLVED 0x20
#define ID_PARENT_PSEUDO 0x40
#define ID_PARENT_DELETED 0x80
#define ID_ARGS_ABSENT 0x100      /* argv was not recorded at this process's exec */
#define ID_ARGS_TRUNCATED 0x200   /* argv was longer than POLICYC_ARGS_MAX */
#define ID_NO_LOGINUID 0x400      /* the kernel keeps no loginuid (no CONFIG_AUDIT) */

/* event.flags */
/* decided on the receiving side: the policy governs target_pid (signalled or traced), a `from`
 * rule or its absence decided; pid, exe... are the sender's */
#define EVENT_RECEIVE 0x1

/* subject_cgroups values */
#define CGROUP_SUBJECT 1
#define CGROUP_EXCEPT 2

/* The errno of a denial: EACCES for the families whose bit is set, else EPERM (policyc/abi.py,
 * DENY_ERRNO_BY_FAMILY says why). */
#define EPERM 1
#define EACCES 13
#define POLICYC_EACCES_FAMILIES 0xe /* bit n: family n's denials return EACCES */

/* A decision; the larger value wins (deny over audit over allow). */
enum policyc_decision {
	DECISION_ALLOW = 0,
	DECISION_AUDIT = 1,
	DECISION_DENY = 2,
};

/* event.mode: the policy's mode when it decided. */
enum policyc_mode {
	MODE_ENFORCE = 0,
	MODE_AUDIT = 1,
};

/* event.family: the rule family that decided. */
enum policyc_family {
	FAMILY_FILE = 1,
	FAMILY_EXEC = 2,
	FAMILY_NET = 3,
	FAMILY_MOUNT = 4,
	FAMILY_CAPABILITY = 5,
	FAMILY_SIGNAL = 6,
	FAMILY_PTRACE = 7,
	FAMILY_MODULE = 8,
	FAMILY_BPF = 9,
};

/* Path operations: the columns of a DFA verdict vector, and event.op of file, exec and mount
 * events. */
enum policyc_op {
	OP_READ = 0,
	OP_WRITE = 1,
	OP_APPEND = 2,
	OP_CREATE = 3,
	OP_DELETE = 4,
	OP_RENAME = 5,
	OP_LINK = 6,
	OP_CHMOD = 7,
	OP_CHOWN = 8,
	OP_EXEC_MAP = 9,
	OP_EXEC = 10,
	OP_MOUNT = 11,
	OP_SUBJECT = 12,    /* the path is a subject executable (rule: its index + 1) */
	OP_EXCEPT = 13,     /* the path is an `except exe` program */
	POLICYC_N_OPS = 16, /* columns: a power of two (the C masks an op with N - 1) */
};

/* event.op of net events, and net_key.op. */
enum policyc_net_op {
	NET_OP_CONNECT = 0,
	NET_OP_BIND = 1,
	NET_OP_CREATE = 2,
};

/* event.proto; net_entry.proto_mask is a set of these bits. */
enum policyc_proto {
	PROTO_TCP = 1,
	PROTO_UDP = 2,
	PROTO_ICMP = 4,
	PROTO_RAW = 8,
	PROTO_PACKET = 16,
	PROTO_OTHER = 32,
};

/* event.reason: why the decision was made. */
enum policyc_reason {
	REASON_RULE = 0,                 /* a rule decided (rule_id) */
	REASON_DEFAULT = 1,              /* no rule matched: the policy's default */
	REASON_PATH_TOO_LONG = 2,        /* fail closed: longer than POLICYC_PATH_MAX or too deep */
	/* fail closed: a mount outside the task's namespace tree */
	REASON_DETACHED = 3,
	REASON_READ_FAULT = 4,           /* fail closed: a kernel read failed */
	REASON_MAP_FAULT = 5,            /* fail closed: a map lookup or task storage failed */
	/* rename/link would move a path out from under a deny rule */
	REASON_PROTECT = 6,
	/* executing or mapping a file that has no path (memfd...) */
	REASON_ANON_EXEC = 7,
	REASON_BAD_ADDRESS = 8,          /* fail closed: a socket address that cannot be read */
	/* io_uring personality: the op would run on other credentials */
	REASON_CRED_OVERRIDE = 9,
	/* fail closed: a file with no path from its mount's root (opened by handle, not yet
	 * connected) */
	REASON_DISCONNECTED = 10,
	/* fail closed: an `as policy NAME` exec while no policy NAME is loaded */
	REASON_TRANSITION_UNLOADED = 11,
};

/* exec_transition.kind: what an allowed exec makes of the task. */
enum policyc_transition {
	TRANSITION_NONE = 0,
	TRANSITION_POLICY = 1,     /* `as policy NAME`: governed by NAME from the commit on */
	TRANSITION_UNCONFINED = 2, /* `as unconfined`: leaves this policy */
};

/* event.hook, and the index of counters: which hook decided. Labels are the LSM hooks' names,
 * but for mount_syscall (the new mount API's system calls, decided at `capable`). */
enum policyc_hook {
	HOOK_FILE_OPEN = 0,
	HOOK_PATH_MKNOD = 1,
	HOOK_PATH_MKDIR = 2,
	HOOK_PATH_SYMLINK = 3,
	HOOK_PATH_UNLINK = 4,
	HOOK_PATH_RMDIR = 5,
	HOOK_PATH_RENAME = 6,
	HOOK_PATH_LINK = 7,
	HOOK_PATH_CHMOD = 8,
	HOOK_PATH_CHOWN = 9,
	HOOK_PATH_TRUNCATE = 10,
	HOOK_MMAP_FILE = 11,
	HOOK_FILE_MPROTECT = 12,
	HOOK_BPRM_CHECK = 13,
	HOOK_TASK_ALLOC = 14,
	HOOK_SOCKET_CONNECT = 15,
	HOOK_SOCKET_BIND = 16,
	HOOK_SOCKET_SENDMSG = 17,
	HOOK_SB_MOUNT = 18,
	HOOK_MOVE_MOUNT = 19,
	HOOK_CAPABLE = 20,
	HOOK_TASK_KILL = 21,
	HOOK_PTRACE_ACCESS_CHECK = 22,
	HOOK_PTRACE_TRACEME = 23,
	HOOK_KERNEL_READ_FILE = 24,
	HOOK_KERNEL_LOAD_DATA = 25,
	HOOK_KERNEL_MODULE_REQUEST = 26,
	HOOK_BPF = 27,
	HOOK_SOCKET_CREATE = 28,
	HOOK_UNIX_STREAM_CONNECT = 29,
	HOOK_UNIX_MAY_SEND = 30,
	HOOK_SOCKET_LISTEN = 31,
	HOOK_SCTP_BIND_CONNECT = 32,
	HOOK_SB_UMOUNT = 33,
	HOOK_SB_PIVOTROOT = 34,
	HOOK_URING_OVERRIDE_CREDS = 35,
	HOOK_FILE_SEND_SIGIOTASK = 36,
	HOOK_PERF_EVENT_ALLOC = 37,
	HOOK_BPRM_COMMITTING_CREDS = 38,
	HOOK_FILE_IOCTL = 39,
	HOOK_MOUNT_SYSCALL = 40,
	POLICYC_N_HOOKS = 64,            /* counters' entries: room for hooks to come */
};

/* simple_verdicts' index: one decision for a whole family. */
enum policyc_simple {
	SIMPLE_MODULE_LOAD = 0,
	SIMPLE_BPF = 1,
};

/* task_rule.kind: what a signal/ptrace rule decides. */
enum policyc_task_kind {
	TASK_SIGNAL = 0,
	TASK_PTRACE = 1,
};

/* task_rule.target_kind: whom a signal/ptrace rule names. */
enum policyc_target_kind {
	TARGET_ANY = 0,    /* no target, or `from all` */
	TARGET_EXE = 1,    /* the other's executable: bit target_bit of its verdict.targets */
	TARGET_CGROUP = 2, /* the other process's cgroup or an ancestor: target_cgroup */
};

/* The ring-buffer event. Fields are ordered by size so the layout has no implicit padding. Only
 * the header (up to `path`) and the tail are sent: the object's path and its NUL, the
 * executable's and its NUL, the parent's executable's and its NUL, then args_len bytes. */
struct policyc_event {
	__u64 ts_boot_ns;            /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id;
	__u64 start_boot_ns;         /* the process's start (group leader's start_boottime) */
	__u64 exec_count;            /* the group leader's self_exec_id: execs of this process */
	__u64 exe_ino;               /* the executable's inode number (0: no mm or no file) */
	__u32 pid;                   /* thread id */
	__u32 tgid;                  /* process id */
	__u32 ppid;                  /* parent's tgid */
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u32 loginuid;              /* (__u32)-1: unset, or the kernel has no audit */
	/* the executable's device (kernel dev_t: major << 20 | minor) */
	__u32 exe_dev;
	__u32 rule_id;               /* 0: the default decided, or a fail-closed reason */
	__u32 aux;                   /* op-specific: capability number, signal number */
	__u32 target_pid;            /* signal, ptrace: the other process (its exe: `path`) */
	__u16 path_len;
	__u16 port;                  /* host order */
	__u16 exe_len;               /* the executable's path: exe_len bytes after path's NUL */
	__u16 parent_exe_len;        /* then the parent's executable's path and its NUL */
	__u16 args_len;              /* then argv as read at exec, NUL-separated (0: absent) */
	__u16 id_flags;              /* ID_*: how the identity fields were read */
	__u8 decision;               /* enum policyc_decision: audit or deny */
	__u8 hook;                   /* enum policyc_hook */
	__u8 op;                     /* enum policyc_op (file, exec, mount) or policyc_net_op */
	__u8 reason;                 /* enum policyc_reason */
	__u8 family;                 /* enum policyc_family */
	__u8 proto;                  /* enum policyc_proto bit */
	__u8 mode;                   /* enum policyc_mode */
	__u8 flags;                  /* EVENT_* */
	__u8 addr[16];               /* IPv6, IPv4 as ::ffff:a.b.c.d */
	char comm[16];
	char path[POLICYC_PATH_BUF];
};

/* Per-hook counters (per-CPU array indexed by enum policyc_hook), read by `policyc status`. */
struct policyc_counters {
	__u64 checked;       /* events of governed processes */
	__u64 denied;
	__u64 audited;
	__u64 failed_closed;
	__u64 dropped;       /* events the ring buffer had no room for */
};

/* config[0]: the policy as a whole. */
struct policyc_config {
	__u32 flags;           /* CFG_* */
	__u32 cgroup_levels;   /* how many ancestor levels to test against subject_cgroups */
	__u32 task_rules;      /* entries in task_rules */
	__u8 default_decision; /* the policy's default, for what no rule matches */
	__u8 pad[3];
	__u64 policy_id;       /* policy_id() of the name it is loaded under (filled at load) */
};

/* dfa_states[state]: a state of the path automaton. Its row in dfa_comb holds the edges that
 * differ from the default by base class. */
struct dfa_state {
	__u32 next[3];      /* default successor by base class: '/', 0x80-0xBF, other */
	__u32 verdict;      /* index into verdicts */
	__u32 protect_rule; /* deny rule a rename/link of this path would escape, or 0 */
	/* where the state's row starts in dfa_comb (any value if it has none) */
	__u32 base;
	__u32 flags;        /* DFA_ABSORBING: every byte leads back here (the walk may stop) */
};

/* dfa_comb[base + byte class]: an edge of state `check` (AppArmor's base/next/check comb);
 * another state's entry, or DFA_NO_STATE, means the default. */
struct dfa_edge {
	__u32 check; /* the state this slot belongs to, or DFA_NO_STATE */
	__u32 next;
};

/* dfa_classes[0]: each byte's class, the column of dfa_comb it reads (bytes no state tells
 * apart share one). */
struct dfa_classes {
	__u8 of[256];
};

/* verdicts[i]: per operation, the winning rule and its decision. A policy with `owner` rules
 * has them in pairs: a state's verdict (even index) and then the same with the owner rules left
 * out, for a file the process does not own. */
struct verdict {
	__u32 rule[POLICYC_N_OPS];
	__u8 decision[POLICYC_N_OPS];
	__u64 targets;                /* bit i: `to exe` target pattern i matches */
};

/* net_prefixes' key: (op, IPv6 address) as one LPM prefix. */
struct net_key {
	__u32 prefixlen; /* NET_KEY_OP_BITS + the address prefix */
	__u8 op;         /* enum policyc_net_op */
	__u8 addr[16];   /* network order; IPv4 as ::ffff:a.b.c.d */
} __attribute__((packed));

/* net_prefixes' value: the prefix's entries in net_entries. */
struct net_slice {
	__u32 start;
	__u32 count;
};

/* net_entries[i]: in precedence order within a slice. */
struct net_entry {
	__u32 rule_id;
	__u16 port_lo;
	__u16 port_hi;
	__u8 proto_mask; /* policyc_proto bits */
	__u8 decision;
	__u8 pad[2];
};

/* A decision that depends on nothing but the family (module load, bpf) or a number
 * (capability): precomputed at build time. */
struct simple_verdict {
	__u32 rule_id;
	__u8 decision;
	__u8 pad[3];
};

/* subjects' task storage. */
struct subject_state {
	__u32 state; /* SUBJECT_* */
};

/* task_rules[i]: signal and ptrace rules in precedence order, scanned to the first match among
 * those of the side being decided (`receive`). */
struct task_rule {
	__u64 sig_mask;      /* bit n-1: signal n (signal rules) */
	__u64 target_cgroup; /* TARGET_CGROUP: the cgroup id (filled at load) */
	__u32 rule_id;
	__u32 target_bit;    /* TARGET_EXE: bit in verdict.targets */
	__u8 kind;           /* enum policyc_task_kind */
	__u8 decision;
	__u8 target_kind;    /* enum policyc_target_kind */
	__u8 receive;        /* 1: a receive-side rule (`from`): target_* name the sender */
	__u8 pad[4];
};

/* rule_limits[rule id] (the default's at 0): `limit N/UNIT`; per_window 0: no limit. A fixed
 * window that opens with the first event after the previous one closed; the lock makes the
 * count exact across CPUs. Python writes per_window and window_ns; the rest is the kernel's. */
struct rule_limit {
	struct bpf_spin_lock lock;
	__u32 per_window;
	__u64 window_ns;
	__u64 window_start;
	__u64 sent;                /* events sent in the current window */
};

/* exec_transitions[rule id]: an `allow exec ... as` rule's transition. */
struct exec_transition {
	__u64 policy_id; /* TRANSITION_POLICY: policy_id() of the policy it enters */
	__u32 kind;      /* enum policyc_transition */
	__u32 pad;
};

/* handoff's task storage, one map shared by every loaded policy: the policy an exec in progress
 * hands the task to (0: none), read at commit. */
struct handoff {
	__u64 next_policy;
};

#endif
