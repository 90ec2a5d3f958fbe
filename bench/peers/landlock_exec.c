/* bench/peers.py: run a command under a Landlock ruleset of N rules.
 *
 *     landlock_exec NRULES PORT DECOYDIR -- CMD [ARG...]
 *
 * The ruleset handles every file-system right the kernel's Landlock ABI knows and, from ABI 4
 * (6.7+), TCP connect. Rule 1 grants the whole tree ("/") every handled file-system right but
 * MAKE_FIFO (so the worker can prove the domain is in force: mkfifo fails with EACCES); from
 * ABI 4 a net rule grants connect to PORT. The other NRULES-1 rules are decoys that never match
 * the probes: path-beneath rules on DECOYDIR/d0 .. DECOYDIR/d{N-2} (created here) and, from
 * ABI 4, connect rules on ports PORT+1 ... Then no_new_privs, landlock_restrict_self, exec.
 * Prints one line to stderr: "landlock abi=A fs_rules=F net_rules=N". Syscalls by number
 * (444-446), constants spelled out: no dependence on the build host's headers. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SYS_ll_create 444
#define SYS_ll_add 445
#define SYS_ll_restrict 446
#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH 1
#define LL_RULE_NET_PORT 2
#define LL_FS_MAKE_FIFO (1ULL << 10)
#define LL_FS_REFER (1ULL << 13)
#define LL_FS_TRUNCATE (1ULL << 14)
#define LL_FS_IOCTL_DEV (1ULL << 15)
#define LL_NET_CONNECT_TCP (1ULL << 1)

struct ll_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
};

struct ll_path_beneath {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));

struct ll_net_port {
	uint64_t allowed_access;
	uint64_t port;
};

static void die(const char *what)
{
	fprintf(stderr, "landlock_exec: %s: %s\n", what, strerror(errno));
	exit(70);
}

int main(int argc, char **argv)
{
	if (argc < 6 || strcmp(argv[4], "--") != 0) {
		fprintf(stderr, "usage: landlock_exec NRULES PORT DECOYDIR -- CMD [ARG...]\n");
		return 64;
	}
	int nrules = atoi(argv[1]);
	uint64_t port = strtoull(argv[2], NULL, 10);
	const char *decoys = argv[3];
	int abi = syscall(SYS_ll_create, NULL, 0, LL_CREATE_RULESET_VERSION);
	if (abi < 1)
		die("Landlock is not available");
	uint64_t fs = (1ULL << 13) - 1; /* ABI 1: EXECUTE .. MAKE_SYM */
	if (abi >= 2)
		fs |= LL_FS_REFER;
	if (abi >= 3)
		fs |= LL_FS_TRUNCATE;
	if (abi >= 5)
		fs |= LL_FS_IOCTL_DEV;
	struct ll_ruleset_attr attr = {.handled_access_fs = fs,
				       .handled_access_net = abi >= 4 ? LL_NET_CONNECT_TCP : 0};
	size_t attr_size = abi >= 4 ? sizeof(attr) : sizeof(attr.handled_access_fs);
	int rfd = syscall(SYS_ll_create, &attr, attr_size, 0);
	if (rfd < 0)
		die("landlock_create_ruleset");

	int fs_rules = 0, net_rules = 0;
	struct ll_path_beneath pb = {.allowed_access = fs & ~LL_FS_MAKE_FIFO};
	pb.parent_fd = open("/", O_PATH | O_CLOEXEC);
	if (pb.parent_fd < 0 || syscall(SYS_ll_add, rfd, LL_RULE_PATH_BENEATH, &pb, 0))
		die("rule on /");
	close(pb.parent_fd);
	fs_rules++;
	char dir[4096];
	mkdir(decoys, 0755);
	for (int i = 0; i < nrules - 1; i++) {
		snprintf(dir, sizeof(dir), "%s/d%d", decoys, i);
		mkdir(dir, 0755);
		struct ll_path_beneath d = {.allowed_access = fs & ~LL_FS_MAKE_FIFO};
		d.parent_fd = open(dir, O_PATH | O_CLOEXEC);
		if (d.parent_fd < 0 || syscall(SYS_ll_add, rfd, LL_RULE_PATH_BENEATH, &d, 0))
			die(dir);
		close(d.parent_fd);
		fs_rules++;
	}
	if (abi >= 4) {
		for (int i = 0; i < nrules; i++) {
			struct ll_net_port np = {.allowed_access = LL_NET_CONNECT_TCP, .port = port + i};
			if (syscall(SYS_ll_add, rfd, LL_RULE_NET_PORT, &np, 0))
				die("net rule");
			net_rules++;
		}
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		die("no_new_privs");
	if (syscall(SYS_ll_restrict, rfd, 0))
		die("landlock_restrict_self");
	close(rfd);
	fprintf(stderr, "landlock abi=%d fs_rules=%d net_rules=%d\n", abi, fs_rules, net_rules);
	execv(argv[5], argv + 5);
	die(argv[5]);
}
