/* The ring-buffer event: the one contract between the BPF side and policyc/audit/event.py
 * (tests/unit/test_event_layout.py pins every offset). Fields are ordered by size so the
 * layout has no implicit padding. Only path_len + 1 bytes of `path` are sent. */
#ifndef POLICYC_EVENT_H
#define POLICYC_EVENT_H

#define POLICYC_PATH_MAX 4096          /* longest path decided, NUL included */
#define POLICYC_PATH_BUF (4096 + 256)  /* room for one more name while building */

struct policyc_event {
	__u64 ts_boot_ns;      /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id;
	__u32 pid;             /* thread id */
	__u32 tgid;            /* process id */
	__u32 ppid;            /* parent's tgid */
	__u32 uid;
	__u32 gid;
	__u32 rule_id;         /* 0: the policy's default decided, or a fail-closed reason */
	__u32 aux;             /* op-specific: capability number, signal number */
	__u32 target_pid;      /* signal and ptrace: the other process (its exe is `path`) */
	__u16 path_len;
	__u16 port;            /* host order */
	__u8 decision;         /* 1 audit, 2 deny */
	__u8 hook;             /* enum policyc_hook */
	__u8 op;               /* enum policyc_op (file, exec) or net op */
	__u8 reason;           /* enum policyc_reason */
	__u8 family;           /* enum policyc_family */
	__u8 proto;            /* enum policyc_proto bit */
	__u8 mode;             /* 0 enforce, 1 audit */
	__u8 flags;
	__u8 addr[16];         /* IPv6, IPv4 as ::ffff:a.b.c.d */
	char comm[16];
	char path[POLICYC_PATH_BUF];
};

#define POLICYC_EVENT_HEADER_SIZE __builtin_offsetof(struct policyc_event, path)

enum policyc_decision { DECISION_ALLOW = 0, DECISION_AUDIT = 1, DECISION_DENY = 2 };

enum policyc_family {
	FAMILY_FILE = 1, FAMILY_EXEC = 2, FAMILY_NET = 3, FAMILY_MOUNT = 4, FAMILY_CAPABILITY = 5,
	FAMILY_SIGNAL = 6, FAMILY_PTRACE = 7, FAMILY_MODULE = 8, FAMILY_BPF = 9,
};

/* Path operations: the columns of a DFA verdict vector. */
enum policyc_op {
	OP_READ = 0, OP_WRITE, OP_APPEND, OP_CREATE, OP_DELETE, OP_RENAME, OP_LINK, OP_CHMOD,
	OP_CHOWN, OP_EXEC_MAP, OP_EXEC, OP_MOUNT, OP_SUBJECT, OP_EXCEPT,
	POLICYC_N_OPS = 16,
};

enum policyc_net_op { NET_OP_CONNECT = 0, NET_OP_BIND = 1, NET_OP_CREATE = 2 };

enum policyc_proto {
	PROTO_TCP = 1, PROTO_UDP = 2, PROTO_ICMP = 4, PROTO_RAW = 8, PROTO_PACKET = 16, PROTO_OTHER = 32,
};

enum policyc_reason {
	REASON_RULE = 0,          /* a rule decided (rule_id) */
	REASON_DEFAULT = 1,       /* no rule matched: the policy's default */
	REASON_PATH_TOO_LONG = 2, /* fail closed: longer than POLICYC_PATH_MAX or too deep */
	REASON_DETACHED = 3,      /* fail closed: a mount outside the task's namespace tree */
	REASON_READ_FAULT = 4,    /* fail closed: a kernel read failed */
	REASON_MAP_FAULT = 5,     /* fail closed: a map lookup or task storage failed */
	REASON_PROTECT = 6,       /* rename/link would move a path out from under a deny rule */
	REASON_ANON_EXEC = 7,     /* executing or mapping a file that has no path (memfd...) */
	REASON_BAD_ADDRESS = 8,   /* fail closed: a socket address that cannot be read */
	REASON_CRED_OVERRIDE = 9, /* an io_uring personality: the op would run on other credentials */
};

enum policyc_hook {
	HOOK_FILE_OPEN = 0, HOOK_PATH_MKNOD, HOOK_PATH_MKDIR, HOOK_PATH_SYMLINK, HOOK_PATH_UNLINK,
	HOOK_PATH_RMDIR, HOOK_PATH_RENAME, HOOK_PATH_LINK, HOOK_PATH_CHMOD, HOOK_PATH_CHOWN,
	HOOK_PATH_TRUNCATE, HOOK_MMAP_FILE, HOOK_FILE_MPROTECT, HOOK_BPRM_CHECK, HOOK_TASK_ALLOC,
	HOOK_SOCKET_CONNECT, HOOK_SOCKET_BIND, HOOK_SOCKET_SENDMSG, HOOK_SB_MOUNT, HOOK_MOVE_MOUNT,
	HOOK_CAPABLE, HOOK_TASK_KILL, HOOK_PTRACE_ACCESS_CHECK, HOOK_PTRACE_TRACEME,
	HOOK_KERNEL_READ_FILE, HOOK_KERNEL_LOAD_DATA, HOOK_KERNEL_MODULE_REQUEST, HOOK_BPF,
	HOOK_SOCKET_CREATE, HOOK_UNIX_STREAM_CONNECT, HOOK_UNIX_MAY_SEND, HOOK_SOCKET_LISTEN,
	HOOK_SCTP_BIND_CONNECT, HOOK_SB_UMOUNT, HOOK_SB_PIVOTROOT, HOOK_URING_OVERRIDE_CREDS,
	HOOK_FILE_SEND_SIGIOTASK, HOOK_PERF_EVENT_ALLOC, HOOK_BPRM_COMMITTING_CREDS, HOOK_FILE_IOCTL,
	HOOK_MOUNT_SYSCALL,
	POLICYC_N_HOOKS = 64,
};

/* Per-hook counters (per-CPU array indexed by hook), read by `policyc status`. */
struct policyc_counters {
	__u64 checked;     /* events of governed processes */
	__u64 denied;
	__u64 audited;
	__u64 failed_closed;
	__u64 dropped;     /* events the ring buffer had no room for */
};

#endif
