/* Descriptors relayed through home (--relay; docs/migrate.md, "Relayed descriptors").
 *
 * A descriptor above 2 that is an unnamed pipe whose other end is not held by the process alone
 * (its parent's, a pipeline's neighbour's, make's jobserver), or a connected stream socket (TCP,
 * or unix whose peer is elsewhere), cannot be recreated on another node. With --relay it travels
 * as an F_RELAY record instead of refusing the move:
 *   check/dump   relay_mark (from fdtab_read) marks it; the image keeps its number and flags;
 *                the deputy reports it (RELAYFD fd r|w|rw pipe|sock) so that home relays it
 *   restore      into the hollow original (g_relay_keep): the original still holds it, its flags
 *                are set again; into a fresh process: a pipe (same direction) or a socketpair end
 *                is put at its number with its flags, and the helper keeps the other end:
 *                RELAY fd r|w path        a pipe end the caller opens by path (writes: the
 *                                         process reads; reads: the process writes)
 *                RELAY fd rw rpath wpath  a socketpair pumped by a child of the helper into a
 *                                         pipe the caller reads and out of one it writes
 *                The caller sends RELAYED on fd 5 once it has opened them: the helper closes
 *                its copies, so that the caller's close is the end of the process's input. A
 *                keeper (keep.c) holds them for whoever attaches instead; RELAY-END fd closes
 *                its writer of that fd's input.
 * A socket that still cannot move (listening, datagram, another family) keeps a clear reason. */
#include "ppm.h"
#include <sys/socket.h>
#include <sys/prctl.h>
#include <signal.h>
#include <poll.h>
#include <sys/ioctl.h>

int g_relay;
int g_relay_keep;

#define MAX_RELAY 64
#define RELAY_SETFL (O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME | O_NONBLOCK)

/* fds of the image being dumped that are relayed (for the deputy's RELAYFD lines) */
static struct { int fd, type, acc; } dumped[MAX_RELAY];
static int ndumped;

/* after a restore into a fresh process: its relayed fds and the helper's ends */
static struct relay { int fd, type, acc; int mine; int r, w; int cr, cw; } rl[MAX_RELAY];	/* r, w: the pump's; cr, cw: the caller's */
static int nrl;

static const char *dir_of(int type, int acc)
{
	if (type == RT_SOCK) return "rw";
	return acc == O_RDONLY ? "r" : "w";	/* the process reads it, or writes it */
}

/* a connected stream socket of a family we relay (else 0); what it is goes to `what` */
static int stream_socket(struct fdtab *tab, int fd, char *what, size_t wl)
{
	int d = fdtab_getfd(tab, fd);
	if (d < 0) { clear_err(); snprintf(what, wl, "a socket that cannot be examined"); return 0; }
	int type = 0, acc = 0, fam = -1;
	socklen_t sl = sizeof type;
	getsockopt(d, SOL_SOCKET, SO_TYPE, &type, &sl);
	sl = sizeof acc;
	getsockopt(d, SOL_SOCKET, SO_ACCEPTCONN, &acc, &sl);
	sl = sizeof fam;
	getsockopt(d, SOL_SOCKET, SO_DOMAIN, &fam, &sl);
	struct sockaddr_storage ss;
	sl = sizeof ss;
	int conn = !getpeername(d, (struct sockaddr *)&ss, &sl);
	close(d);
	const char *f = fam == AF_UNIX ? "unix" : fam == AF_INET ? "TCP/IPv4" : fam == AF_INET6 ? "TCP/IPv6" : "other-family";
	if (fam != AF_UNIX && fam != AF_INET && fam != AF_INET6) { snprintf(what, wl, "a socket of another family (%d)", fam); return 0; }
	if (acc) { snprintf(what, wl, "a listening %s socket: connections to it would go to this node", f); return 0; }
	if (type == SOCK_DGRAM) { snprintf(what, wl, "a %s datagram socket: only byte streams are relayed", fam == AF_UNIX ? "unix" : "UDP"); return 0; }
	if (type != SOCK_STREAM) { snprintf(what, wl, "a %s socket of type %d: only byte streams are relayed", f, type); return 0; }
	if (!conn) { snprintf(what, wl, "an unconnected %s stream socket", f); return 0; }
	return 1;
}

void relay_mark(struct fdtab *tab)
{
	struct fdent **c = calloc(tab->n + 1, sizeof *c);
	char *whole = calloc(tab->n + 1, 1), *shared = calloc(tab->n + 1, 1);
	int nc = 0;
	for (int i = 0; i < tab->n; i++) {
		struct fdent *e = &tab->v[i];
		if (e->fd <= 2 || e->dup_of >= 0 || (e->kind != F_PIPE && e->kind != F_UNIX)) continue;
		whole[nc] = e->kind == F_PIPE ? !pipe_check(tab, e, 0) : !unix_check(tab, e, 0);
		c[nc++] = e;
	}
	if (nc) shared_objects(tab, c, nc, 0, shared);
	char what[160];
	for (int k = 0; k < nc; k++) {
		struct fdent *e = c[k];
		if (whole[k] && !shared[k]) continue;	/* recreated whole (pipes.c) */
		int t = e->kind == F_PIPE ? RT_PIPE : stream_socket(tab, e->fd, what, sizeof what) ? RT_SOCK : 0;
		if (!t) continue;	/* fds_check gives the reason */
		e->kind = F_RELAY;
		e->relay = t;
		for (int i = 0; i < tab->n; i++) if (tab->v[i].dup_of == e->fd) { tab->v[i].kind = F_RELAY; tab->v[i].relay = t; }
	}
	clear_err();
	free(c); free(whole); free(shared);
}

int relay_reason(struct fdtab *tab, struct fdent *e, int print)
{
	if (!unix_check(tab, e, 0)) return 0;
	char what[160];
	if (stream_socket(tab, e->fd, what, sizeof what)) return reason(print, "fd-socket", "fd %d (%s) cannot be relayed", e->fd, e->link);
	return reason(print, "fd-socket", "fd %d is %s (%s)", e->fd, what, e->link);
}

void relay_note(const struct img_fd *f)
{
	if (ndumped < MAX_RELAY) { dumped[ndumped].fd = f->fd; dumped[ndumped].type = f->u.sock.type; dumped[ndumped++].acc = f->flags & O_ACCMODE; }
}

/* a dump read again (a late GO, ppm.c): the relayed fds noted the first time are forgotten */
void relay_forget(void)
{
	ndumped = 0;
}

void relay_report_dumped(void)
{
	for (int i = 0; i < ndumped; i++)
		ctlf("RELAYFD %d %s %s", dumped[i].fd, dir_of(dumped[i].type, dumped[i].acc), dumped[i].type == RT_SOCK ? "sock" : "pipe");
}

/* the relayed fd f of an image: kept (hollow original) or recreated with its other end here */
int relay_restore(struct tracee *t, const struct img_fd *f, uint64_t scr)
{
	int cloexec = (f->flags & O_CLOEXEC) != 0, e;
	if (g_relay_keep) {
		e = INJ(t, NULL, SYS_fcntl, f->fd, F_SETFL, f->flags & RELAY_SETFL, 0, 0, 0);
		if (!e) e = INJ(t, NULL, SYS_fcntl, f->fd, F_SETFD, cloexec ? FD_CLOEXEC : 0, 0, 0, 0);
		return e;
	}
	if (nrl == MAX_RELAY) return fail(ENOTSUP, "more than %d relayed descriptors", MAX_RELAY);
	int type = f->u.sock.type, acc = f->flags & O_ACCMODE;
	if (type == RT_SOCK) e = INJ(t, NULL, SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, scr, 0, 0);
	else e = INJ(t, NULL, SYS_pipe2, scr, 0, 0, 0, 0, 0);
	int32_t two[2];
	if (!e) e = mem_read(t, scr, two, sizeof two);
	if (e) return e;
	/* the process's end: a pipe's read end if it reads it; the helper takes the other */
	int proc = type == RT_SOCK || acc == O_RDONLY ? two[0] : two[1], other = proc == two[0] ? two[1] : two[0];
	int mine = fd_of(t->pid, other);
	if (mine < 0) return fail(errno, "taking the relay end of fd %d: %s", f->fd, strerror(errno));
	fcntl(mine, F_SETFD, FD_CLOEXEC);
	e = INJ(t, NULL, SYS_close, other, 0, 0, 0, 0, 0);
	if (!e && proc != f->fd) {
		e = INJ(t, NULL, SYS_dup3, proc, f->fd, cloexec ? O_CLOEXEC : 0, 0, 0, 0);
		if (!e) e = INJ(t, NULL, SYS_close, proc, 0, 0, 0, 0, 0);
	} else if (!e) e = INJ(t, NULL, SYS_fcntl, f->fd, F_SETFD, cloexec ? FD_CLOEXEC : 0, 0, 0, 0);
	if (!e) e = INJ(t, NULL, SYS_fcntl, f->fd, F_SETFL, f->flags & RELAY_SETFL, 0, 0, 0);
	if (e) { close(mine); return e; }
	if (type != RT_SOCK) fcntl(mine, F_SETPIPE_SZ, 1 << 20);
	rl[nrl++] = (struct relay){ f->fd, type, acc, mine, -1, -1, -1, -1 };
	return 0;
}

static int write_all(int fd, const char *b, size_t n, int sock)
{
	while (n > 0) {
		ssize_t w = sock ? send(fd, b, n, MSG_NOSIGNAL) : write(fd, b, n);
		if (w < 0 && errno == EINTR) continue;
		if (w < 0 && errno == EAGAIN) { struct pollfd p = { fd, POLLOUT, 0 }; poll(&p, 1, -1); continue; }
		if (w <= 0) return -1;
		b += w;
		n -= w;
	}
	return 0;
}

/* the pump of the socketpairs: socket -> out pipe (closed at the socket's end), in pipe -> socket
 * (shut down for writing at the pipe's end), until both directions of every socket have ended. An
 * out pipe without reader (its output is broken at home) shuts the socket down for reading: the
 * process's next write fails with EPIPE, as its peer's close would make it at home */
static void pump(void)
{
	static char buf[65536];
	struct { int sock, out, in; } v[MAX_RELAY];
	int n = 0;
	for (int i = 0; i < nrl; i++) if (rl[i].type == RT_SOCK) { v[n].sock = rl[i].mine; v[n].out = rl[i].w; v[n].in = rl[i].r; n++; }
	for (;;) {
		struct pollfd pf[3 * MAX_RELAY];
		int live = 0;
		for (int i = 0; i < n; i++) {
			if (v[i].out < 0 && v[i].in < 0 && v[i].sock >= 0) { close(v[i].sock); v[i].sock = -1; }
			live += v[i].sock >= 0;
			pf[2 * i] = (struct pollfd){ v[i].out >= 0 ? v[i].sock : -1, POLLIN, 0 };
			pf[2 * i + 1] = (struct pollfd){ v[i].in, POLLIN, 0 };
			pf[2 * n + i] = (struct pollfd){ v[i].out, 0, 0 };	/* POLLERR: no reader */
		}
		if (!live) break;
		if (poll(pf, 3 * n, -1) < 0) { if (errno == EINTR) continue; break; }
		for (int i = 0; i < n; i++) {
			if ((pf[2 * n + i].revents & POLLERR) && v[i].out >= 0) {
				shutdown(v[i].sock, SHUT_RD);	/* broken at home */
				close(v[i].out);
				v[i].out = -1;
				continue;
			}
			if (pf[2 * i].revents && v[i].out >= 0) {
				ssize_t r = read(v[i].sock, buf, sizeof buf);
				if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
				if (r > 0 && !write_all(v[i].out, buf, r, 0)) continue;
				if (r > 0 && errno == EPIPE) shutdown(v[i].sock, SHUT_RD);	/* broken at home */
				close(v[i].out);	/* the process's end is closed (or gone): the end of its output */
				v[i].out = -1;
				if (r < 0 && v[i].in >= 0) { close(v[i].in); v[i].in = -1; }
			}
			if (pf[2 * i + 1].revents && v[i].in >= 0) {
				ssize_t r = read(v[i].in, buf, sizeof buf);
				if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
				if (r > 0 && !write_all(v[i].sock, buf, r, 1)) continue;
				if (r == 0) shutdown(v[i].sock, SHUT_WR);	/* the end of its input */
				close(v[i].in);
				v[i].in = -1;
			}
		}
	}
	_exit(0);
}

/* after the restore: the pump for socketpairs, and a RELAY line for each relayed fd */
int relay_start(void)
{
	int socks = 0;
	for (int i = 0; i < nrl; i++) {
		if (rl[i].type != RT_SOCK) continue;
		int a[2], b[2];	/* a: socket -> caller; b: caller -> socket */
		if (pipe2(a, O_CLOEXEC) || pipe2(b, O_CLOEXEC)) return fail(errno, "relay pipes: %s", strerror(errno));
		fcntl(a[0], F_SETPIPE_SZ, 1 << 20);
		rl[i].w = a[1]; rl[i].r = b[0];
		rl[i].cr = a[0]; rl[i].cw = b[1];	/* open here until RELAYED */
		socks++;
		ctlf("RELAY %d rw /proc/%d/fd/%d /proc/%d/fd/%d", rl[i].fd, getpid(), a[0], getpid(), b[1]);
	}
	if (socks) {
		pid_t p = fork();
		if (p < 0) return fail(errno, "fork: %s", strerror(errno));
		if (p == 0) {
			signal(SIGPIPE, SIG_IGN);
			prctl(PR_SET_PDEATHSIG, 0);
			int keep[3 * MAX_RELAY], nk = 0;
			for (int i = 0; i < nrl; i++) if (rl[i].type == RT_SOCK) { keep[nk++] = rl[i].mine; keep[nk++] = rl[i].w; keep[nk++] = rl[i].r; }
			for (int fd = 0; fd < 4096; fd++) {
				int k = 0;
				for (int j = 0; j < nk; j++) if (keep[j] == fd) k = 1;
				if (!k) close(fd);
			}
			pump();
		}
	}
	for (int i = 0; i < nrl; i++) {
		if (rl[i].type == RT_SOCK) {
			close(rl[i].mine); close(rl[i].w); close(rl[i].r);
			rl[i].mine = rl[i].w = rl[i].r = -1;
			continue;
		}
		ctlf("RELAY %d %s /proc/%d/fd/%d", rl[i].fd, dir_of(rl[i].type, rl[i].acc), getpid(), rl[i].mine);
	}
	return 0;
}

void relay_release(void)
{
	for (int i = 0; i < nrl; i++) {
		if (rl[i].mine >= 0) close(rl[i].mine);
		if (rl[i].cr >= 0) close(rl[i].cr);
		if (rl[i].cw >= 0) close(rl[i].cw);
		rl[i].mine = rl[i].cr = rl[i].cw = -1;
	}
}

/* (keeper) the end of the input of relayed fd: the helper's writer of it is closed */
void relay_end(int fd)
{
	for (int i = 0; i < nrl; i++) {
		if (rl[i].fd != fd) continue;
		if (rl[i].type == RT_SOCK && rl[i].cw >= 0) { close(rl[i].cw); rl[i].cw = -1; }
		if (rl[i].type == RT_PIPE && rl[i].acc == O_RDONLY && rl[i].mine >= 0) { close(rl[i].mine); rl[i].mine = -1; }
	}
}

/* the reader at descriptor fd is replaced by the reader of a pipe without writer: the pipe it read
 * has one reader less (none, once the daemon's is closed too: the writer gets EPIPE), and whoever
 * opens fd by path later reads its end at once */
void relay_dead_reader(int fd)
{
	int p[2];
	if (fd < 0 || pipe2(p, O_CLOEXEC)) return;
	close(p[1]);
	if (p[0] != fd) { dup3(p[0], fd, O_CLOEXEC); close(p[0]); }
}

/* (keeper) relayed output fd is broken at home: its reader here goes (a pipe the process writes:
 * the keeper's end; a socket: the caller's end of the pump's pipe, whose pump then shuts the
 * socketpair down for reading) */
void relay_broken(int fd)
{
	for (int i = 0; i < nrl; i++) {
		if (rl[i].fd != fd) continue;
		if (rl[i].type == RT_SOCK && rl[i].cr >= 0) relay_dead_reader(rl[i].cr);
		if (rl[i].type == RT_PIPE && rl[i].acc != O_RDONLY && rl[i].mine >= 0) relay_dead_reader(rl[i].mine);
	}
}

/* unread PID FD: how many bytes wait unread in descriptor fd of process pid (a pipe or a stream
 * socket: FIONREAD), on the control fd as UNREAD n. The daemon asks it of a relayed input it
 * handed bytes over before a move (src/migrate/relay.ts, StdinPull.settle). */
int cmd_unread(pid_t pid, int fd)
{
	int d = fd_of(pid, fd);
	if (d < 0) return fail(errno, "fd %d of %d: %s", fd, pid, strerror(errno));
	int n = 0;
	int e = ioctl(d, FIONREAD, &n) ? errno : 0;
	close(d);
	if (e) return fail(e, "FIONREAD on fd %d of %d: %s", fd, pid, strerror(e));
	ctlf("UNREAD %d", n);
	return 0;
}
