/* Pipes and socketpairs whose both ends the process holds, with the bytes buffered in them.
 *
 * Dump, without disturbing the original: a pipe's buffered bytes are copied with tee(2) into a
 * pipe of the helper of the same capacity (tee does not consume them), then read from there; a
 * unix socket's receive queue is read with MSG_PEEK, stepping through it with SO_PEEK_OFF (put
 * back as it was). Both through a duplicate of the descriptor (pidfd_getfd). Packet boundaries
 * (O_DIRECT pipes) and message boundaries (datagram, seqpacket) become FDDATA records.
 * The peer of a unix socket, its type and shutdown state come from sock_diag (NETLINK_SOCK_DIAG).
 *
 * Restore: pipe2 or socketpair injected in the target; capacity, socket buffers and options are
 * set from the helper on a duplicate; the data is written into the pipe's write end (through a
 * non-blocking open of /proc/PID/fd/N) or sent from the peer socket, in order; shutdown last. */
#include "ppm.h"
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

#define QUEUE_MAX (256UL << 20)	/* more buffered data than this in one descriptor is refused */

/* ---------- sock_diag ---------- */

struct unix_info { int found, type, state, has_name, shutdown; uint32_t peer; };

static int unix_diag(uint32_t ino, struct unix_info *u)
{
	memset(u, 0, sizeof *u);
	int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0) return fail(errno, "netlink sock_diag: %s", strerror(errno));
	struct { struct nlmsghdr h; struct unix_diag_req r; } req;
	memset(&req, 0, sizeof req);
	req.h.nlmsg_len = sizeof req;
	req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.h.nlmsg_flags = NLM_F_REQUEST;
	req.r.sdiag_family = AF_UNIX;
	req.r.udiag_states = -1;
	req.r.udiag_ino = ino;
	req.r.udiag_show = UDIAG_SHOW_PEER | UDIAG_SHOW_NAME;
	req.r.udiag_cookie[0] = req.r.udiag_cookie[1] = ~0U;
	char buf[8192];
	int n = -1;
	if (send(nl, &req, sizeof req, 0) == sizeof req) n = recv(nl, buf, sizeof buf, 0);
	close(nl);
	if (n < (int)sizeof(struct nlmsghdr)) return fail(EIO, "sock_diag gave no answer for socket %u", ino);
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	if (h->nlmsg_type == NLMSG_ERROR) return 0;	/* not a unix socket (ENOENT) */
	if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len > (unsigned)n) return fail(EIO, "sock_diag: bad answer");
	struct unix_diag_msg *m = NLMSG_DATA(h);
	u->found = 1;
	u->type = m->udiag_type;
	u->state = m->udiag_state;
	struct nlattr *a = (struct nlattr *)(m + 1);
	int rem = h->nlmsg_len - NLMSG_LENGTH(sizeof *m);
	while (rem >= (int)sizeof *a && a->nla_len >= sizeof *a && a->nla_len <= rem) {
		void *d = (char *)a + NLA_HDRLEN;
		if (a->nla_type == UNIX_DIAG_PEER) u->peer = *(uint32_t *)d;
		else if (a->nla_type == UNIX_DIAG_NAME) u->has_name = 1;
		else if (a->nla_type == UNIX_DIAG_SHUTDOWN) u->shutdown = *(uint8_t *)d;
		int l = NLA_ALIGN(a->nla_len);
		rem -= l;
		a = (struct nlattr *)((char *)a + l);
	}
	return 0;
}

static const char *family_name(int fam)
{
	switch (fam) {
	case AF_INET: return "AF_INET"; case AF_INET6: return "AF_INET6"; case AF_NETLINK: return "AF_NETLINK";
	case AF_PACKET: return "AF_PACKET"; case AF_UNIX: return "AF_UNIX"; default: return "another family";
	}
}

/* ---------- check ---------- */

int pipe_check(struct fdtab *tab, struct fdent *e, int print)
{
	int rd = 0, wr = 0;
	for (int i = 0; i < tab->n; i++) {
		struct fdent *o = &tab->v[i];
		if (o->fd <= 2 || o->dup_of >= 0 || o->kind != F_PIPE || o->st.st_ino != e->st.st_ino) continue;
		rd |= (o->flags & O_ACCMODE) == O_RDONLY;
		wr |= (o->flags & O_ACCMODE) == O_WRONLY;
	}
	if (rd && wr) return 0;
	return reason(print, "fd-pipe", "fd %d is an unnamed pipe (%s) whose %s end is not held by this process above fd 2", e->fd, e->link,
		      (e->flags & O_ACCMODE) == O_RDONLY ? "write" : "read");
}

int unix_check(struct fdtab *tab, struct fdent *e, int print)
{
	struct unix_info u;
	if (unix_diag(e->st.st_ino, &u)) { clear_err(); return reason(print, "fd-socket", "fd %d is a socket (%s) that cannot be examined", e->fd, e->link); }
	if (!u.found) {
		int fam = -1;
		socklen_t sl = sizeof fam;
		int d = fdtab_getfd(tab, e->fd);
		if (d >= 0) { getsockopt(d, SOL_SOCKET, SO_DOMAIN, &fam, &sl); close(d); }
		clear_err();
		return reason(print, "fd-socket", "fd %d is a socket (%s, %s): only socketpairs whose both ends the process holds can move", e->fd, e->link, family_name(fam));
	}
	if (u.has_name) return reason(print, "fd-socket", "fd %d is a unix socket bound to a name (%s): only socketpairs can move", e->fd, e->link);
	if (u.state == 10 /* TCP_LISTEN */) return reason(print, "fd-socket", "fd %d is a listening unix socket (%s)", e->fd, e->link);
	struct fdent *p = NULL;
	for (int i = 0; i < tab->n && u.peer; i++)
		if (tab->v[i].kind == F_UNIX && tab->v[i].st.st_ino == u.peer && tab->v[i].fd > 2) p = &tab->v[i];
	if (!p) return reason(print, "fd-socket", "fd %d is a unix socket (%s) whose peer is not held by this process above fd 2", e->fd, e->link);
	if (u.type != SOCK_STREAM && u.type != SOCK_DGRAM && u.type != SOCK_SEQPACKET)
		return reason(print, "fd-socket", "fd %d is a unix socket of type %d", e->fd, u.type);
	return 0;
}

/* ---------- dump ---------- */

int pipe_dump(struct fdtab *tab, struct fdent *e, struct img_fd *f)
{
	f->obj = e->st.st_ino;
	int d = fdtab_getfd(tab, e->fd);
	if (d < 0) return d;
	int sz = fcntl(d, F_GETPIPE_SZ);
	close(d);
	if (sz < 0) return fail(errno, "F_GETPIPE_SZ on fd %d: %s", e->fd, strerror(errno));
	f->u.pipe.size = sz;
	return 0;
}

int unix_dump(struct fdtab *tab, struct fdent *e, struct img_fd *f)
{
	struct unix_info u;
	int r = unix_diag(e->st.st_ino, &u);
	if (r) return r;
	if (!u.found || u.has_name || !u.peer) return fail(ENOTSUP, "fd %d (%s) is not one end of a socketpair", e->fd, e->link);
	f->obj = e->st.st_ino;
	f->u.sock.type = u.type;
	f->u.sock.shutdown = u.shutdown;
	f->u.sock.peer_ino = u.peer;
	int d = fdtab_getfd(tab, e->fd);
	if (d < 0) return d;
	socklen_t sl = sizeof(int);
	int ok = !getsockopt(d, SOL_SOCKET, SO_SNDBUF, &f->u.sock.sndbuf, &sl);
	sl = sizeof(int);
	ok = ok && !getsockopt(d, SOL_SOCKET, SO_RCVBUF, &f->u.sock.rcvbuf, &sl);
	sl = sizeof(int);
	ok = ok && !getsockopt(d, SOL_SOCKET, SO_PASSCRED, &f->u.sock.passcred, &sl);
	sl = sizeof(int);
	ok = ok && !getsockopt(d, SOL_SOCKET, SO_PEEK_OFF, &f->u.sock.peek_off, &sl);
	int err = errno;
	close(d);
	if (!ok) return fail(err, "socket options of fd %d: %s", e->fd, strerror(err));
	return 0;
}

static int put_data(struct imgw *w, int fd, const uint8_t *p, size_t n)
{
	struct img_fddata dd = { fd, 0, 0 };
	return rec_put(w, R_FDDATA, &dd, sizeof dd, p, n);
}

/* a pipe's buffered bytes, copied by tee into a pipe of our own, then read in packets */
static int pipe_data(struct imgw *w, struct fdtab *tab, const struct img_fd *f, uint8_t *buf)
{
	int d = fdtab_getfd(tab, f->fd);
	if (d < 0) return d;
	int avail = 0, e = 0, p[2] = { -1, -1 };
	if (ioctl(d, FIONREAD, &avail)) e = fail(errno, "FIONREAD on fd %d: %s", f->fd, strerror(errno));
	if (!e && avail > 0) {
		if (pipe2(p, O_CLOEXEC | O_NONBLOCK)) e = fail(errno, "pipe: %s", strerror(errno));
		else if (fcntl(p[1], F_SETPIPE_SZ, f->u.pipe.size) < 0) e = fail(errno, "F_SETPIPE_SZ %u: %s", f->u.pipe.size, strerror(errno));
		ssize_t got = e ? 0 : tee(d, p[1], avail, SPLICE_F_NONBLOCK);
		if (!e && got != avail) e = fail(EIO, "fd %d: copying the %d bytes buffered in the pipe gave %zd", f->fd, avail, got);
		for (ssize_t left = got; !e && left > 0;) {
			ssize_t r = read(p[0], buf, CHUNK);
			if (r <= 0) { e = fail(EIO, "reading the copy of pipe fd %d", f->fd); break; }
			e = put_data(w, f->fd, buf, r);
			left -= r;
		}
	}
	if (p[0] >= 0) { close(p[0]); close(p[1]); }
	close(d);
	return e;
}

/* a socket's receive queue, peeked message by message (stream: run by run) */
static int unix_data(struct imgw *w, struct fdtab *tab, const struct img_fd *f, uint8_t *buf)
{
	int d = fdtab_getfd(tab, f->fd);
	if (d < 0) return d;
	int zero = 0, e = 0;
	if (setsockopt(d, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof zero)) { int er = errno; close(d); return fail(er, "SO_PEEK_OFF on fd %d: %s", f->fd, strerror(er)); }
	uint64_t total = 0;
	for (;;) {
		union { struct cmsghdr h; char b[CMSG_SPACE(253 * sizeof(int))]; } cm;
		struct iovec iov = { buf, CHUNK };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &cm, .msg_controllen = sizeof cm };
		ssize_t r = recvmsg(d, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (r < 0) {
			if (errno == EINTR) continue;
			if (errno != EAGAIN) e = fail(errno, "peeking into socket fd %d: %s", f->fd, strerror(errno));
			break;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
				int *fds = (int *)CMSG_DATA(c);
				for (size_t k = 0; k < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++) close(fds[k]);
				e = fail(ENOTSUP, "socket fd %d has descriptors in flight (SCM_RIGHTS) in its queue", f->fd);
			}
		}
		if (e) break;
		if (mh.msg_flags & MSG_TRUNC) { e = fail(ENOTSUP, "socket fd %d: a queued message is larger than %lu bytes", f->fd, CHUNK); break; }
		if (r == 0) {
			if (f->u.sock.type != SOCK_STREAM) e = fail(ENOTSUP, "socket fd %d has an empty datagram queued", f->fd);
			break;	/* a stream: end of data after a shutdown */
		}
		if (f->u.sock.passcred) { e = fail(ENOTSUP, "socket fd %d receives credentials (SO_PASSCRED) with its queued data", f->fd); break; }
		total += r;
		if (total > QUEUE_MAX) { e = fail(ENOTSUP, "socket fd %d has more than %lu bytes queued", f->fd, QUEUE_MAX); break; }
		if ((e = put_data(w, f->fd, buf, r))) break;
	}
	int old = f->u.sock.peek_off;
	setsockopt(d, SOL_SOCKET, SO_PEEK_OFF, &old, sizeof old);
	close(d);
	return e;
}

int queues_dump_data(struct imgw *w, struct fdtab *tab, struct img_fd *fds, int n)
{
	uint8_t *buf = malloc(CHUNK);
	int e = 0;
	for (int i = 0; i < n && !e; i++) {
		struct img_fd *f = &fds[i];
		if (f->dup_of >= 0 || f->reopen_of >= 0) continue;
		if (f->kind == F_PIPE && (f->flags & O_ACCMODE) == O_RDONLY) e = pipe_data(w, tab, f, buf);
		else if (f->kind == F_UNIX) e = unix_data(w, tab, f, buf);
	}
	free(buf);
	return e;
}

/* ---------- restore ---------- */

int pipe_create(struct tracee *t, const struct img_fd *f, uint64_t scr, long out[2])
{
	(void)f;
	int e = INJ(t, NULL, SYS_pipe2, scr, 0, 0, 0, 0, 0);
	int32_t p[2];
	if (!e) e = mem_read(t, scr, p, sizeof p);
	out[0] = p[0];
	out[1] = p[1];
	return e;
}

int unix_create(struct tracee *t, const struct img_fd *f, uint64_t scr, long out[2])
{
	int e = INJ(t, NULL, SYS_socketpair, AF_UNIX, f->u.sock.type, 0, scr, 0, 0);
	int32_t p[2];
	if (!e) e = mem_read(t, scr, p, sizeof p);
	out[0] = p[0];
	out[1] = p[1];
	return e;
}

int queue_setup(struct fdrestore *fr, const struct img_fd *f)
{
	int d = target_fd(fr, f->fd);
	if (d < 0) return d;
	if (f->kind == F_PIPE) {
		if ((f->flags & O_ACCMODE) == O_RDONLY && fcntl(d, F_SETPIPE_SZ, f->u.pipe.size) < 0)
			return fail(errno, "fd %d: pipe capacity %u: %s", f->fd, f->u.pipe.size, strerror(errno));
		return 0;
	}
	/* the kernel reports twice what was asked for */
	int snd = f->u.sock.sndbuf / 2, rcv = f->u.sock.rcvbuf / 2, pc = f->u.sock.passcred;
	if (setsockopt(d, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd) || setsockopt(d, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) ||
	    setsockopt(d, SOL_SOCKET, SO_PASSCRED, &pc, sizeof pc))
		return fail(errno, "fd %d: socket options: %s", f->fd, strerror(errno));
	return 0;
}

int queue_data(struct fdrestore *fr, struct image *im, const struct img_fd *f, const uint8_t *data, size_t len)
{
	if (f->kind == F_PIPE) {
		if ((f->flags & O_ACCMODE) != O_RDONLY) return fail(EBADMSG, "pipe data for fd %d, a write end", f->fd);
		/* a description of our own on the write end, non-blocking whatever the process's is, and
		 * in packet mode (O_DIRECT) if the process's write end is: a write is then one packet */
		int direct = 0;
		for (int i = 0; i < im->nfd; i++) if (im->fds[i].fd == f->peer) direct = im->fds[i].flags & O_DIRECT;
		char p[64];
		snprintf(p, sizeof p, "/proc/%d/fd/%d", fr->pid, f->peer);
		int w = open(p, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
		if (w < 0) return fail(errno, "opening the write end of pipe fd %d: %s", f->fd, strerror(errno));
		if (direct && fcntl(w, F_SETFL, O_NONBLOCK | O_DIRECT)) { int er = errno; close(w); return fail(er, "packet mode on pipe fd %d: %s", f->fd, strerror(er)); }
		ssize_t r = write(w, data, len);
		int er = errno;
		close(w);
		if (r != (ssize_t)len) return fail(r < 0 ? er : EIO, "refilling pipe fd %d: %s", f->fd, r < 0 ? strerror(er) : "short write");
		return 0;
	}
	int d = target_fd(fr, f->peer);
	if (d < 0) return d;
	for (size_t off = 0; off < len;) {
		ssize_t r = send(d, data + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) return fail(r < 0 ? errno : EIO, "refilling the queue of socket fd %d: %s", f->fd, r < 0 ? strerror(errno) : "nothing sent");
		if (f->u.sock.type != SOCK_STREAM && (size_t)r != len) return fail(EIO, "socket fd %d: a message was cut", f->fd);
		off += r;
	}
	return 0;
}

int queue_finish(struct fdrestore *fr, const struct img_fd *f)
{
	if (f->kind != F_UNIX) return 0;
	int d = target_fd(fr, f->fd);
	if (d < 0) return d;
	if ((f->u.sock.shutdown & 2 /* SEND_SHUTDOWN */) && shutdown(d, SHUT_WR)) return fail(errno, "fd %d: shutdown: %s", f->fd, strerror(errno));
	if ((f->u.sock.shutdown & 1 /* RCV_SHUTDOWN */) && shutdown(d, SHUT_RD)) return fail(errno, "fd %d: shutdown: %s", f->fd, strerror(errno));
	if (f->u.sock.peek_off >= 0 && setsockopt(d, SOL_SOCKET, SO_PEEK_OFF, &f->u.sock.peek_off, sizeof(int)))
		return fail(errno, "fd %d: SO_PEEK_OFF: %s", f->fd, strerror(errno));
	return 0;
}
