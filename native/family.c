/* Process families (docs/family.md): the system calls of a guest that belong to its home.
 *
 * A process running away from home keeps its family at home: its deputy there is the parent of
 * every child it has, holds its process group and session, and is what other processes signal.
 * On the node it runs on, the calls that act on that family (fork, vfork, clone without
 * CLONE_THREAD, wait4, waitid, kill and friends aimed at another process, setpgid, setsid,
 * pidfd_open of another process) would act on the wrong pid space. So a restore with --family
 * puts a seccomp filter in front of the guest that turns those calls into user notifications
 * (SECCOMP_RET_USER_NOTIF); the restore helper keeps the listener and reports each one as a line
 *     FAMILY <id> <name>
 * The guest waits in the kernel until it is answered. Normally it never is: the daemon brings the
 * process home, and the dump that stops it interrupts the wait (-ERESTARTSYS), so the image holds
 * the call ready to run again (fix_restart), and it runs again at home, natively, in the original.
 * Failing that the daemon answers with a command on fd 5:
 *     DENY <id> <errno>     the call fails with errno
 * clone3 fails with ENOSYS (its flags are behind a pointer a filter cannot read): libc then uses
 * clone, whose flags it can. The filter is never part of an image (dump_seccomp skips it by the
 * mark in its first instruction), so each restore on a node installs its own.
 * With --family, check and deputy allow a process with children: they keep the deputy, the
 * original, as their parent. */
#include "ppm.h"
#include <linux/seccomp.h>
#include <linux/filter.h>
#include <linux/audit.h>
#include <sys/ioctl.h>

int g_family;
static int listener = -1;

/* the first instruction of the family filter loads this constant ("HPCF"): its mark */
#define FAMILY_MARK 0x48504346u

static const struct { int nr; const char *name; int self_ok; } calls[] = {
	{ SYS_fork, "fork", 0 }, { SYS_vfork, "vfork", 0 }, { SYS_wait4, "wait4", 0 }, { SYS_waitid, "waitid", 0 },
	{ SYS_setpgid, "setpgid", 0 }, { SYS_setsid, "setsid", 0 },
	/* these act on the first argument's process: fine when it is the guest itself */
	{ SYS_kill, "kill", 1 }, { SYS_tkill, "tkill", 1 }, { SYS_tgkill, "tgkill", 1 }, { SYS_rt_sigqueueinfo, "rt_sigqueueinfo", 1 },
	{ SYS_rt_tgsigqueueinfo, "rt_tgsigqueueinfo", 1 }, { NR_PIDFD_OPEN, "pidfd_open", 1 },
};

static const char *call_name(int nr)
{
	if (nr == SYS_clone) return "clone";
	for (unsigned i = 0; i < sizeof calls / sizeof *calls; i++) if (calls[i].nr == nr) return calls[i].name;
	return "other";
}

#define STMT(c, k) ((struct sock_filter){ (c), 0, 0, (k) })
#define JUMP(c, k, t, f) ((struct sock_filter){ (c), (t), (f), (k) })
#define ARG0_LO (offsetof(struct seccomp_data, args))	/* low 32 bits on x86-64: a pid_t */

/* The filter for a guest whose pid (here) is self; returns its length. */
static int build(struct sock_filter *p, pid_t self)
{
	int n = 0;
	const uint32_t NOTIF = SECCOMP_RET_USER_NOTIF, ALLOW = SECCOMP_RET_ALLOW;
	p[n++] = STMT(BPF_LD | BPF_IMM, FAMILY_MARK);
	p[n++] = STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
	p[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
	p[n++] = STMT(BPF_RET | BPF_K, ALLOW);	/* 32-bit calls are not looked at (docs/family.md) */
	p[n++] = STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
	p[n++] = JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1);	/* x32 */
	p[n++] = STMT(BPF_RET | BPF_K, ALLOW);
	p[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, NR_CLONE3, 0, 1);
	p[n++] = STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
	/* clone: a thread stays (CLONE_THREAD), a process goes home */
	p[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 4);
	p[n++] = STMT(BPF_LD | BPF_W | BPF_ABS, ARG0_LO);
	p[n++] = JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1);
	p[n++] = STMT(BPF_RET | BPF_K, ALLOW);
	p[n++] = STMT(BPF_RET | BPF_K, NOTIF);
	for (unsigned i = 0; i < sizeof calls / sizeof *calls; i++) {
		if (!calls[i].self_ok) {
			p[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, calls[i].nr, 0, 1);
			p[n++] = STMT(BPF_RET | BPF_K, NOTIF);
		} else {
			p[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, calls[i].nr, 0, 4);
			p[n++] = STMT(BPF_LD | BPF_W | BPF_ABS, ARG0_LO);
			p[n++] = JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)self, 0, 1);
			p[n++] = STMT(BPF_RET | BPF_K, ALLOW);
			p[n++] = STMT(BPF_RET | BPF_K, NOTIF);
		}
	}
	p[n++] = STMT(BPF_RET | BPF_K, ALLOW);
	return n;
}

/* Is this filter (as PTRACE_SECCOMP_GET_FILTER gives it) the family filter? */
int family_filter(const void *ins, uint32_t n)
{
	const struct sock_filter *p = ins;
	return n > 0 && p[0].code == (BPF_LD | BPF_IMM) && p[0].k == FAMILY_MARK;
}

/* Installs the family filter in the stopped tracee (before its credentials are dropped) and takes
 * its listener into this helper. scr: the tracee's scratch area. */
int family_install(struct tracee *t, uint64_t scr)
{
	struct sock_filter prog[64];
	int n = build(prog, t->vpid ? t->vpid : t->pid);	/* the pid it calls itself by */
	uint64_t fprog[2] = { (uint64_t)n, scr + 64 };
	int e = mem_write(t, scr + 64, prog, n * sizeof *prog);
	if (!e) e = mem_write(t, scr, fprog, sizeof fprog);
	long fd = -1;
	if (!e) e = INJ(t, &fd, NR_SECCOMP, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, scr, 0, 0, 0);
	if (e) return fail(g_errno, "the family filter cannot be installed: %s", g_err);
	listener = fd_of(t->pid, (int)fd);
	int ge = errno;
	INJ(t, NULL, SYS_close, fd, 0, 0, 0, 0, 0);
	if (listener < 0) return fail(ge, "taking the family listener: %s", strerror(ge));
	fcntl(listener, F_SETFD, FD_CLOEXEC);
	return 0;
}

/* The calls reported and not answered yet (said again to a caller that attaches to a keeper) */
static struct { unsigned long long id; const char *name; } waiting[16];

static void waiting_set(unsigned long long id, const char *name)
{
	/* calls no longer waiting (interrupted by a signal, or the process was dumped and resumed in
	 * this keeper) make room first: a full list would leave the new call out of family_repeat */
	for (unsigned i = 0; i < 16; i++) {
		unsigned long long w = waiting[i].id;
		if (waiting[i].name && (listener < 0 || ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &w))) waiting[i].name = NULL;
	}
	for (unsigned i = 0; i < 16; i++) if (!waiting[i].name) { waiting[i].id = id; waiting[i].name = name; return; }
}

static void waiting_clear(unsigned long long id)
{
	for (unsigned i = 0; i < 16; i++) if (waiting[i].name && waiting[i].id == id) waiting[i].name = NULL;
}

int family_listener(void) { return listener; }

/* The listener is readable: reports the call (FAMILY line). Returns -1 once nobody uses the filter. */
int family_recv(short revents)
{
	static struct seccomp_notif *req;
	static struct seccomp_notif_sizes sz;
	if (!(revents & POLLIN)) { if (revents) { close(listener); listener = -1; return -1; } return 0; }
	if (!req) {
		if (syscall(NR_SECCOMP, SECCOMP_GET_NOTIF_SIZES, 0, &sz)) return 0;
		req = calloc(1, sz.seccomp_notif > sizeof *req ? sz.seccomp_notif : sizeof *req);
	}
	memset(req, 0, sz.seccomp_notif > sizeof *req ? sz.seccomp_notif : sizeof *req);
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) == 0) {
		ctlf("FAMILY %llu %s", (unsigned long long)req->id, call_name(req->data.nr));
		waiting_set(req->id, call_name(req->data.nr));
	}
	return 0;
}

/* Says again the calls still waiting for an answer (a keeper's new caller). */
void family_repeat(void)
{
	for (unsigned i = 0; i < 16; i++) {
		if (!waiting[i].name) continue;
		unsigned long long id = waiting[i].id;
		if (listener < 0 || ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id)) { waiting[i].name = NULL; continue; }
		ctlf("FAMILY %llu %s", id, waiting[i].name);
	}
}

/* One command from fd 5 (or a keeper's command pipe). Returns 0 when it was a family command. */
int family_command(const char *line)
{
	unsigned long long id;
	int err;
	if (!strcmp(line, "RELAYED")) { relay_release(); return 0; }	/* the caller holds the relays' ends (relay.c) */
	if (sscanf(line, "DENY %llu %d", &id, &err) != 2) return -1;
	waiting_clear(id);
	if (err <= 0 || err >= 4096 || listener < 0) { ctlf("ERR EINVAL bad family command '%s'", line); return 0; }
	struct seccomp_notif_resp r = { .id = id, .val = 0, .error = -err, .flags = 0 };
	if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &r) && errno != ENOENT) ctlf("ERR %s DENY %llu: %s", errname(errno), id, strerror(errno));
	return 0;
}

/* One command from fd 5. */
static void command(const char *line)
{
	if (family_command(line)) ctlf("ERR EINVAL unknown family command '%s'", line);
}

/* Until the restored process pid ends: reports its family calls, answers the commands. */
void family_supervise(pid_t pid)
{
	if (listener < 0) return;
	struct seccomp_notif_sizes sz;
	if (syscall(NR_SECCOMP, SECCOMP_GET_NOTIF_SIZES, 0, &sz)) return;
	struct seccomp_notif *req = calloc(1, sz.seccomp_notif > sizeof *req ? sz.seccomp_notif : sizeof *req);
	int pfd = syscall(NR_PIDFD_OPEN, pid, 0);
	int cfd = fcntl(5, F_GETFD) >= 0 ? 5 : -1, lfd = listener;
	char cbuf[512];
	size_t clen = 0;
	while (pfd >= 0) {
		struct pollfd pf[3] = { { pfd, POLLIN, 0 }, { lfd, POLLIN, 0 }, { cfd, POLLIN, 0 } };
		if (poll(pf, 3, -1) < 0) { if (errno == EINTR) continue; break; }
		if (pf[0].revents) break;
		if (pf[1].revents & POLLIN) {
			memset(req, 0, sz.seccomp_notif);
			if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_RECV, req) == 0) ctlf("FAMILY %llu %s", (unsigned long long)req->id, call_name(req->data.nr));
		} else if (pf[1].revents) lfd = -1;	/* nobody uses the filter any more */
		if (pf[2].revents) {
			ssize_t r = read(cfd, cbuf + clen, sizeof cbuf - 1 - clen);
			if (r <= 0) { cfd = -1; continue; }	/* the caller is gone: the process runs on */
			clen += r;
			char *nl;
			while ((nl = memchr(cbuf, '\n', clen))) {
				*nl = 0;
				command(cbuf);
				clen -= nl + 1 - cbuf;
				memmove(cbuf, nl + 1, clen);
			}
			if (clen == sizeof cbuf - 1) clen = 0;	/* an overlong line is dropped */
		}
	}
	if (pfd >= 0) close(pfd);
	free(req);
}
