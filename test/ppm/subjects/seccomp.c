/* Seccomp subject: installs a filter (with no_new_privs) that makes getppid() fail with EPERM and
 * kills the process on uname(). Each round shows the filter at work; at the end it calls uname()
 * and must die by SIGSYS. usage: seccomp ROUNDS DELAY_US */
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <errno.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/audit.h>

int main(int argc, char **argv)
{
	if (argc < 3) return 2;
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_uname, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog p = { sizeof f / sizeof f[0], f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p)) { perror("seccomp"); return 2; }
	setvbuf(stdout, NULL, _IONBF, 0);
	for (int r = 0; r < atoi(argv[1]); r++) {
		errno = 0;
		long v = syscall(SYS_getppid);
		printf("round %d getppid %ld errno %d nnp %d\n", r, v, errno, prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
		usleep(atol(argv[2]));
	}
	struct utsname u;
	uname(&u);
	printf("still alive\n");
	return 0;
}
