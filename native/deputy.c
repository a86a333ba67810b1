/* The deputy (docs/ppm.md): after the dump the original is hollowed (its memory unmapped) and
 * parked in pause(); it keeps the pid and the parent at home. Commands on fd 5 end it with a
 * status or a signal, hand out or relay its descriptors (stdio, and those relayed with --relay,
 * relay.c), close one the process closed away from home (CLOSE), or restore an image into it
 * (return home). */
#include "threads.h"
#include <sys/signalfd.h>
#include <sys/socket.h>

/* the deputy's relays: copies between the original's descriptors and pipes of the caller's */
#define MAX_RL 64
struct rl { int src, dst, fd; int pull; /* src is the original's socket, read only on PULL */ int out; /* dst is the original's */ };
static struct rl rl[MAX_RL];	/* used by the command loop and, during RESTORE-FD, by await_line */
static int nrl;
/* the original's descriptors handed out by path (FDS): the deputy's copies */
static struct { int fd, d; } fc[MAX_RL];
static int nfc;

/* 0, or the errno of a write that failed */
static int write_all_to(int fd, const char *b, ssize_t n)
{
	for (ssize_t off = 0; off < n;) {
		ssize_t w = send(fd, b + off, n - off, MSG_NOSIGNAL);
		if (w < 0 && errno == ENOTSOCK) w = write(fd, b + off, n - off);
		if (w < 0 && errno == EINTR) continue;
		if (w < 0 && errno == EAGAIN) { struct pollfd p = { fd, POLLOUT, 0 }; poll(&p, 1, 1000); continue; }
		if (w <= 0) return w < 0 ? errno : EIO;
		off += w;
	}
	return 0;
}

/* what the caller wrote and the deputy has not passed on yet goes to the original now (before it
 * runs again, or ends) */
static void drain_out(void)
{
	static char b[65536];
	for (int i = 0; i < nrl; i++) {
		if (!rl[i].out) continue;
		int fl = fcntl(rl[i].src, F_GETFL);
		fcntl(rl[i].src, F_SETFL, fl | O_NONBLOCK);
		ssize_t n;
		while ((n = read(rl[i].src, b, sizeof b)) > 0) write_all_to(rl[i].dst, b, n);
		fcntl(rl[i].src, F_SETFL, fl);
	}
}

/* Empties the (stopped) tracee: its other threads ended, rseq unregistered, all memory but the
 * vDSO group unmapped, its timers stopped (interval timers disarmed, POSIX timers deleted), its
 * pending signals drained and none blocked: the process runs elsewhere with timers and signals of
 * its own, and a signal sent to the hollow original is passed on to it. */
int hollow(struct tracee *t, int *touched)
{
	*touched = 0;
	uint64_t vvar, vclock, vdso;
	int e = find_vdso(t, &vvar, &vclock, &vdso);
	if (!e) e = threads_exit(t, touched);
	if (e) return e;
	struct { uint64_t ptr; uint32_t size, sig, flags, pad; } rs = { 0 };
	/* HPC_PPM_TEST_FAULT=keep-rseq is a fault-injection hook for the tests: hollowing without
	 * unregistering rseq makes every return to user mode fault (docs/ppm.md "Kernel facts"), which must abort */
	const char *tf = getenv("HPC_PPM_TEST_FAULT");
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, t->pid, sizeof rs, &rs) > 0 && rs.ptr && !(tf && !strcmp(tf, "keep-rseq")))
		if ((e = INJ(t, NULL, NR_RSEQ, rs.ptr, rs.size, 1 /* RSEQ_FLAG_UNREGISTER */, rs.sig, 0, 0))) return e;
	struct vma *m;
	int nm = parse_maps(t->pid, &m);
	if (nm < 0) return nm;
	for (int i = 0; i < nm && !e; i++)
		if (!is_special(m[i].path)) { *touched = 1; e = INJ(t, NULL, SYS_munmap, m[i].start, m[i].end - m[i].start, 0, 0, 0, 0); }
	free(m);
	long page = 0;
	if (!e) e = INJ(t, &page, SYS_mmap, 0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (int w = 0; w < 3 && !e; w++) e = INJ(t, NULL, SYS_setitimer, w, page, 0, 0, 0, 0);	/* a zero page: disarmed */
	if (!e) e = timers_clear(t, page);
	/* signals pending in it are in the image; drained, so that they do not come back when the
	 * process returns home. Then nothing is blocked: every signal sent to the hollow original
	 * stops it and is reported (SIGNAL), blocked by the process or not. */
	if (!e) {
		/* those it had when its image was read went with it (sigq_claim); any that came since
		 * are kept as if its stops had taken them out (t->pend), to be passed on */
		uint64_t all = ~0ULL & ~(1ULL << (SIGKILL - 1) | 1ULL << (SIGSTOP - 1)), none = 0;
		e = mem_write(t, page, &all, sizeof all);
		long rv = 1;
		siginfo_t si;
		for (int i = 0; i < 128 + t->nsig && !e && rv > 0; i++) {
			e = inject(t, SYS_rt_sigtimedwait, page, page + 64, page + 16, 8, 0, 0, &rv);
			if (!e && rv > 0 && !mem_read(t, page + 64, &si, sizeof si) && !sigq_claim(t, &si) && t->npend < TRACEE_PEND)
				t->pend[t->npend++] = si;
		}
		if (!e && ptrace(PTRACE_SETSIGMASK, t->pid, 8, &none)) e = fail(errno, "PTRACE_SETSIGMASK: %s", strerror(errno));
	}
	if (page) { int e2 = INJ(t, NULL, SYS_munmap, page, PAGE, 0, 0, 0, 0); if (!e) e = e2; }
	return e;
}

static int deputy_kill(struct tracee *t, int sig)
{
	int e = interrupt_stop(t);
	if (e) return e;
	if (sig == SIGKILL) { kill(t->pid, SIGKILL); goto reap; }
	struct rlimit rl = { 0, 0 };
	prlimit(t->pid, RLIMIT_CORE, &rl, NULL);
	long page;
	if ((e = INJ(t, &page, SYS_mmap, 0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))) return e;
	if ((e = INJ(t, NULL, SYS_rt_sigaction, sig, page, 0, 8, 0, 0))) return e;
	uint64_t mask = 0;
	ptrace(PTRACE_GETSIGMASK, t->pid, 8, &mask);
	mask &= ~(1ULL << (sig - 1));
	ptrace(PTRACE_SETSIGMASK, t->pid, 8, &mask);
	if ((e = park(t))) return e;
	syscall(SYS_tgkill, t->pid, t->pid, sig);
	for (;;) {
		int st;
		pid_t w = waitpid(t->pid, &st, __WALL);
		if (w < 0 && errno == EINTR) continue;
		if (w < 0) return fail(errno, "waitpid");
		if (WIFSIGNALED(st)) { ctlf("KILLED %d", WTERMSIG(st)); return 0; }
		if (WIFEXITED(st)) { ctlf("EXIT %d", WEXITSTATUS(st)); return 0; }
		int s = WSTOPSIG(st), ev = st >> 16;
		ptrace(PTRACE_CONT, t->pid, 0, ev == 0 && s == sig ? sig : 0);
	}
reap:
	for (;;) {
		int st;
		pid_t w = waitpid(t->pid, &st, __WALL);
		if (w < 0 && errno == EINTR) continue;
		if (w < 0) return fail(errno, "waitpid");
		if (WIFSIGNALED(st)) { ctlf("KILLED %d", WTERMSIG(st)); return 0; }
		if (WIFEXITED(st)) { ctlf("EXIT %d", WEXITSTATUS(st)); return 0; }
	}
}

static int deputy_exit(struct tracee *t, int code)
{
	int e = interrupt_stop(t);
	if (e) return e;
	struct user_regs_struct r = t->regs0;
	r.rip = t->sc_ip; r.rax = SYS_exit_group; r.rdi = code; r.orig_rax = -1;
	if (ptrace(PTRACE_SETREGS, t->pid, 0, &r)) return fail(errno, "PTRACE_SETREGS: %s", strerror(errno));
	if (ptrace(PTRACE_CONT, t->pid, 0, 0)) return fail(errno, "PTRACE_CONT: %s", strerror(errno));
	for (;;) {
		int st;
		pid_t w = waitpid(t->pid, &st, __WALL);
		if (w < 0 && errno == EINTR) continue;
		if (w < 0) return fail(errno, "waitpid");
		if (WIFEXITED(st)) { ctlf("EXIT %d", WEXITSTATUS(st)); return 0; }
		if (WIFSIGNALED(st)) { ctlf("KILLED %d", WTERMSIG(st)); return 0; }
		ptrace(PTRACE_CONT, t->pid, 0, 0);
	}
}

/* copies what relay i has now; at its end, passes the end on and removes it. An output whose
 * reader is gone (EPIPE, or ECONNRESET from the socket's peer) is removed too: the caller's writes
 * into its pipe then fail with EPIPE, and the caller passes the broken pipe on (relay.ts) */
static void relay_copy(int i)
{
	static char rbuf[65536];
	ssize_t n = read(rl[i].src, rbuf, sizeof rbuf);
	int we = n > 0 ? write_all_to(rl[i].dst, rbuf, n) : 0;
	if (rl[i].out && (we == EPIPE || we == ECONNRESET)) {
		close(rl[i].src);
		close(rl[i].dst);
		rl[i] = rl[--nrl];
	} else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
		/* end of this stream: pass the end on where we own the writer */
		if (rl[i].src >= 0) close(rl[i].src);
		close(rl[i].dst);
		rl[i] = rl[--nrl];
	}
}

/* CLOSE fd c|w: the process closed its fd away from home (c), or shut that socket down for
 * writing (w). What the caller wrote for it goes to the original first; then the deputy's relays
 * and copies of fd end (w: its output relay, after a shutdown of the socket), and with c the
 * original closes fd itself: the last holder at home, so the other end sees the end. */
static int deputy_close(struct tracee *t, int fd, int shut)
{
	static char b[65536];
	for (int i = nrl - 1; i >= 0; i--) {
		if (rl[i].fd != fd || (shut && !rl[i].out)) continue;
		if (rl[i].out) {
			int fl = fcntl(rl[i].src, F_GETFL);
			fcntl(rl[i].src, F_SETFL, fl | O_NONBLOCK);
			ssize_t n;
			while ((n = read(rl[i].src, b, sizeof b)) > 0) write_all_to(rl[i].dst, b, n);
		}
		close(rl[i].src);
		close(rl[i].dst);
		rl[i] = rl[--nrl];
	}
	if (shut) {
		/* on the original's socket itself: its output relay may have ended already (relay_copy) */
		int d = fd_of(t->pid, fd);
		int e = d < 0 || shutdown(d, SHUT_WR) ? errno : 0;
		if (d >= 0) close(d);
		return e ? fail(e, "shutdown of fd %d: %s", fd, strerror(e)) : 0;
	}
	for (int i = nfc - 1; i >= 0; i--) if (fc[i].fd == fd) { close(fc[i].d); fc[i] = fc[--nfc]; }
	int e = interrupt_stop(t);
	if (e) return e;
	e = INJ(t, NULL, SYS_close, fd, 0, 0, 0, 0, 0);
	int e2 = park(t);	/* parked again whatever the close said */
	return e ? e : e2;
}

/* waits for one command line on fd 5 (GO), or its end, relaying output meanwhile (the caller
 * passes on the output that came before the image, and waits until it has gone into the relay's
 * pipes); then copies what those still hold. Only output relays are copied: input (and a relayed
 * socket's, read only on PULL) is not read ahead, the original reads it itself. */
static void await_line(void)
{
	for (int go = 0, rounds = 0; rounds < 1024;) {
		struct pollfd pf[1 + MAX_RL] = { { 5, POLLIN, 0 } };
		for (int i = 0; i < nrl; i++) { pf[1 + i].fd = rl[i].out ? rl[i].src : -1; pf[1 + i].events = POLLIN; pf[1 + i].revents = 0; }
		if (go) rounds++;
		int r = poll(go ? pf + 1 : pf, go ? nrl : 1 + nrl, go ? 0 : -1);
		if (r < 0 && errno == EINTR) continue;
		if (r < 0 || (go && r == 0)) return;	/* after GO: nothing more to copy */
		for (int i = nrl - 1; i >= 0; i--) if (pf[1 + i].revents) relay_copy(i);
		if (go || !pf[0].revents) continue;
		char c;
		ssize_t n = read(5, &c, 1);
		if (n < 0 && errno == EINTR) continue;
		/* its daemon is gone before GO: what it had to pass on first (the output that came after
		 * the image) is lost with it, so the original does not run on by itself: as any deputy's
		 * whose daemon dies, it is killed by this helper's end (PTRACE_O_EXITKILL) */
		if (n <= 0) _exit(1);
		if (c == '\n') go = 1;
	}
}

/* RESTORE [path]: from a file, or from a pipe announced by IMAGE-IN; RESTORE-FD pid fd: from
 * descriptor fd of process pid (pidfd_getfd), e.g. the daemon's connection to the node the
 * process comes from. From a descriptor, a restore that fails reads the rest of the image (to its
 * END record) so that the connection can go on. */
static int deputy_restore(struct tracee *t, const char *path, pid_t from, int from_fd)
{
	g_relay_keep = 1;	/* its relayed descriptors are the original's own (relay.c) */
	int fd, p[2] = { -1, -1 };
	if (from > 0) {
		fd = fd_of(from, from_fd);
		if (fd < 0) return fail(errno, "descriptor %d of %d: %s", from_fd, from, strerror(errno));
	} else if (path) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) return fail(errno, "open %s: %s", path, strerror(errno));
	} else {
		if (pipe2(p, O_CLOEXEC)) return fail(errno, "pipe: %s", strerror(errno));
		fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
		fd = p[0];
		ctlf("IMAGE-IN /proc/%d/fd/%d", getpid(), p[1]);
	}
	struct imgr r = { .fd = fd };
	struct image *im = NULL;
	int e = read_meta(&r, &im);
	if (!e && validate_image(im, 1)) e = fail(ENOTSUP, "this host cannot restore the image faithfully");
	if (!e && (im->c.vdso == 0)) e = fail(EBADMSG, "image has no vDSO");
	if (e) { if (from > 0 && im) drain_image(&r); if (im) free_image(im); if (p[1] >= 0) close(p[1]); close(fd); return e; }
	/* the signals caught while it was dumped went into its image or were reported (SIGNAL) with
	 * HOLLOW; from here on t->pend holds those the restore's injected calls take out of the kernel:
	 * sent to it once it runs, or reported again if it is parked once more */
	t->npend = t->pend_imaged = 0;
	t->nsig = 0;	/* (the signals of its dump out went with it) */
	e = interrupt_stop(t);
	if (!e) {
		t->ninject = 0;
		t->keep_tids = 1;	/* its threads come home under their tids where free */
		double t0 = now_ms();
		/* the page records read ahead by a thread (pipeline.c); a failed restore reads the stream
		 * up to its END first, so that a connection carrying it goes on */
		rahead_start(&r);
		e = restore_into(t, im, &r, 1, 0);
		rahead_stop(&r, 1);
		if (!e && from > 0) {
			/* all of the image is read: the connection is the caller's again; the original runs
			 * once the caller has passed on what came before it (its output) and says GO */
			close(fd);
			fd = -1;
			ctlf("IMAGE-READ");
			await_line();
		}
		if (!e) {
			restored_run(t, im);
			sigq_resend(t, t->pid, 1);
			ctlf("STAT restore_ms=%.3f injections=%ld", now_ms() - t0, t->ninject);
			ctlf("STAT running_at=%.3f", clock_ns(CLOCK_REALTIME) / 1e6);	/* as a restore's (ppm.c): the end of a downtime */
			ctlf("RESTORED %d", t->pid);
		} else if (!t->dead) {
			/* back to a parked hollow: the caller may try again or end it */
			char keep[sizeof g_err];
			int ke = g_errno;
			memcpy(keep, g_err, sizeof keep);
			g_err[0] = 0;
			int touched;
			/* the image's signals, should the restore have queued them, are the remote's still:
			 * the hollowing takes them out again without reporting them */
			sigq_expect(t, im);
			if (!hollow(t, &touched)) park(t);
			/* the process runs on where it was: the signals the restore took go there */
			for (int i = 0; i < t->npend; i++) sigq_report(&t->pend[i]);
			t->npend = t->pend_imaged = 0;
			t->nsig = 0;
			memcpy(g_err, keep, sizeof keep);
			g_errno = ke;
		}
	}
	if (e && from > 0) drain_image(&r);
	free_image(im);
	if (p[1] >= 0) close(p[1]);
	if (fd >= 0) close(fd);
	return e;
}

int g_confirm;

/* --confirm: one line from fd 5 once the image is out: 1 HOLLOW, 0 RELEASE, -1 anything else or
 * the end of fd 5 (the caller is gone) */
static int await_verdict(void)
{
	char line[32];
	if (cmd_line(line, sizeof line)) return -1;
	return !strcmp(line, "HOLLOW") ? 1 : !strcmp(line, "RELEASE") ? 0 : -1;
}

int cmd_deputy(pid_t pid, const char *target)
{
	struct tracee t;
	struct dumpres res;
	double t0;
	int e = seize_and_dump(pid, target, &t, &res, &t0);
	if (e) { cancel_empty_image(); return e; }
	free(res.vmas);
	close(3);
	if (g_copy_fd >= 0) close(g_copy_fd);
	double t1 = now_ms();
	if (g_confirm) {
		/* the frozen original is the copy kept until the target runs the process (no copy file):
		 * DUMPED, then HOLLOW (the move is committed) or RELEASE (it runs on here). From now on
		 * it never runs while this helper is gone (EXITKILL), and a committed one whose hollowing
		 * fails is killed, never let go: the target runs it */
		ptrace(PTRACE_SETOPTIONS, pid, 0, SEIZE_OPTS | PTRACE_O_EXITKILL);
		ctlf("DUMPED %d", pid);
		int v = await_verdict();
		trace("verdict");
		if (v == 0) {
			precopy_done();
			release_live(&t);
			ctlf("RELEASED %d", pid);
			return 0;
		}
		if (v < 0) { kill_reap(pid); precopy_done(); return fail(ECANCELED, "no word from the caller: the original was killed"), report_err(); }
	}
	int touched;
	e = hollow(&t, &touched);
	if (e) {
		/* nothing unmapped yet: the original runs on as before; else it is half-emptied and can
		 * only be removed (the caller has its complete image) */
		if (!touched && !t.dead && !g_confirm) {
			precopy_done();
			release_live(&t);
		} else { kill_reap(pid); precopy_done(); }
		return report_err();
	}
	precopy_done();	/* its memory is gone: nothing left to unprotect */
	ptrace(PTRACE_SETOPTIONS, pid, 0, SEIZE_OPTS | PTRACE_O_EXITKILL);
	if ((e = park(&t))) { kill_reap(pid); return report_err(); }
	ctlf("STAT freeze_ms=%.3f hollow_ms=%.3f", t1 - t0, now_ms() - t1);
	relay_report_dumped();
	/* signals that came after its image was read: passed on (the others went with it) */
	for (int i = t.pend_imaged; i < t.npend; i++)
		if (!sigq_claim(&t, &t.pend[i])) sigq_report(&t.pend[i]);	/* (one read from the queues and taken out by a stop since is its image's) */
	t.npend = t.pend_imaged = 0;
	t.nsig = 0;
	ctlf("HOLLOW %d", pid);

	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGCHLD);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	int sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
	int cfd = fcntl(5, F_GETFD) >= 0 ? 5 : 0;
	char cbuf[PATH_MAX + 64];
	size_t clen = 0;
	static char rbuf[65536];
	for (;;) {
		/* drain tracee events */
		for (;;) {
			int st;
			pid_t w = waitpid(pid, &st, __WALL | WNOHANG);
			if (w <= 0) break;
			if (WIFEXITED(st)) { ctlf("EXIT %d", WEXITSTATUS(st)); return 0; }
			if (WIFSIGNALED(st)) { ctlf("KILLED %d", WTERMSIG(st)); return 0; }
			int sig = WSTOPSIG(st), ev = st >> 16;
			if (ev == 0) sigq_report_stop(pid, sig);
			if (ev == PTRACE_EVENT_STOP && sig != SIGTRAP) ptrace(PTRACE_LISTEN, pid, 0, 0);
			else ptrace(PTRACE_CONT, pid, 0, 0);
		}
		char *nl = memchr(cbuf, '\n', clen);
		if (!nl) {
			struct pollfd pf[2 + MAX_RL] = { { cfd, POLLIN, 0 }, { sfd, POLLIN, 0 } };
			for (int i = 0; i < nrl; i++) { pf[2 + i].fd = rl[i].pull ? -1 : rl[i].src; pf[2 + i].events = POLLIN; pf[2 + i].revents = 0; }
			if (poll(pf, 2 + nrl, -1) < 0) { if (errno == EINTR) continue; break; }
			if (pf[1].revents) { struct signalfd_siginfo si; while (read(sfd, &si, sizeof si) > 0); }
			for (int i = nrl - 1; i >= 0; i--) if (pf[2 + i].revents) relay_copy(i);
			if (!pf[0].revents) continue;
			ssize_t n = read(cfd, cbuf + clen, sizeof cbuf - 1 - clen);
			if (n <= 0) { /* caller gone: nothing can be relayed any more */ kill_reap(pid); ctlf("KILLED 9"); return 1; }
			clen += n;
			if (clen == sizeof cbuf - 1 && !memchr(cbuf, '\n', clen)) clen = 0; /* an overlong line is dropped */
			continue;
		}
		char line[PATH_MAX + 64];
		size_t ll = nl - cbuf;
		memcpy(line, cbuf, ll);
		line[ll] = 0;
		memmove(cbuf, nl + 1, clen - ll - 1);
		clen -= ll + 1;
		clear_err();
		char arg[PATH_MAX];
		int from = 0, from_fd = -1;
		int num;
		if (!strncmp(line, "EXIT", 4) || !strncmp(line, "KILL", 4) || !strncmp(line, "RESTORE", 7)) drain_out();
		if (sscanf(line, "EXIT %d", &num) == 1) {
			if (deputy_exit(&t, num & 255)) return report_err();
			return 0;
		} else if (sscanf(line, "KILL %d", &num) == 1) {
			if (num < 1 || num > 64 || num == SIGSTOP || num == SIGCONT || num == SIGCHLD || num == SIGURG || num == SIGWINCH || num == SIGTSTP || num == SIGTTIN || num == SIGTTOU) {
				ctlf("ERR EINVAL signal %d does not end a process", num);
				continue;
			}
			if (deputy_kill(&t, num)) return report_err();
			return 0;
		} else if (sscanf(line, "RESTORE-FD %d %d", &from, &from_fd) == 2 && from > 0 && from_fd >= 0) {
			e = deputy_restore(&t, NULL, from, from_fd);
			if (!e) { ctlf("OK"); return 0; }
			report_err();
			if (t.dead) return 1;
		} else if (!strcmp(line, "RESTORE") || sscanf(line, "RESTORE %4095s", arg) == 1) {
			e = deputy_restore(&t, strcmp(line, "RESTORE") ? arg : NULL, 0, -1);
			if (!e) { ctlf("OK"); return 0; }
			report_err();
			if (t.dead) return 1;
		} else if (sscanf(line, "PULL %d %d", &num, &e) == 2) {
			/* at most e bytes of the original's socket fd num, if there are some now */
			int k = 0;
			while (k < nrl && !(rl[k].pull && rl[k].fd == num)) k++;
			if (k == nrl) { ctlf("ERR EINVAL fd %d is not pulled", num); continue; }
			ssize_t n = recv(rl[k].src, rbuf, e < 1 ? 1 : e > (int)sizeof rbuf ? (int)sizeof rbuf : e, MSG_DONTWAIT);
			if (n > 0) write_all_to(rl[k].dst, rbuf, n);
			ctlf("PULLED %d %zd", num, n > 0 ? n : n == 0 ? -1 : errno == EAGAIN || errno == EINTR ? 0 : -1);
		} else if (sscanf(line, "CLOSE %d %c", &num, arg) == 2 && num >= 0 && (arg[0] == 'c' || arg[0] == 'w')) {
			if (deputy_close(&t, num, arg[0] == 'w')) { report_err(); if (t.dead) return 1; continue; }
			ctlf("OK");
		} else if (!strncmp(line, "FDS", 3) || !strncmp(line, "RELAY", 5)) {
			/* FDS [fd...]: the original's descriptors by path (default 0 1 2). RELAY [fd:dir...]:
			 * through pipes of the deputy's: r its input (copied as it comes), w its output, s a
			 * socket both ways (its input only on PULL); default 0:r 1:w 2:w */
			int relay = line[0] == 'R';
			char *rest = line + (relay ? 5 : 3);
			char def[16];
			if (!strspn(rest, " ")) { snprintf(def, sizeof def, "%s", relay ? "0:r 1:w 2:w" : "0 1 2"); rest = def; }
			int pfd = syscall(NR_PIDFD_OPEN, pid, 0);
			for (char *tok = strtok(rest, " "); tok; tok = strtok(NULL, " ")) {
				int fd = atoi(tok);
				char dir = relay ? (strchr(tok, ':') ? strchr(tok, ':')[1] : 'r') : 'p';
				int d = pfd < 0 ? -1 : syscall(NR_PIDFD_GETFD, pfd, fd, 0);
				int p[2], q[2];
				if (d >= 0) fcntl(d, F_SETFD, FD_CLOEXEC);
				if (d < 0) ctlf("FD %d - %s", fd, errname(errno));
				else if (!relay) {
					if (nfc < MAX_RL) { fc[nfc].fd = fd; fc[nfc++].d = d; }
					ctlf("FD %d /proc/%d/fd/%d", fd, getpid(), d);
				}
				else if (nrl + 2 > MAX_RL || pipe2(p, O_CLOEXEC)) { ctlf("FD %d - %s", fd, errname(nrl + 2 > MAX_RL ? ENFILE : errno)); close(d); }
				else if (dir == 'r') {	/* its input -> a pipe the caller reads */
					rl[nrl++] = (struct rl){ d, p[1], fd, 0, 0 };
					ctlf("FD %d /proc/%d/fd/%d", fd, getpid(), p[0]);
				} else if (dir == 'w') {	/* a pipe the caller writes -> its output */
					rl[nrl++] = (struct rl){ p[0], d, fd, 0, 1 };
					ctlf("FD %d /proc/%d/fd/%d", fd, getpid(), p[1]);
				} else if (pipe2(q, O_CLOEXEC)) { ctlf("FD %d - %s", fd, errname(errno)); close(d); close(p[0]); close(p[1]); }
				else {			/* a socket: pulled into p, written from q */
					fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
					int d2 = dup(d);
					fcntl(d2, F_SETFD, FD_CLOEXEC);
					rl[nrl++] = (struct rl){ d, p[1], fd, 1, 0 };
					rl[nrl++] = (struct rl){ q[0], d2, fd, 0, 1 };
					ctlf("FD %d /proc/%d/fd/%d /proc/%d/fd/%d", fd, getpid(), p[0], getpid(), q[1]);
				}
			}
			if (pfd >= 0) close(pfd);
			ctlf("OK");
		} else ctlf("ERR EINVAL unknown deputy command '%s'", line);
	}
	return 1;
}
