/* The kernel types policyc's programs touch, and only those.
 *
 * Why not a generated vmlinux.h: `policyc build` must be unprivileged, need no kernel and give
 * byte-identical output on any machine. Every struct here is preserve_access_index, so clang
 * records CO-RE relocations and libbpf fixes each field offset against the running kernel's
 * BTF at load time: one object for 6.1 and newer.
 */
#ifndef POLICYC_VMLINUX_MIN_H
#define POLICYC_VMLINUX_MIN_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
typedef unsigned short umode_t;
typedef unsigned int fmode_t;
typedef unsigned short sa_family_t;
typedef __u32 uid_t;
typedef __u32 gid_t;
typedef struct { uid_t val; } kuid_t;
typedef struct { gid_t val; } kgid_t;

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_RINGBUF = 27,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};

enum {
	BPF_ANY = 0,
	BPF_F_NO_PREALLOC = 1,
	BPF_LOCAL_STORAGE_GET_F_CREATE = 1,
};

/* uapi: a lock inside a map value (rule_limits); the verifier knows it by this name */
struct bpf_spin_lock {
	__u32 val;
};

/* Types hooks take but programs never look into. */
struct user_namespace;
struct kernel_siginfo;
union bpf_attr;

#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)

struct qstr {
	union {
		struct {
			u32 hash;
			u32 len;
		};
		u64 hash_len;
	};
	const unsigned char *name;
};

struct super_block;
struct inode {
	umode_t i_mode;
	unsigned long i_ino;
	struct super_block *i_sb;
	unsigned int __i_nlink;         /* 0: unlinked (an executable deleted after its exec) */
	kuid_t i_uid;                   /* the owner `owner` rules compare with the fsuid */
};

struct hlist_bl_node {
	struct hlist_bl_node *next, **pprev;
};

struct dentry {
	struct hlist_bl_node d_hash;    /* pprev NULL: unhashed (unlinked, or never hashed) */
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
};

struct vfsmount {
	struct dentry *mnt_root;
	struct super_block *mnt_sb;
	int mnt_flags;
};

struct mnt_namespace;
struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
	struct mnt_namespace *mnt_ns;
};

struct mnt_namespace {
	struct mount *root;
};

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
};

struct fs_struct {
	struct path root;               /* what d_path() names paths relative to (chroot) */
};

struct file {
	struct path f_path;
	struct inode *f_inode;
	unsigned int f_flags;
	fmode_t f_mode;
};

struct linux_binprm {
	struct file *file;
};

struct vm_area_struct {
	unsigned long vm_flags;
	struct file *vm_file;
};

struct nsproxy {
	struct mnt_namespace *mnt_ns;
};

struct mm_struct {
	struct file *exe_file;
};

struct kernfs_node {
	u64 id;
};

struct cgroup;
struct cgroup_subsys_state {
	struct cgroup *cgroup;
	struct cgroup_subsys_state *parent;
};

struct cgroup {
	struct cgroup_subsys_state self;
	struct kernfs_node *kn;
};

struct css_set {
	struct cgroup *dfl_cgrp;
};

/* The audit record's identity fields (event.uid/gid are bpf_get_current_uid_gid's). */
struct cred {
	kuid_t uid;
	kgid_t gid;
	kuid_t euid;
	kuid_t fsuid;                   /* whose files `owner` rules speak for */
};

struct task_struct {
	unsigned int flags;             /* PF_IO_WORKER: an io_uring worker thread */
	u64 start_boottime;             /* the process's identity across pid reuse (the leader's) */
	u64 self_exec_id;               /* bumped by each exec: with start_boottime, one exec */
	kuid_t loginuid;                /* CONFIG_AUDIT only: read behind bpf_core_field_exists */
	int pid;
	int tgid;
	const struct cred *real_cred;   /* the task's own credentials (not override_creds') */
	const struct cred *cred;        /* the credentials in force (override_creds') */
	struct task_struct *group_leader;
	struct task_struct *real_parent;
	struct nsproxy *nsproxy;
	struct fs_struct *fs;
	struct mm_struct *mm;
	struct css_set *cgroups;
};

struct sock_common {
	__be32 skc_rcv_saddr;           /* the bound IPv4 source address, 0 when none */
	unsigned short skc_num;         /* the bound local port (inet_num), 0 before a bind */
	unsigned short skc_family;
};

struct socket;
struct sock {
	struct sock_common __sk_common;
	u16 sk_type;
	u16 sk_protocol;
	struct socket *sk_socket;
};

struct socket {
	short type;
	struct sock *sk;
};

struct sockaddr_un {
	sa_family_t sun_family;
	char sun_path[108];
};

/* AF_UNIX: a peer's bound name. `path` is set for a pathname socket (its inode in the file
 * system); an abstract name lives only in `addr` (sun_path starting with a NUL byte). */
struct unix_address {
	int len;
	struct sockaddr_un name[];
};

struct unix_sock {
	struct sock sk;
	struct unix_address *addr;
	struct path path;
};

struct super_block {
	struct dentry *s_root;
	u32 s_dev;                      /* dev_t, the kernel's encoding: major << 20 | minor */
};

/* SIGIO: fcntl(F_SETOWN) records the owner; the signal goes out from any context later */
struct pid;
struct fown_struct {
	struct pid *pid;
	int signum;
};

struct hw_perf_event {
	struct task_struct *target;
};

struct perf_event {
	struct hw_perf_event hw;
	struct perf_event *parent;      /* set for an event inherited at fork */
};

struct sockaddr {
	sa_family_t sa_family;
	char sa_data[14];
};

struct msghdr {
	void *msg_name;
	int msg_namelen;
};

/* x86-64: the system call a task is in (for hooks that cannot tell which call reached them) */
struct pt_regs {
	unsigned long orig_ax;
};

#pragma clang attribute pop

/* UAPI layouts: fixed by the ABI, read with bpf_probe_read_kernel into these. */
struct policyc_sockaddr_in {
	sa_family_t sin_family;
	__be16 sin_port;
	__be32 sin_addr;
	unsigned char pad[8];
};

struct policyc_sockaddr_in6 {
	sa_family_t sin6_family;
	__be16 sin6_port;
	__be32 sin6_flowinfo;
	unsigned char sin6_addr[16];
	__u32 sin6_scope_id;
};

#endif
