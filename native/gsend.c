/* Pages written into the connection by the process itself (docs/ppm.md "Pages sent by the
 * process"): a dump into a TCP socket gives the stopped process a descriptor of that socket and has
 * it send runs of its own memory into it with injected sendto(2) calls, between the record headers
 * the helper writes. The bytes are copied once, from the process's pages into the socket, instead
 * of read through /proc/PID/mem into a buffer and written from there (two copies, and a page-table
 * walk per page). Those PAGES records carry REC_MAGIC_NC: no CRC (the helper never sees their
 * bytes; TCP checks them on the wire, and END still checks the counts). Only TCP: a stream into a
 * pipe or socket pair may be kept as a file (a copy), whose records must keep their CRC.
 *
 * The descriptor is the daemon's link to another node: nobody else may take it meanwhile. The
 * process is made non-dumpable for the time it holds it (so that no process of its user can
 * pidfd_getfd it or look at it in /proc; put back after), and a process that shares its descriptor
 * table with its parent or a child (clone CLONE_FILES) does not get it. It is passed as
 * SCM_RIGHTS over an abstract unix socket the process connects to (a random name; the peer's pid
 * is checked, so no other process gets it), after the descriptor table was read, and closed again
 * before the dump ends, also when it fails; the table is then checked to be what it was. The
 * injected calls pass a seccomp filter by (PTRACE_O_SUSPEND_SECCOMP). Anything unusual on the way
 * (another network namespace, no descriptor free, another process on the name first) leaves the
 * old path. */
#include "threads.h"
#include <poll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>

struct gsend {
	int gfd;		/* the socket's descriptor in the process */
	int dumpable;		/* the process's PR_GET_DUMPABLE before (1: set to 0 meanwhile) */
	int *fds, nfd;		/* its descriptor numbers before */
	uint64_t pages;		/* pages the process sent */
	uint8_t *buf;		/* (bytes it could not send: read here and sent from here) */
	long calls;		/* injected sendto calls */
};

/* HPC_PPM_SEND: "copy" never (the old path, to compare), "guest" for every dump into a TCP socket
 * (tests), else for a process with at least GSEND_MIN resident */
#define GSEND_MIN (2UL << 20)
#define GSEND_RUN_MIN (64UL << 10)	/* shorter runs stay in the writer's slots */

/* whether pid (whose /proc status is st) shares its descriptor table with its parent or a child
 * (clone CLONE_FILES without CLONE_THREAD): that process would see the descriptor too */
static int shares_files(pid_t pid, const char *st)
{
	char v[32], fn[64];
	if (status_field(st, "PPid", v, sizeof v)) return 1;
	pid_t pp = atoi(v);
	if (pp > 0 && syscall(NR_KCMP, pid, pp, KCMP_FILES, 0, 0) == 0) return 1;
	static char kids[8192];
	snprintf(fn, sizeof fn, "/proc/%d/task/%d/children", pid, pid);
	if (read_file(fn, kids, sizeof kids) < 0) return 1;
	for (char *p = kids, *end; *p; p = end) {
		long c = strtol(p, &end, 10);
		if (end == p) break;
		if (syscall(NR_KCMP, pid, (pid_t)c, KCMP_FILES, 0, 0) == 0) return 1;
	}
	return 0;
}

static int wanted(pid_t pid, int fd, const struct imgw *w)
{
	const char *env = getenv("HPC_PPM_SEND");
	if (env && !strcmp(env, "copy")) return 0;
	int dom = 0, type = 0;
	socklen_t l1 = sizeof dom, l2 = sizeof type;
	if (w->copy >= 0 || getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l1) || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l2)) return 0;
	if ((dom != AF_INET && dom != AF_INET6) || type != SOCK_STREAM) return 0;
	char fn[64], st[4096], rss[32];
	snprintf(fn, sizeof fn, "/proc/%d/status", pid);
	if (read_file(fn, st, sizeof st) <= 0 || status_field(st, "VmRSS", rss, sizeof rss)) return 0;
	if ((!env || strcmp(env, "guest")) && strtoull(rss, NULL, 10) << 10 < GSEND_MIN) return 0;	/* (kB) */
	return !shares_files(pid, st);
}

/* Closes what the process holds now and did not before (gs->fds), and puts its dumpability back:
 * 0, or an error if it still holds more than before (or the process died) */
static int put_back(struct tracee *t, struct gsend *gs)
{
	long x;
	int *now = NULL, n = t->dead ? -1 : fd_numbers(t->pid, &now), extra = 0;
	for (int i = 0, k = 0; i < n; i++) {
		while (k < gs->nfd && gs->fds[k] < now[i]) k++;
		if (k < gs->nfd && gs->fds[k] == now[i]) continue;
		inject(t, SYS_close, now[i], 0, 0, 0, 0, 0, &x);
		extra++;
	}
	free(now);
	if (extra) {
		now = NULL;
		n = t->dead ? -1 : fd_numbers(t->pid, &now);
		int same = n == gs->nfd && !memcmp(now, gs->fds, n * sizeof *now);
		free(now);
		if (!same) return fail(t->dead ? ESRCH : EIO, "process %d: a descriptor lent for its pages is still open", t->pid);
	}
	if (n < 0) return fail(ESRCH, "process %d: its descriptors cannot be read", t->pid);
	if (gs->dumpable == 1) {
		int e = INJ(t, NULL, SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0, 0);
		if (e) return e;
		gs->dumpable = 0;
	}
	return 0;
}

static void gs_free(struct gsend *gs)
{
	free(gs->fds);
	free(gs->buf);
	free(gs);
}

/* Gives the stopped process t a descriptor of fd: 0 and w->gs set, or 0 and the old path (nothing
 * of it is left in the process), or an error if the process died meanwhile, or if what was done
 * to it could not be undone (a descriptor or the scratch page still there). */
int gsend_open(struct imgw *w, struct tracee *t, int fd)
{
	if (!wanted(t->pid, fd, w)) return 0;
	struct gsend *gs = calloc(1, sizeof *gs);
	if (!gs) return 0;
	gs->gfd = -1;
	if ((gs->nfd = fd_numbers(t->pid, &gs->fds)) < 0) { gs_free(gs); return 0; }
	/* non-dumpable while it holds the descriptor (2, "suid_dumpable", could not be put back) */
	long d = -1;
	int e = INJ(t, &d, SYS_prctl, PR_GET_DUMPABLE, 0, 0, 0, 0, 0);
	if (!e && d == 1) e = INJ(t, NULL, SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0, 0);
	if (e || (d != 0 && d != 1)) { gs_free(gs); return t->dead ? e : (clear_err(), 0); }
	gs->dumpable = d;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t rnd = 0;
	int ls = -1;
	if (getrandom(&rnd, sizeof rnd, 0) == sizeof rnd) ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int nl = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "hpc-ppm-gsend-%d-%016llx", getpid(), (unsigned long long)rnd);
	socklen_t alen = offsetof(struct sockaddr_un, sun_path) + 1 + nl;
	if (ls >= 0 && (bind(ls, (struct sockaddr *)&sa, alen) || listen(ls, 1))) { close(ls); ls = -1; }
	long scratch = 0, ufd = -1, gfd = -1;
	/* (a shared mapping: it never merges with a neighbour, so its removal cannot fail for want
	 * of a region) */
	e = ls < 0 ? -1 : INJ(t, &scratch, SYS_mmap, 0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	/* scratch: the address, then the message header, its one byte, and the control buffer */
	struct { struct msghdr m; struct iovec iov; char byte; union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } u; } msg;
	uint64_t a_msg = scratch + 256;
	memset(&msg, 0, sizeof msg);
	msg.iov.iov_base = (void *)(a_msg + offsetof(__typeof__(msg), byte));
	msg.iov.iov_len = 1;
	msg.m.msg_iov = (struct iovec *)(a_msg + offsetof(__typeof__(msg), iov));
	msg.m.msg_iovlen = 1;
	msg.m.msg_control = (void *)(a_msg + offsetof(__typeof__(msg), u));
	msg.m.msg_controllen = sizeof msg.u;
	if (!e) e = mem_write(t, scratch, &sa, alen);
	if (!e) e = mem_write(t, a_msg, &msg, sizeof msg);
	/* (non-blocking: should another process have filled the backlog, connect fails at once) */
	if (!e) e = INJ(t, &ufd, SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, 0, 0, 0);
	if (!e) e = INJ(t, NULL, SYS_connect, ufd, scratch, alen, 0, 0, 0);
	int cs = -1;
	if (!e) {
		struct ucred cr;
		socklen_t cl = sizeof cr;
		cs = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		if (cs < 0 || getsockopt(cs, SOL_SOCKET, SO_PEERCRED, &cr, &cl) || cr.pid != t->pid) e = fail(EPERM, "the process's end of the descriptor's socket");
	}
	if (!e) {
		char one = 0;
		struct iovec iv = { &one, 1 };
		union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } u;
		memset(&u, 0, sizeof u);
		struct msghdr m = { .msg_iov = &iv, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b };
		struct cmsghdr *ch = CMSG_FIRSTHDR(&m);
		ch->cmsg_level = SOL_SOCKET;
		ch->cmsg_type = SCM_RIGHTS;
		ch->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(ch), &fd, sizeof fd);
		if (sendmsg(cs, &m, MSG_NOSIGNAL) != 1) e = fail(errno, "sendmsg: %s", strerror(errno));
	}
	long got = 0;
	if (!e) e = INJ(t, &got, SYS_recvmsg, ufd, a_msg, MSG_CMSG_CLOEXEC, 0, 0, 0);
	if (!e && got == 1 && !(e = mem_read(t, a_msg, &msg, sizeof msg))) {
		struct msghdr m = { .msg_control = msg.u.b, .msg_controllen = msg.m.msg_controllen };
		struct cmsghdr *ch = CMSG_FIRSTHDR(&m);
		/* (no room for it in its table: no message, MSG_CTRUNC) */
		if (ch && ch->cmsg_level == SOL_SOCKET && ch->cmsg_type == SCM_RIGHTS && ch->cmsg_len == CMSG_LEN(sizeof(int))) {
			int v;
			memcpy(&v, CMSG_DATA(ch), sizeof v);
			gfd = v;
		}
	}
	if (cs >= 0) close(cs);
	if (ls >= 0) close(ls);
	long x;
	if (ufd >= 0 && !t->dead) inject(t, SYS_close, ufd, 0, 0, 0, 0, 0, &x);
	int me = scratch > 0 && !t->dead ? INJ(t, NULL, SYS_munmap, scratch, PAGE, 0, 0, 0, 0) : 0;
	/* it holds what it held before, and the socket's descriptor: else all it holds anew is closed */
	int *now = NULL, n = t->dead ? -1 : fd_numbers(t->pid, &now), ok = gfd >= 0 && n == gs->nfd + 1;
	for (int i = 0, k = 0; ok && i < n; i++) {
		if (now[i] == gfd) continue;
		ok = k < gs->nfd && gs->fds[k++] == now[i];
	}
	free(now);
	if (!ok || me) {
		int pe = put_back(t, gs);
		gs_free(gs);
		if (t->dead) return e ? e : fail(ESRCH, "process %d died", t->pid);
		if (me || pe) return me ? me : pe;	/* (their messages) */
		clear_err();
		return 0;
	}
	clear_err();
	gs->gfd = gfd;
	w->gs = gs;
	return 0;
}

/* whether a run of len bytes of a region with protection prot goes this way */
int gsend_takes(const struct imgw *w, uint32_t prot, uint64_t len)
{
	return w->gs && (prot & PROT_READ) && len >= GSEND_RUN_MIN;
}

/* bytes into the socket from the helper, more to follow at once */
static int put_more(int fd, const void *p, size_t n)
{
	while (n) {
		if (g_orphaned) return fail(ECONNABORTED, "the daemon that asked for the image is gone");
		ssize_t r = send(fd, p, n, MSG_MORE | MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EINTR) continue;
			if (errno == EAGAIN) { int we = wait_io(fd, POLLOUT); if (we) return we; continue; }
			return fail(errno, "writing the image: %s", strerror(errno));
		}
		g_streamed = 1;
		p = (const char *)p + r;
		n -= r;
	}
	return 0;
}

/* One PAGES record of len bytes at addr: its header and trailer from here, its bytes sent by the
 * process. Records queued for the writer thread go out first. */
int gsend_run(struct imgw *w, struct tracee *t, uint64_t addr, uint64_t len)
{
	int e = w->wa ? wahead_sync(w) : 0;
	if (e) return e;
	struct { struct rechdr h; uint64_t addr, len; } hd = { { R_PAGES, REC_MAGIC_NC, 16 + len }, addr, len };
	if ((e = put_more(w->fd, &hd, sizeof hd))) return e;
	for (uint64_t off = 0; off < len;) {
		if (g_orphaned) return fail(ECONNABORTED, "the daemon that asked for the image is gone");
		long r;
		/* (MSG_NOSIGNAL: a broken connection must not leave a SIGPIPE for the process;
		 * MSG_DONTWAIT: never blocked inside an injected call) */
		if ((e = inject(t, SYS_sendto, w->gs->gfd, addr + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT, 0, 0, &r))) return e;
		w->gs->calls++;
		if (r == -EAGAIN || r == -EINTR) {
			if (r == -EAGAIN && (e = wait_io(w->fd, POLLOUT))) return e;
			continue;
		}
		if (r == -EFAULT) {
			/* a page it cannot read itself (its protection changed?): the rest from here,
			 * through /proc/PID/mem as on the old path */
			if (!w->gs->buf && !(w->gs->buf = malloc(CHUNK))) return fail(ENOMEM, "out of memory");
			uint64_t n = len - off < CHUNK ? len - off : CHUNK;
			if ((e = mem_read(t, addr + off, w->gs->buf, n)) || (e = put_more(w->fd, w->gs->buf, n))) return e;
			off += n;
			continue;
		}
		if (r <= 0) return fail(r < 0 ? -r : EIO, "the process's write of its pages at %#lx: %s", addr + off, r < 0 ? strerror(-r) : "nothing written");
		g_streamed = 1;
		off += r;
		/* a short send: the socket is full, the next call waits for room here (not for EAGAIN) */
		if (off < len && (e = wait_io(w->fd, POLLOUT))) return e;
	}
	uint32_t nocrc = 0;
	if ((e = put_more(w->fd, &nocrc, 4))) return e;
	w->nrec++;
	w->bytes += sizeof hd + len + 4;
	w->pages += len / PAGE;
	w->gs->pages += len / PAGE;
	return 0;
}

/* The process's descriptor closed again and its dumpability put back (if it still lives); counts
 * for the dump's STAT line. 0, or an error if that could not be done. */
int gsend_close(struct imgw *w, struct tracee *t)
{
	struct gsend *gs = w->gs;
	if (!gs) return 0;
	w->gs = NULL;
	int e = t->dead ? 0 : put_back(t, gs);
	ctlf("STAT gsend_pages=%llu gsend_calls=%ld", (unsigned long long)gs->pages, gs->calls);
	gs_free(gs);
	return e;
}
