/* Keeper mode of restore (`restore --keep LEASE_MS`): the restore helper stays the restored
 * process's parent and keeps it independent of the daemon that asked for it, so that the process
 * survives that daemon's crash and a restart (docs/ppm.md "Keeper"):
 *  - its fds 0-2 are pipes the helper made and holds the other ends of (the writer of its stdin,
 *    the readers of its stdout and stderr): no EOF on its stdin and no SIGPIPE on its output while
 *    no daemon is there; what it writes waits in the pipes;
 *  - the control lines after PID go into a pipe whose reader the helper holds too, so that its
 *    end (EXIT/KILLED) waits there for a daemon;
 *  - a daemon opens all of these by /proc/<helper>/fd/<n> (numbers in the KEEP line), the command
 *    pipe last: while that pipe has a writer, a daemon is attached. Commands: GO (with --hold: the
 *    held process runs; every GO is answered RUNNING once it runs), RELAY-END fd (closes the
 *    keeper's writer of a relayed fd's input, relay.c), RELAY-BROKEN fd (its output fd 1, 2 or
 *    above is broken at home: the keeper's reader of it is replaced by the reader of a pipe without
 *    writer, so that the process's next write fails with EPIPE and a daemon that attaches later
 *    reads the end there), STDIN-END (closes the writer
 *    of its stdin), SIGQUEUE sig code pid uid value (a signal passed on from home, sent with
 *    that siginfo where the kernel lets another process queue it: sigq.c), DONE (the daemon has
 *    passed its end on: the helper may leave once it ended);
 *  - with no daemon attached for LEASE_MS, the process is killed (the lease); once it has ended,
 *    the helper leaves on DONE, or when no daemon has come for it for the lease. Until then its
 *    end waits in the control pipe, for a daemon started again if the last one died before it
 *    passed the end on.
 * With --family it holds the family listener (family.c): FAMILY lines into the control pipe, DENY
 * commands on the command pipe, the waiting calls said again to a daemon that attaches. */
#include "ppm.h"
#include "threads.h"

static int keep_pipe(int p[2])
{
	return pipe2(p, O_CLOEXEC) ? fail(errno, "pipe: %s", strerror(errno)) : 0;
}

/* Before the stub is spawned: the process's stdio pipes go on fds 0-2 (the stub inherits them),
 * the other ends and the control and command pipes stay with the helper. */
int keep_prepare(struct keep *k)
{
	int in[2], out[2], err[2], c[2], m[2];
	/* a keeper outlives its daemon: it holds nothing of the daemon's but fds 3 and 4 (let go
	 * later), e.g. not its /dev/fuse descriptor, whose last close would unmount its tree */
	syscall(SYS_close_range, 5, ~0U, 0);
	if (keep_pipe(in) || keep_pipe(out) || keep_pipe(err) || keep_pipe(c) || keep_pipe(m)) return -1;
	if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) return fail(errno, "dup2: %s", strerror(errno));
	close(in[0]);
	close(out[1]);
	close(err[1]);
	close(m[1]);	/* the helper only reads its commands: no writer means no daemon */
	k->in_w = in[1];
	k->out_r = out[0];
	k->err_r = err[0];
	k->ctl_r = c[0];
	k->ctl_w = c[1];
	k->cmd_r = m[0];
	return 0;
}

/* After the stub is spawned: the helper lets go of the process's ends of its stdio. */
void keep_spawned(void)
{
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul < 0) return;
	dup2(nul, 0);
	dup2(nul, 1);
	dup2(nul, 2);
	close(nul);
}

/* lets the held process run (all its threads), with the signals that were pending at its dump */
static int keep_go(struct tracee *t, struct image *im)
{
	if (restored_run(t, im)) {
		ctlf("ERR %s %s", errname(g_errno), g_err);
		clear_err();
		kill(t->pid, SIGKILL);
		return -1;
	}
	ctlf("STAT running_at=%.3f", clock_ns(CLOCK_REALTIME) / 1e6);	/* as a restore's (ppm.c): the end of a downtime */
	return 0;
}

/* The restored process pid runs (or is held, `hold`) under the helper until it ends; see the top
 * of this file. Returns the helper's exit status. */
int keep_run(struct keep *k, struct tracee *t, struct image *im, int hold, long lease_ms)
{
	pid_t pid = t->pid;
	trace("keep-run");
	ctlf("KEEP in=%d out=%d err=%d ctl=%d cmd=%d", k->in_w, k->out_r, k->err_r, k->ctl_r, k->cmd_r);
	ctlf("PID %d", pid);
	if (!hold && keep_go(t, im)) return 1;
	/* from now on control lines go into the kept pipe; the caller's fds 3 and 4 are let go */
	FILE *f = fdopen(k->ctl_w, "w");
	if (!f) { kill_reap(pid); return 1; }
	if (ctl != stdout) fclose(ctl);
	ctl = f;
	close(3);
	int pfd = syscall(NR_PIDFD_OPEN, pid, 0);
	int ended = 0, done = 0, was_attached = 0;
	char end_line[32] = "";	/* EXIT n / KILLED n, said again to each daemon that attaches */
	double orphan = now_ms();	/* since when no daemon is attached (0: one is) */
	char buf[256];
	size_t len = 0;
	for (;;) {
		if (!ended) {
			int st;
			/* held, its other threads are traced by us too: those that ended (it was killed) are
			 * reaped here, or its main thread's end would never be reported */
			for (int i = 0; i < t->nthr; i++)
				if (!t->thr[i].dead && waitpid(t->thr[i].pid, &st, WNOHANG | __WALL) == t->thr[i].pid && (WIFEXITED(st) || WIFSIGNALED(st))) t->thr[i].dead = 1;
			pid_t w = waitpid(pid, &st, WNOHANG | __WALL);
			if (w == pid && (WIFEXITED(st) || WIFSIGNALED(st))) {
				ended = 1;
				if (WIFEXITED(st)) snprintf(end_line, sizeof end_line, "EXIT %d", WEXITSTATUS(st));
				else snprintf(end_line, sizeof end_line, "KILLED %d", WTERMSIG(st));
				ctlf("%s", end_line);
				if (pfd >= 0) { close(pfd); pfd = -1; }
			}
			/* (a stop of the held, traced process is left as it is: it runs only after GO) */
		}
		struct pollfd q = { k->cmd_r, POLLIN, 0 };
		if (poll(&q, 1, 0) < 0 && errno != EINTR) return 1;
		if (q.revents & POLLIN) {
			ssize_t n = read(k->cmd_r, buf + len, sizeof buf - 1 - len);
			if (n > 0) {
				len += n;
				char *nl;
				while ((nl = memchr(buf, '\n', len))) {
					*nl = 0;
					if (!strcmp(buf, "GO")) {
						/* every GO is answered once the process runs (it may be traced no more) */
						if (hold && !ended && keep_go(t, im) == 0) hold = 0;
						if (!hold && !ended) ctlf("RUNNING");
					} else if (!strcmp(buf, "STDIN-END")) {
						if (k->in_w >= 0) { close(k->in_w); k->in_w = -1; }
					} else if (!strncmp(buf, "RELAY-END ", 10)) {
						relay_end(atoi(buf + 10));	/* the end of a relayed fd's input (relay.c) */
					} else if (!strncmp(buf, "RELAY-BROKEN ", 13)) {
						/* its output is broken at home: no reader of it here any more (relay.c) */
						int fd = atoi(buf + 13);
						if (fd == 1 || fd == 2) relay_dead_reader(fd == 1 ? k->out_r : k->err_r);
						else relay_broken(fd);
					} else if (!strcmp(buf, "DONE")) {
						done = 1;
					} else if (!strncmp(buf, "SIGQUEUE ", 9)) {
						/* a signal home passes on with its siginfo (sigq.c) */
						if (!ended && sigq_command(pid, buf)) ctlf("ERR EINVAL bad SIGQUEUE line");
					} else if (family_command(buf)) {
						ctlf("ERR EINVAL unknown keeper command '%s'", buf);
					}
					size_t used = nl + 1 - buf;
					memmove(buf, nl + 1, len - used);
					len -= used;
				}
				if (len == sizeof buf - 1) len = 0;	/* an overlong line is dropped */
				continue;
			}
		}
		int attached = !(q.revents & (POLLHUP | POLLERR));
		/* a daemon that attaches after the end (the last one may have read the line and died) hears it */
		if (attached && !was_attached && ended) ctlf("%s", end_line);
		/* and the family calls still waiting for an answer */
		if (attached && !was_attached && !ended) family_repeat();
		was_attached = attached;
		if (attached) orphan = 0;
		else if (orphan == 0) orphan = now_ms();
		if (ended && done) return 0;	/* its daemon has passed its end on */
		if (orphan != 0 && now_ms() - orphan > lease_ms) {
			if (ended) return 0;	/* nobody came for it: its end and unread output are lost */
			kill(pid, SIGKILL);	/* the lease: nobody can tell its home about it any more */
		}
		int lfd = ended ? -1 : family_listener();
		struct pollfd w[3] = { { attached ? k->cmd_r : -1, POLLIN, 0 }, { ended ? -1 : pfd, POLLIN, 0 }, { lfd, POLLIN, 0 } };
		/* no daemon attached: the command pipe cannot be polled (it says POLLHUP until a writer
		 * comes), so it is looked at again every 1 ms for the first second (a daemon attaching
		 * after the restore, whose GO must not wait), every 200 ms after that */
		int ms = attached ? (pfd >= 0 ? -1 : 200) : now_ms() - orphan < 1000 ? 1 : 200;
		if (t->nthr && !ended && (ms < 0 || ms > 20)) ms = 20;	/* (held with threads: their ends are looked for, above) */
		if (poll(w, 3, ms) < 0 && errno != EINTR) return 1;
		if (lfd >= 0 && w[2].revents) family_recv(w[2].revents);
	}
}
