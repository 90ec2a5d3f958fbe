/* What every policy object shares: maps, the subject test, path resolution, the DFA walk,
 * and how a decision becomes a return code and an event.
 *
 * Rules are data (maps filled from NAME.manifest.json at load), never code: the cost of an
 * event does not grow with the number of rules and a rule change needs no recompile.
 */
#ifndef POLICYC_POLICY_H
#define POLICYC_POLICY_H

#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "event.h"

#define ENOMEM 12
#define AF_UNSPEC 0
#define AF_INET 2
#define AF_INET6 10
#define FMODE_READ 0x1
#define FMODE_WRITE 0x2
#define FMODE_EXEC 0x20
#define __FMODE_EXEC 0x20   /* the open flag execve and uselib open with */
#define O_TRUNC 01000
#define O_APPEND 02000
#define PROT_EXEC 0x4
#define VM_EXEC 0x4
#define MNT_INTERNAL 0x4000
#define FMODE_NOACCOUNT 0x20000000  /* kernel-internal opens (overlayfs' real files) */
#define MNT_NS_INTERNAL ((struct mnt_namespace *)-22)  /* ERR_PTR(-EINVAL) */

/* Longest walk: MAX_COMPONENTS (abi.h) names, and the mounts crossed on top. */
#define MAX_WALK_STEPS (MAX_COMPONENTS + 256)

/* The constants, flags and map value structs Python shares (config, dfa_state, verdict,
 * net_key, net_slice, net_entry, simple_verdict, subject_state, task_rule, rule_limit) are
 * in abi.h, generated from policyc/abi.py. */

/* One per-CPU value: a per-CPU array's value must stay under 32 KiB (PCPU_MIN_UNIT_SIZE), so
 * the names' lengths are 16 bits (a name is at most 255 bytes). */
struct scratch {
	struct policyc_event ev;
	__u32 on_behalf_of;   /* the event's pid and tgid when not the current task's (SIGIO's owner) */
	const unsigned char *names[MAX_COMPONENTS];
	__u16 lens[MAX_COMPONENTS];
};

/* max_entries of 1 are placeholders: the loader sets the real sizes from the manifest. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct policyc_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dfa_state);
} dfa_states SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dfa_classes);
} dfa_classes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dfa_edge);
} dfa_comb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct verdict);
} verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, __u8);
} subject_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, POLICYC_N_SIMPLE);
	__type(key, __u32);
	__type(value, struct simple_verdict);
} simple_verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct subject_state);
} subjects SEC(".maps");

/* Exec transitions (`allow exec "/usr/bin/x" as policy NAME | as unconfined`): the rule's
 * transition by rule id. Looked up only when config says the policy has any. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_transition);
} exec_transitions SEC(".maps");

/* One map for every loaded policy (the loader reuses PIN_ROOT-shared/handoff): the policy
 * whose rule allowed the exec in progress writes whom it hands the task to; at the commit the
 * policy of that id takes the task. Every object has it, since any policy may be named. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct handoff);
} handoff SEC(".maps");

/* policy_id -> 1 for each loaded policy (shared too, written by the loader): an exec handed
 * to a policy that is not loaded fails closed instead of leaving the task ungoverned. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LOADED_POLICIES_MAX);
	__type(key, __u64);
	__type(value, __u8);
} loaded_policies SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DEFAULT_RINGBUF_BYTES);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, POLICYC_N_HOOKS);
	__type(key, __u32);
	__type(value, struct policyc_counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

/* A hook argument the kernel may pass as NULL, read as a plain number. Since 6.x the verifier
 * treats an LSM program's pointer arguments as trusted and never NULL, so a NULL test on the
 * argument itself can be pruned as dead code (6.12 did so to task_kill's `cred`: no signal rule
 * decided anything there). bpf_get_func_arg hands back a raw value the verifier cannot assume. */
static __always_inline __u64 raw_arg(void *ctx, __u32 n)
{
	__u64 v = 0;
	if (bpf_get_func_arg(ctx, n, &v))
		return 0;
	return v;
}

/* The x86-64 system call the current task is in, or -1 where pt_regs has no orig_ax (another
 * architecture: the callers' decisions then do not happen, and `check` says so). For the
 * few hooks that cannot tell which call reached them. */
static __always_inline long current_syscall(void)
{
	if (!bpf_core_field_exists(struct pt_regs, orig_ax))
		return -1;
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	return BPF_CORE_READ(regs, orig_ax);
}

static __always_inline struct policyc_config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

static __always_inline struct scratch *get_scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch_map, &zero);
}

static __always_inline void count(__u32 hook, int which)
{
	struct policyc_counters *c = bpf_map_lookup_elem(&counters, &hook);
	if (!c)
		return;
	switch (which) {
	case 0: c->checked++; break;
	case 1: c->denied++; break;
	case 2: c->audited++; break;
	case 3: c->failed_closed++; break;
	default: c->dropped++; break;
	}
}

/* ---- subjects ----------------------------------------------------------------------------- */

/* Is the current task governed by this policy? Marked tasks (exec of a subject executable, or
 * a descendant of one), `subject all`, or a task in (or below) a subject cgroup.
 *
 * Cgroup membership is sticky: the first time a task is seen in a subject cgroup it is marked
 * (SUBJECT_STICKY) and stays governed wherever it moves, and task_alloc hands the mark to its
 * children (clone3(CLONE_INTO_CGROUP) starts a child in another cgroup with no open or write
 * of cgroup.procs). `except cgroup` therefore exempts tasks that start inside the excepted
 * cgroup, not a governed task that moves into it. `ignore_exception`: decide as if no `except
 * exe` held (an excepted program's own exec of another program is decided). */
static __always_inline int governed_ex(struct policyc_config *cfg, int ignore_exception)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct subject_state *s = bpf_task_storage_get(&subjects, task, 0, 0);
	__u32 state = s ? s->state : 0;
	if (state & SUBJECT_LEFT)
		return 0;  /* an `as policy`/`as unconfined` exec let it leave, whatever its cgroup */
	if ((state & SUBJECT_EXCEPTED) && !ignore_exception)
		return 0;
	if (state & SUBJECT_STICKY)
		return 1;
	if (cfg->flags & (CFG_SUBJECT_CGROUP | CFG_EXCEPT_CGROUP)) {
		int in_cgroup = 0;
		for (int level = 0; level < CGROUP_LEVELS + 1; level++) {
			if (level > cfg->cgroup_levels)
				break;
			__u64 id = bpf_get_current_ancestor_cgroup_id(level);
			if (!id)
				break;
			__u8 *kind = bpf_map_lookup_elem(&subject_cgroups, &id);
			if (kind && *kind == CGROUP_EXCEPT)
				return 0;
			if (kind && *kind == CGROUP_SUBJECT)
				in_cgroup = 1;
		}
		if (in_cgroup) {
			s = bpf_task_storage_get(&subjects, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
			if (s)
				s->state |= SUBJECT_GOVERNED | SUBJECT_STICKY;
			return 1;  /* governed now even if the mark could not be stored */
		}
	}
	return (state & SUBJECT_GOVERNED) || (cfg->flags & CFG_SUBJECT_ALL);
}

static __always_inline int governed(struct policyc_config *cfg)
{
	return governed_ex(cfg, 0);
}

/* ---- paths -------------------------------------------------------------------------------- */

/* WALK_INTERNAL: the object lives on a kernel-private clone of a mount (overlayfs opens its
 * real directories and files that way, after the hook already decided the overlay path):
 * not the process's doing, and not decided again.
 * WALK_DISCONNECTED: a dentry with no parent that is neither its mount's root nor on an
 * internal mount: open_by_handle_at(2) of a file whose dentry was not cached (exportfs leaves
 * non-directories disconnected), or a file outside a bind mount's subtree reached by handle.
 * Its leaf alone would name it as if it were a pipe: it fails closed instead. */
enum walk_status { WALK_OK = 0, WALK_PSEUDO, WALK_TOO_LONG, WALK_DETACHED, WALK_FAULT, WALK_INTERNAL,
		   WALK_DISCONNECTED };

struct walk_ctx {
	struct dentry *dentry;
	struct mount *mnt;
	struct dentry *mnt_root;   /* c->mnt's root dentry, read once per mount crossed */
	struct scratch *s;
	__u32 n;
	int status;
	int done;
};

static __always_inline struct vfsmount *mount_vfs(struct mount *m)
{
	return (struct vfsmount *)((char *)m + bpf_core_field_offset(struct mount, mnt));
}

static __always_inline struct mount *real_mount(struct vfsmount *v)
{
	return (struct mount *)((char *)v - bpf_core_field_offset(struct mount, mnt));
}

/* A dentry's parent and name as the kernel lays them out: `d_parent` then `d_name` (hash, len,
 * name). Read with one probe read where the running kernel has them side by side (every
 * kernel we know: the fields have been neighbours since 2.6), else field by field. */
struct dentry_up {
	struct dentry *parent;
	__u32 hash;
	__u32 len;
	const unsigned char *name;
};

static __always_inline int read_dentry_up(struct dentry *d, struct dentry_up *up)
{
	if (bpf_core_field_offset(struct dentry, d_name) == bpf_core_field_offset(struct dentry, d_parent) + 8 &&
	    bpf_core_field_offset(struct qstr, len) == 4 && bpf_core_field_offset(struct qstr, name) == 8)
		return bpf_probe_read_kernel(up, sizeof(*up), (char *)d + bpf_core_field_offset(struct dentry, d_parent));
	up->parent = BPF_CORE_READ(d, d_parent);
	up->len = BPF_CORE_READ(d, d_name.len);
	up->name = BPF_CORE_READ(d, d_name.name);
	return 0;
}

/* One step up: record this dentry's name, or cross to the parent mount. The walk goes to the
 * root of the task's mount namespace, not to its chroot: a chroot cannot rename a file. */
/* bpf_loop callbacks take `void *`: 6.1's verifier rejects a typed struct pointer there.
 * BPF_CORE_READ's first argument is always a plain local: an expression would become part
 * of the relocation (and our own structs are not in the kernel's BTF). */
static long walk_up(__u32 i, void *ctx)
{
	struct walk_ctx *c = ctx;
	struct dentry *d = c->dentry;
	if (d == c->mnt_root) {
		struct mount *m = c->mnt;
		struct mount *parent = BPF_CORE_READ(m, mnt_parent);
		if (parent == m || !parent) {
			c->done = 1;
			return 1;
		}
		c->dentry = BPF_CORE_READ(m, mnt_mountpoint);
		c->mnt = parent;
		struct vfsmount *pv = mount_vfs(parent);
		c->mnt_root = BPF_CORE_READ(pv, mnt_root);
		return 0;
	}
	struct dentry_up up = {};
	if (read_dentry_up(d, &up)) {
		c->status = WALK_FAULT;
		c->done = 1;
		return 1;
	}
	if (up.parent == d || !up.parent) {
		/* a dentry with no parent that is not its mount's root: a pseudo file (pipe, memfd,
		 * anonymous inode). Its name alone is its path. */
		c->status = WALK_PSEUDO;
	}
	if (c->n >= MAX_COMPONENTS) {
		c->status = WALK_TOO_LONG;
		c->done = 1;
		return 1;
	}
	__u32 n = c->n & (MAX_COMPONENTS - 1);
	c->s->names[n] = up.name;
	c->s->lens[n] = up.len;
	c->n++;
	if (c->status == WALK_PSEUDO) {
		c->done = 1;
		return 1;
	}
	c->dentry = up.parent;
	return 0;
}

struct build_ctx {
	struct scratch *s;
	__u32 n;
	__u32 off;
	__u32 base;   /* where in the event's tail this path starts: 0 for the object's */
	int status;
	int pseudo;
};

/* Write the recorded names root first: "/a/b/c" (a pseudo file: its bare name), at
 * path[base...]. Offsets are masked with POLICYC_TAIL_MASK for the verifier; the length check
 * keeps each path under POLICYC_PATH_MAX and base is at most three of those. */
static long build_path(__u32 i, void *ctx)
{
	struct build_ctx *c = ctx;
	if (i >= c->n)
		return 1;
	__u32 idx = (c->n - 1 - i) & (MAX_COMPONENTS - 1);
	__u32 len = c->s->lens[idx];
	/* each path under POLICYC_PATH_MAX, and all of the tail before POLICYC_TAIL_MASK */
	if (len > 255 || c->off + 1 + len > POLICYC_PATH_MAX - 1 ||
	    c->base + c->off + 1 + len >= POLICYC_TAIL_MASK) {
		c->status = WALK_TOO_LONG;
		return 1;
	}
	if (!c->pseudo) {
		c->s->ev.path[(c->base + c->off) & POLICYC_TAIL_MASK] = '/';
		c->off++;
	}
	if (bpf_probe_read_kernel(&c->s->ev.path[(c->base + c->off) & POLICYC_TAIL_MASK], len & 255,
				  c->s->names[idx])) {
		c->status = WALK_FAULT;
		return 1;
	}
	c->off += len;
	return 0;
}

static __always_inline int resolve_path_at(struct scratch *s, struct dentry *dentry, struct vfsmount *vfs,
					   __u32 base, __u32 *len_out);
__noinline __u64 walk_path_at(struct scratch *s, __u64 dentry_addr, __u64 vfs_addr, __u32 base);

/* Resolve (dentry, vfsmount) into s->ev.path / path_len. Returns a walk_status. */
static __always_inline int resolve_path(struct scratch *s, struct dentry *dentry, struct vfsmount *vfs)
{
	__u32 len = 0;
	int status = resolve_path_at(s, dentry, vfs, 0, &len);
	s->ev.path_len = len;
	return status;
}

/* Resolve (dentry, vfsmount) into the event's tail at `base`, NUL-terminated; its length
 * (without the NUL) in *len_out. Returns a walk_status. */
static __always_inline int resolve_path_at(struct scratch *s, struct dentry *dentry, struct vfsmount *vfs,
					   __u32 base, __u32 *len_out)
{
	__u64 addr[2] = {};
	/* verifier: a global function's number argument must be a number; a hook's typed
	 * pointer is read back through a probe read of the stack, which makes it one */
	const void *pair[2] = { dentry, vfs };
	bpf_probe_read_kernel(addr, sizeof(addr), pair);
	__u64 r = walk_path_at(s, addr[0], addr[1], base);
	*len_out = r >> 32;
	return (int)(__u32)r;
}

#define WALK_RESULT(status, len) (((__u64)(len) << 32) | (__u32)(status))

/* The walk itself, a global function: the verifier checks it once per program, on its own,
 * not again at each of its call sites (the hook's own path, event_identity's executable and
 * parent executable), each of which took it through both bpf_loop callbacks again. On 6.1
 * the every-family object verified 820,512 instructions before (about 11,000 of them in each
 * program's event_identity) and 324,902 after; its load went from 7.4 to 3.1 s. Its result
 * packs the length above the status (WALK_RESULT): no pointer to the caller's stack. */
__noinline __u64 walk_path_at(struct scratch *s, __u64 dentry_addr, __u64 vfs_addr, __u32 base)
{
	if (!s)
		return WALK_FAULT;
	struct dentry *dentry = (struct dentry *)dentry_addr;
	struct vfsmount *vfs = (struct vfsmount *)vfs_addr;
	/* verifier: the walk's and the build's contexts share their stack bytes (a bpf_loop
	 * callback's context lives on the stack, and this frame sits under a program's, an
	 * event_identity's and a callback's within the 512 bytes all frames share) */
	union { struct walk_ctx w; struct build_ctx b; } u = { .w = { .dentry = dentry, .mnt = real_mount(vfs), .s = s } };
	struct walk_ctx *wp = &u.w;
	s->ev.path[base & POLICYC_TAIL_MASK] = 0;
	if (!dentry || !vfs)
		return WALK_FAULT;
	wp->mnt_root = BPF_CORE_READ(vfs, mnt_root);
	bpf_loop(MAX_WALK_STEPS, walk_up, wp, 0);
	if (!wp->done)
		return WALK_TOO_LONG;
	if (wp->status == WALK_TOO_LONG || wp->status == WALK_FAULT)
		return wp->status;
	/* The walk ended at a parentless dentry (a pseudo file's own) or at a root mount. Both
	 * are what they seem only on an internal mount (pipefs, sockfs, anon inodes, shmem's
	 * memfds): elsewhere the walk ended at a root mount that is not the namespace's (a
	 * detached tree: open_tree(OPEN_TREE_CLONE)) or at a disconnected dentry, neither of
	 * which can be named, and both fail closed. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct mount *ns_root = BPF_CORE_READ(task, nsproxy, mnt_ns, root);
	if (wp->status == WALK_PSEUDO || wp->mnt != ns_root) {
		struct vfsmount *root_vfs = mount_vfs(wp->mnt);
		struct mount *root_mnt = wp->mnt;
		int flags = BPF_CORE_READ(root_vfs, mnt_flags);
		struct mnt_namespace *ns = BPF_CORE_READ(root_mnt, mnt_ns);
		if (!(flags & MNT_INTERNAL)) {
			if (ns == MNT_NS_INTERNAL)
				return WALK_INTERNAL;
			return wp->status == WALK_PSEUDO ? WALK_DISCONNECTED : WALK_DETACHED;
		}
		wp->status = WALK_PSEUDO;
	}
	__u32 n = wp->n;
	int pseudo = wp->status == WALK_PSEUDO;
	struct build_ctx *bp = &u.b;
	*bp = (struct build_ctx){ .s = s, .n = n, .base = base, .pseudo = pseudo };
	if (bp->pseudo && bp->n == 0) {
		bp->off = 0;  /* the root of an internal mount: no name at all */
	} else if (bp->pseudo) {
		/* a pseudo file is named by its leaf alone, names[0] ("memfd:x", "pipe:") */
		__u32 len = s->lens[0];
		if (len > 255 || base + len >= POLICYC_TAIL_MASK)
			return WALK_TOO_LONG;
		/* verifier: clang drops `len & 255` below as redundant after the test and spills
		 * len unbounded; the barrier keeps the mask */
		barrier_var(len);
		if (bpf_probe_read_kernel(&s->ev.path[base & POLICYC_TAIL_MASK], len & 255, s->names[0]))
			return WALK_FAULT;
		bp->off = len;
	} else {
		bpf_loop(MAX_COMPONENTS, build_path, bp, 0);
		if (bp->status)
			return bp->status;
		if (bp->off == 0) {
			s->ev.path[base & POLICYC_TAIL_MASK] = '/';
			bp->off = 1;
		}
	}
	s->ev.path[(base + bp->off) & POLICYC_TAIL_MASK] = 0;
	return WALK_RESULT(bp->pseudo ? WALK_PSEUDO : WALK_OK, bp->off);
}

/* The fast path for a file a hook hands over whole (file_open): bpf_d_path, the kernel's own
 * d_path, costs about a fifth of the walk above per component. It names the file relative
 * to the task's root (fs->root), the walk relative to the mount namespace's root, and the
 * two differ for chroot, detached and internal mounts, unlinked files (" (deleted)") and
 * pseudo files. So it is used only where they give the same bytes, which costs a few reads:
 *   - the file's mount is in the task's mount namespace (not detached, not internal: no
 *     pseudo file, no other namespace's tree);
 *   - the file's dentry is hashed (not unlinked: d_path would append " (deleted)"), has a
 *     parent unless it is its mount's root (not disconnected), and its mount shows the
 *     whole filesystem (no file reached by handle outside a bind mount's subtree), see
 *     dentry_unlike_d_path;
 *   - the task's root is the namespace's "/": its dentry is its mount's root and each mount
 *     from there up to the namespace's root is mounted on its parent's root (a chroot, or a
 *     root below a bind mount, fails this and takes the walk);
 *   - the name fits (bpf_d_path fails with ENAMETOOLONG otherwise: the walk then decides,
 *     failing closed as it does).
 * Anything else takes the walk, which decides every case by itself. */
#define ROOT_CHAIN_MAX 8

/* A mount's parent, mountpoint and own root dentry, side by side in struct mount (mnt_parent,
 * mnt_mountpoint, then the vfsmount whose first field is mnt_root): one probe read where the
 * running kernel lays them out so, else three. */
struct mount_up {
	struct mount *parent;
	struct dentry *mountpoint;
	struct dentry *root;
};

static __always_inline int read_mount_up(struct mount *m, struct mount_up *up)
{
	if (bpf_core_field_offset(struct mount, mnt_mountpoint) == bpf_core_field_offset(struct mount, mnt_parent) + 8 &&
	    bpf_core_field_offset(struct mount, mnt) == bpf_core_field_offset(struct mount, mnt_parent) + 16 &&
	    bpf_core_field_offset(struct vfsmount, mnt_root) == 0)
		return bpf_probe_read_kernel(up, sizeof(*up), (char *)m + bpf_core_field_offset(struct mount, mnt_parent));
	struct vfsmount *v = mount_vfs(m);
	up->parent = BPF_CORE_READ(m, mnt_parent);
	up->mountpoint = BPF_CORE_READ(m, mnt_mountpoint);
	up->root = BPF_CORE_READ(v, mnt_root);
	return 0;
}

/* Would d_path name the dentry other than the walk does? When
 *   - the mount shows a subtree of its filesystem (a bind mount of a directory): a file
 *     opened by handle (open_by_handle_at with CAP_DAC_READ_SEARCH decodes any inode of the
 *     filesystem) may lie outside that subtree, and d_path names it from the filesystem's
 *     root while the walk fails it closed (WALK_DISCONNECTED). Only a leaf-to-root walk
 *     could tell; such mounts take the walk;
 *   - the dentry is unlinked (d_unlinked: unhashed and not a root; d_path appends
 *     " (deleted)");
 *   - the dentry is disconnected (parentless though not its mount's root, see
 *     WALK_DISCONNECTED; d_path gives a partial path).
 * Typed loads (see TYPED LOADS): a field that cannot be read reads as 0, and every 0 here
 * answers "unlike", which sends the file to the walk. */
static __always_inline int dentry_unlike_d_path(struct dentry *d, struct vfsmount *vfs)
{
	struct dentry *root = vfs->mnt_root;
	struct super_block *sb = vfs->mnt_sb;
	if (!sb || !root || sb->s_root != root)
		return 1;
	if (d->d_parent == d)
		return d != root;
	return !d->d_hash.pprev;
}

/* TYPED LOADS. In the fast path below, fields are read by plain loads through pointers the
 * verifier knows by their BTF type (the hook's argument, bpf_get_current_task_btf(), and
 * pointers loaded from either): the verifier turns each into a probe load that the JIT
 * inlines, a few instructions that read 0 at a NULL or faulting address. BPF_CORE_READ calls
 * the bpf_probe_read_kernel helper instead, 80 to 120 guest instructions a field (6.1,
 * icount; docs/benchmarks.md). The CO-RE offsets are the same either way (vmlinux_min.h is
 * preserve_access_index). struct mount is still read by probe reads: it is reached by
 * container_of from a vfsmount (real_mount), and the verifier refuses a load at a negative
 * offset from a typed pointer; kernels before 6.2 have no bpf_rdonly_cast to retype it. */
static __always_inline int dpath_names_as_walk(struct task_struct *task, struct dentry *d, struct vfsmount *vfs)
{
	struct nsproxy *nsp = task->nsproxy;
	struct mnt_namespace *ns = nsp ? nsp->mnt_ns : 0;
	struct mount *m = real_mount(vfs);
	if (!ns || BPF_CORE_READ(m, mnt_ns) != ns)
		return 0;
	if (dentry_unlike_d_path(d, vfs))
		return 0;
	struct fs_struct *fs = task->fs;
	if (!fs)
		return 0;
	struct path root = { .dentry = fs->root.dentry, .mnt = fs->root.mnt };
	if (!root.mnt || root.dentry != root.mnt->mnt_root)
		return 0;
	/* the namespace's root mount is a typed pointer (mnt_namespace.root): its own root
	 * dentry is a typed load; the mounts between it and the task's root are reached by
	 * container_of and read by probe reads, one per mount */
	struct mount *ns_root = ns->root;
	struct mount *r = real_mount(root.mnt);
	if (r == ns_root)
		return 1;
	if (!ns_root)
		return 0;
	struct dentry *ns_root_dentry = ns_root->mnt.mnt_root;
	struct mount_up up = {};
	if (read_mount_up(r, &up))
		return 0;
	/* each mount from the task's root up sits on its parent's root dentry; the common case
	 * (a system booted through an initramfs: the root mount sits on rootfs, the namespace's
	 * root) is one probe read */
	for (int i = 0; i < ROOT_CHAIN_MAX; i++) {
		struct mount *p = up.parent;
		if (!p || p == r)
			return 0;
		if (p == ns_root)
			return up.mountpoint == ns_root_dentry;
		struct mount_up pu = {};
		if (read_mount_up(p, &pu) || up.mountpoint != pu.root)
			return 0;
		r = p;
		up = pu;
	}
	return 0;
}

/* Resolve the file of a hook that may call bpf_d_path (file_open): the fast path where it
 * names the file as the walk would, else the walk. Returns a walk_status. */
static __always_inline int resolve_file(struct scratch *s, struct file *file)
{
	struct dentry *d = file->f_path.dentry;   /* typed loads (TYPED LOADS, above) */
	struct vfsmount *vfs = file->f_path.mnt;
	if (d && vfs && dpath_names_as_walk(bpf_get_current_task_btf(), d, vfs)) {
		long n = bpf_d_path(&file->f_path, (char *)s->ev.path, POLICYC_PATH_MAX);
		if (n > 1 && n <= POLICYC_PATH_MAX && s->ev.path[0] == '/') {
			s->ev.path_len = (n - 1) & (POLICYC_PATH_MAX - 1);
			return WALK_OK;
		}
	}
	return resolve_path(s, d, vfs);
}

/* ---- the DFA ------------------------------------------------------------------------------ */

/* Per byte: the state (an array lookup, which the JIT inlines), the byte's class (a load),
 * the comb slot (an array lookup): no helper call. The walk stops in an absorbing state (the
 * dead state 0, or a `dir/**` that has decided for good): the bytes after it change nothing. */
struct dfa_ctx {
	struct scratch *s;
	struct dfa_classes *cls;
	__u32 len;
	__u32 state;
	int fault;
};

/* One byte at `i`: 0 to go on, 1 when the walk is over (the path's end, an absorbing state,
 * a map fault). */
static __always_inline int dfa_step(struct dfa_ctx *c, __u32 i)
{
	if (i >= c->len)
		return 1;
	__u32 state = c->state;
	struct dfa_state *st = bpf_map_lookup_elem(&dfa_states, &state);
	if (!st) {
		c->fault = 1;
		return 1;
	}
	if (st->flags & DFA_ABSORBING)
		return 1;
	__u8 b = c->s->ev.path[i & (POLICYC_PATH_MAX - 1)];
	__u32 slot = st->base + c->cls->of[b];
	struct dfa_edge *e = bpf_map_lookup_elem(&dfa_comb, &slot);
	if (e && e->check == state) {
		c->state = e->next;
		return 0;
	}
	__u32 base_class = b == '/' ? 0 : ((b & 0xC0) == 0x80 ? 1 : 2);
	c->state = st->next[base_class];
	return 0;
}

/* DFA_BYTES_PER_CALL bytes a callback: each bpf_loop iteration is a call of the callback
 * (a frame set up and torn down, about as many instructions as a byte's own work), so the
 * loop takes the bytes in fours. */
#define DFA_BYTES_PER_CALL 4
static long dfa_bytes(__u32 i, void *ctx)
{
	struct dfa_ctx *c = ctx;
	__u32 at = i * DFA_BYTES_PER_CALL;
	if (dfa_step(c, at) || dfa_step(c, at + 1) || dfa_step(c, at + 2) || dfa_step(c, at + 3))
		return 1;
	return 0;
}

/* Walk the resolved path; returns the final state, or -1 on a map fault. */
static __always_inline long dfa_walk(struct scratch *s)
{
	__u32 zero = 0;
	struct dfa_ctx c = { .s = s, .len = s->ev.path_len, .state = 1 };
	c.cls = bpf_map_lookup_elem(&dfa_classes, &zero);
	if (!c.cls)
		return -1;
	bpf_loop(POLICYC_PATH_MAX / DFA_BYTES_PER_CALL, dfa_bytes, &c, 0);
	if (c.fault)
		return -1;
	return c.state;
}

/* ---- decisions and events ----------------------------------------------------------------- */

/* Start the scratch event: what the decision itself needs. Who caused it (pid, uid, comm,
 * cgroup, time, executable) is filled by event_identity when an event is sent, so a decision
 * that sends none (every allowed operation) never reads it. */
static __always_inline void event_subject(struct scratch *s, __u8 hook, __u8 family, __u8 op)
{
	struct policyc_event *ev = &s->ev;
	ev->hook = hook;
	ev->family = family;
	ev->op = op;
	ev->aux = 0;
	ev->target_pid = 0;
	ev->port = 0;
	ev->proto = 0;
	ev->flags = 0;  /* EVENT_RECEIVE is the task family's, set after this */
	s->on_behalf_of = 0;
}

/* What a denial returns: EACCES for file, exec and net, EPERM for the privilege families
 * (abi.h's POLICYC_EACCES_FAMILIES, from policyc/abi.py, which says why). */
static __always_inline int deny_errno(__u8 family)
{
	return (((__u64)POLICYC_EACCES_FAMILIES >> (family & 63)) & 1) ? -EACCES : -EPERM;
}

/* Turn a decision into a return code, sending the event for deny and audit. `decision` is
 * already folded with the policy's mode for rule verdicts; fail-closed reasons fold here. */
static __always_inline int apply_ex(struct policyc_config *cfg, struct scratch *s, __u8 decision,
				    __u32 rule_id, __u8 reason, int quiet);

static __always_inline int apply(struct policyc_config *cfg, struct scratch *s, __u8 decision,
				 __u32 rule_id, __u8 reason)
{
	return apply_ex(cfg, s, decision, rule_id, reason, 0);
}

/* Events the ring buffer had no room for, per rule id (0: a default or fail-closed decision).
 * `policyc audit` turns growth into `dropped` records; a rule id that finds the map full (past
 * RULE_DROPS_MAX) is still counted per hook in `counters` (the reader reports the difference
 * as unattributed). */
#define POLICYC_MAP_PERCPU_HASH 5  /* BPF_MAP_TYPE_PERCPU_HASH (not in vmlinux_min.h) */
#define POLICYC_NOEXIST 1          /* BPF_NOEXIST */
struct {
	__uint(type, POLICYC_MAP_PERCPU_HASH);
	__uint(max_entries, RULE_DROPS_MAX);
	__type(key, __u32);
	__type(value, __u64);
} rule_drops SEC(".maps");

/* Events a rule's `limit N/UNIT` held back, per rule id: reported as `suppressed` records. At
 * most RULE_SUPPRESSED_MAX rules carry a limit (`policyc build` refuses more), so the map
 * never fills and every suppressed event is counted. */
struct {
	__uint(type, POLICYC_MAP_PERCPU_HASH);
	__uint(max_entries, RULE_SUPPRESSED_MAX);
	__type(key, __u32);
	__type(value, __u64);
} rule_suppressed SEC(".maps");

/* Add one to rule_id's per-CPU counter in `map` (rule_drops, rule_suppressed). */
static __always_inline void count_per_rule(void *map, __u32 rule_id)
{
	__u64 one = 1;
	__u64 *n = bpf_map_lookup_elem(map, &rule_id);
	if (n) {
		(*n)++;  /* per-CPU value: no other writer */
		return;
	}
	/* first count of this rule on any CPU: other CPUs' slots start at 0 */
	if (bpf_map_update_elem(map, &rule_id, &one, POLICYC_NOEXIST)) {
		n = bpf_map_lookup_elem(map, &rule_id);  /* created meanwhile elsewhere */
		if (n)
			(*n)++;
	}
}

/* `limit N/UNIT`, indexed by rule id, the default's at 0 (filled at load; struct rule_limit
 * in abi.h). The limit only ever withholds the event, never changes the decision. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rule_limit);
} rule_limits SEC(".maps");

/* 1: rule_id's event may be sent now; 0: its limit is used up for this window. */
static __always_inline int within_limit(__u32 rule_id)
{
	struct rule_limit *l = bpf_map_lookup_elem(&rule_limits, &rule_id);
	if (!l || !l->per_window)
		return 1;
	__u64 now = bpf_ktime_get_boot_ns();
	int ok;
	bpf_spin_lock(&l->lock);
	if (now - l->window_start >= l->window_ns) {
		l->window_start = now;
		l->sent = 0;
	}
	ok = l->sent < l->per_window;
	if (ok)
		l->sent++;
	bpf_spin_unlock(&l->lock);
	return ok;
}

/* ---- who decided: the event's identity ---------------------------------------------------- */

/* Name an executable file into the event's tail at `base` (its length in *len, 0 when it has
 * none); returns its ID_* flags, shifted for the parent by the caller. Reading another task's
 * mm (the parent's) takes no lock: every read is a probe read, so a parent that execs or exits
 * meanwhile gives a fault (flagged unresolved), never a crash. */
static __always_inline __u16 exe_identity(struct scratch *s, struct file *f, __u32 base, __u32 *len)
{
	*len = 0;
	s->ev.path[base & POLICYC_TAIL_MASK] = 0;
	if (!f)
		return ID_NO_EXE;
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	struct vfsmount *m = BPF_CORE_READ(f, f_path.mnt);
	__u16 flags = 0;
	/* verifier: the walk's own global function, called with numbers (read by probe reads
	 * already), its length packed into the result: no stack slot for it in this frame */
	__u64 r = walk_path_at(s, (__u64)d, (__u64)m, base);
	int status = (int)(__u32)r;
	*len = r >> 32;
	if (status == WALK_PSEUDO) {
		flags |= ID_EXE_PSEUDO;
	} else if (status != WALK_OK) {
		flags |= ID_EXE_UNRESOLVED;
		*len = 0;
		s->ev.path[base & POLICYC_TAIL_MASK] = 0;
	}
	struct inode *inode = BPF_CORE_READ(d, d_inode);
	if (status != WALK_PSEUDO && !BPF_CORE_READ(inode, __i_nlink))
		flags |= ID_EXE_DELETED;
	return flags;
}

/* Fill who caused the event (pid, uid, comm, cgroup, time) and its identity and tail after the
 * object's path: the executable's path as
 * the kernel resolves it (the same walk as rule paths), the parent's, and the ids a record
 * needs to survive pid reuse. Run only for an event that is sent: a decision that sends
 * nothing pays nothing. Returns the tail's length (path, exe and parent exe with their NULs).
 * A global function (verifier: checked once, on its own, not again at every apply() site of
 * every program: static, the walks' states made programs exceed the 1M-instruction budget). */
__noinline __u32 event_identity(struct scratch *s)
{
	if (!s)
		return 0;   /* verifier: a global function's pointer argument may be NULL */
	struct policyc_event *ev = &s->ev;
	struct task_struct *task = bpf_get_current_task_btf();
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	__u16 flags = ID_ARGS_ABSENT;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	ev->ts_boot_ns = bpf_ktime_get_boot_ns();
	ev->cgroup_id = bpf_get_current_cgroup_id();
	ev->pid = s->on_behalf_of ? s->on_behalf_of : (__u32)pid_tgid;
	ev->tgid = s->on_behalf_of ? s->on_behalf_of : pid_tgid >> 32;
	ev->ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->uid = (__u32)uid_gid;
	ev->gid = uid_gid >> 32;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	ev->start_boot_ns = BPF_CORE_READ(leader, start_boottime);
	ev->exec_count = BPF_CORE_READ(leader, self_exec_id);
	ev->euid = BPF_CORE_READ(task, cred, euid.val);
	if (bpf_core_field_exists(struct task_struct, loginuid)) {
		ev->loginuid = BPF_CORE_READ(task, loginuid.val);
	} else {
		ev->loginuid = (__u32)-1;
		flags |= ID_NO_LOGINUID;
	}
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	/* the path's inode, what stat() of `exe` shows (on overlayfs, f_inode is the layer's) */
	struct inode *inode = BPF_CORE_READ(exe, f_path.dentry, d_inode);
	ev->exe_ino = exe ? BPF_CORE_READ(inode, i_ino) : 0;
	ev->exe_dev = exe ? BPF_CORE_READ(inode, i_sb, s_dev) : 0;
	__u32 base = (ev->path_len & (POLICYC_PATH_MAX - 1)) + 1;
	__u32 len = 0;
	flags |= exe_identity(s, exe, base, &len);
	len &= POLICYC_PATH_MAX - 1;
	ev->exe_len = len;
	base += len + 1;
	struct file *pexe = BPF_CORE_READ(task, real_parent, mm, exe_file);
	flags |= exe_identity(s, pexe, base, &len) << 4;  /* ID_EXE_* << 4 == ID_PARENT_* */
	len &= POLICYC_PATH_MAX - 1;
	ev->parent_exe_len = len;
	base += len + 1;
	ev->args_len = 0;
	ev->id_flags = flags;
	return base;
}

/* `quiet`: decide and count, but send no event (capability probes marked NOAUDIT). */
static __always_inline int apply_ex(struct policyc_config *cfg, struct scratch *s, __u8 decision,
				    __u32 rule_id, __u8 reason, int quiet)
{
	struct policyc_event *ev = &s->ev;
	__u32 hook = ev->hook;
	int audit_mode = cfg->flags & CFG_MODE_AUDIT;
	if (reason >= REASON_PATH_TOO_LONG && reason != REASON_PROTECT && reason != REASON_ANON_EXEC)
		count(hook, 3);
	if (decision == DECISION_DENY && audit_mode)
		decision = DECISION_AUDIT;
	if (decision == DECISION_ALLOW)
		return 0;
	ev->decision = decision;
	ev->rule_id = rule_id;
	ev->reason = reason;
	ev->mode = audit_mode ? MODE_AUDIT : MODE_ENFORCE;
	/* rule limits, and the default's at index 0 (a failed-closed decision is never limited) */
	if (!quiet && (cfg->flags & CFG_RATE_LIMITS) && (rule_id || reason == REASON_DEFAULT) &&
	    !within_limit(rule_id)) {
		count_per_rule(&rule_suppressed, rule_id);
		quiet = 1;
	}
	/* the mask is the verifier's bound: the tail is under three paths and their NULs */
	__u64 size = quiet ? 0 : POLICYC_EVENT_HEADER_SIZE + (event_identity(s) & POLICYC_TAIL_MASK);
	if (!quiet && bpf_ringbuf_output(&events, ev, size, 0)) {
		count(hook, 4);
		count_per_rule(&rule_drops, rule_id);
	}
	count(hook, decision == DECISION_DENY ? 1 : 2);
	return decision == DECISION_DENY ? deny_errno(ev->family) : 0;
}

static __always_inline struct verdict *verdict_of(long state)
{
	if (state < 0)
		return 0;
	__u32 st = state;
	struct dfa_state *d = bpf_map_lookup_elem(&dfa_states, &st);
	if (!d)
		return 0;
	__u32 vi = d->verdict;
	return bpf_map_lookup_elem(&verdicts, &vi);
}

static __always_inline __u8 walk_reason(int status)
{
	switch (status) {
	case WALK_TOO_LONG: return REASON_PATH_TOO_LONG;
	case WALK_DETACHED: return REASON_DETACHED;
	case WALK_DISCONNECTED: return REASON_DISCONNECTED;
	default: return REASON_READ_FAULT;
	}
}

#ifdef POLICYC_OWNER_RULES
/* `owner` rules (docs/language.md): each state's verdict (index 2i) is followed by the same
 * verdict with the owner rules left out (2i + 1), what a process that does not own the file
 * gets. The owner is read only when the two name different winners for the op. A create
 * counts as the creator's own (the file does not exist yet), as in AppArmor; a dentry with no
 * inode otherwise (an abstract socket's name has no dentry at all) has no owner. Both ids are
 * as the kernel keeps them (kuid, the initial user namespace's), so no mapping is needed. */
static __always_inline int owns_inode(struct inode *inode)
{
	if (!inode)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	return BPF_CORE_READ(inode, i_uid.val) == BPF_CORE_READ(task, cred, fsuid.val);
}

static __always_inline struct verdict *owner_verdict(long state, struct verdict *v, __u32 op,
						     struct inode *inode)
{
	if (!v || state < 0 || op == OP_CREATE)
		return v;
	__u32 st = state;
	struct dfa_state *d = bpf_map_lookup_elem(&dfa_states, &st);
	if (!d)
		return 0;
	__u32 vi = d->verdict | 1;
	struct verdict *other = bpf_map_lookup_elem(&verdicts, &vi);
	if (!other)
		return 0;
	__u32 o = op & (POLICYC_N_OPS - 1);  /* the verifier's bound on the column */
	if (other->rule[o] == v->rule[o] || owns_inode(inode))
		return v;
	return other;
}
#endif

/* Decide path operation `op` for a path resolved with `status` (dentry: its object, for
 * `owner` rules): walk, look up. */
static __always_inline int decide_resolved_op(struct policyc_config *cfg, struct scratch *s, int status,
					      struct dentry *dentry, __u8 op)
{
	if (status == WALK_INTERNAL)
		return 0;
	if (status != WALK_OK && status != WALK_PSEUDO)
		return apply(cfg, s, DECISION_DENY, 0, walk_reason(status));
	if (status == WALK_PSEUDO && (op == OP_EXEC || op == OP_EXEC_MAP))
		return apply(cfg, s, DECISION_DENY, 0, REASON_ANON_EXEC);
#ifdef POLICYC_OWNER_RULES
	long state = dfa_walk(s);
	struct verdict *v = owner_verdict(state, verdict_of(state), op, BPF_CORE_READ(dentry, d_inode));
#else
	struct verdict *v = verdict_of(dfa_walk(s));
#endif
	if (!v)
		return apply(cfg, s, DECISION_DENY, 0, REASON_MAP_FAULT);
	__u32 o = op & (POLICYC_N_OPS - 1);
	__u32 rule = v->rule[o];
	return apply(cfg, s, v->decision[o], rule, rule ? REASON_RULE : REASON_DEFAULT);
}

/* Decide path operation `op` for (dentry, mnt) in one call: resolve, walk, look up. */
static __always_inline int check_path_op(struct policyc_config *cfg, struct scratch *s,
					 struct dentry *dentry, struct vfsmount *mnt,
					 __u8 hook, __u8 family, __u8 op)
{
	event_subject(s, hook, family, op);
	count(hook, 0);
	return decide_resolved_op(cfg, s, resolve_path(s, dentry, mnt), dentry, op);
}

/* The same for a typed, non-NULL file of a hook that may call bpf_d_path (resolve_file's
 * fast path, else the walk). */
static __always_inline int check_file_op(struct policyc_config *cfg, struct scratch *s, struct file *file,
					 __u8 hook, __u8 family, __u8 op)
{
	event_subject(s, hook, family, op);
	count(hook, 0);
	return decide_resolved_op(cfg, s, resolve_file(s, file), file->f_path.dentry, op);
}


#define MODULE_REQUEST_MAX 256  /* a modprobe request name: `net-pf-38`, `fs-cramfs`, an alias */

/* A decision from simple_verdicts (module load, bpf), with its event. The event's path names
 * what is loaded, when the hook knows: the module file (`file`, resolved), or the name the
 * kernel asks modprobe for (`name`, a kernel string); both may be NULL. */
static __always_inline int check_simple(struct policyc_config *cfg, struct scratch *s, __u32 which,
					__u8 hook, __u8 family, struct file *file, const char *name)
{
	struct simple_verdict *v = bpf_map_lookup_elem(&simple_verdicts, &which);
	if (v && v->decision == DECISION_ALLOW)
		return 0;  /* the common case: no event to fill */
	event_subject(s, hook, family, 0);
	count(hook, 0);
	s->ev.path_len = 0;
	s->ev.path[0] = 0;
	if (!v)
		return apply(cfg, s, DECISION_DENY, 0, REASON_MAP_FAULT);
	if (file) {
		/* the name is for the log only: a path that cannot be read leaves it empty */
		int status = resolve_path(s, BPF_CORE_READ(file, f_path.dentry), BPF_CORE_READ(file, f_path.mnt));
		if (status != WALK_OK && status != WALK_PSEUDO) {
			s->ev.path_len = 0;
			s->ev.path[0] = 0;
		}
	} else if (name) {
		long n = bpf_probe_read_kernel_str(s->ev.path, MODULE_REQUEST_MAX, name);
		s->ev.path_len = n > 0 ? n - 1 : 0;
	}
	return apply(cfg, s, v->decision, v->rule_id, v->rule_id ? REASON_RULE : REASON_DEFAULT);
}

#endif
