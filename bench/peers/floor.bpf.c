// The floor of bench/peers.py: on each hook policyc's comparison needs, an LSM program that does
// only the minimum an enforcer must do to decide (name the file, read the address) and allows.
// Built on the host against templates/common/vmlinux_min.h (CO-RE); loaded in the VM guest only.
// NEVER attach it to the host kernel.
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define FLOOR_PATH_MAX 4096

struct floor_buf {
	char path[FLOOR_PATH_MAX];
	__u8 addr[28];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct floor_buf);
} floor_bufs SEC(".maps");

/* file_open: bpf_d_path of the opened file into a per-CPU buffer, then allow */
SEC("lsm/file_open")
int BPF_PROG(floor_file_open, struct file *file)
{
	__u32 k = 0;
	struct floor_buf *b = bpf_map_lookup_elem(&floor_bufs, &k);
	if (b)
		bpf_d_path(&file->f_path, b->path, sizeof(b->path));
	return 0;
}

/* bprm_check_security: the same on the file being executed */
SEC("lsm/bprm_check_security")
int BPF_PROG(floor_bprm_check, struct linux_binprm *bprm)
{
	__u32 k = 0;
	struct floor_buf *b = bpf_map_lookup_elem(&floor_bufs, &k);
	if (b)
		bpf_d_path(&bprm->file->f_path, b->path, sizeof(b->path));
	return 0;
}

/* socket_connect: read the address (family, then the bytes an IPv6 address needs), allow */
SEC("lsm/socket_connect")
int BPF_PROG(floor_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen)
{
	__u32 k = 0;
	struct floor_buf *b = bpf_map_lookup_elem(&floor_bufs, &k);
	if (!b)
		return 0;
	__u16 family = BPF_CORE_READ(address, sa_family);
	if (family == 10 /* AF_INET6 */ && addrlen >= 28)
		bpf_probe_read_kernel(b->addr, 28, address);
	else
		bpf_probe_read_kernel(b->addr, 16, address);
	return 0;
}
