/* Control lines, errors, and small readers shared by every module. */
#include "ppm.h"
#include <pthread.h>

FILE *ctl;
static int g_trace = -1;
static char tbuf[16384];
static size_t tlen;
char g_err[1024];
int g_errno;

void ctlf(const char *fmt, ...)
{
	va_list ap;
	if (tlen) { fwrite(tbuf, 1, tlen, ctl); tlen = 0; }
	va_start(ap, fmt);
	vfprintf(ctl, fmt, ap);
	va_end(ap);
	fputc('\n', ctl);
	fflush(ctl);
}

/* the first failure is the one reported; a read-ahead thread (pipeline.c) may fail too */
static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;

/* each thread's last failure, whether or not it is the first (err_copy) */
static __thread char t_err[1024];

int fail(int e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t_err, sizeof t_err, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&err_mu);
	if (!g_err[0]) {
		snprintf(g_err, sizeof g_err, "%s", t_err);
		g_errno = e;
	}
	pthread_mutex_unlock(&err_mu);
	return -e;
}

const char *errname(int e)
{
	switch (e) {
	case EPERM: return "EPERM"; case ENOENT: return "ENOENT"; case ESRCH: return "ESRCH";
	case EINTR: return "EINTR"; case EIO: return "EIO"; case EBADF: return "EBADF";
	case ECHILD: return "ECHILD"; case EAGAIN: return "EAGAIN"; case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES"; case EFAULT: return "EFAULT"; case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST"; case EINVAL: return "EINVAL"; case ENOSPC: return "ENOSPC";
	case EPIPE: return "EPIPE"; case ERANGE: return "ERANGE"; case ENOSYS: return "ENOSYS";
	case EBADMSG: return "EBADMSG"; case EPROTO: return "EPROTO"; case ENOTSUP: return "ENOTSUP";
	case ENXIO: return "ENXIO"; case ESTALE: return "ESTALE";
	default: return "EIO";
	}
}

int report_err(void)
{
	/* a raw image (--copy) that failed before its first byte is ended by an empty image before the
	 * caller hears of it (it may write to the same connection next); whether any of it had gone is
	 * said (0: the empty image, the connection goes on): a dump kept frozen (frozen.c) has no copy
	 * beside the stream to tell; and whether the process had been stopped for its dump (seized=0
	 * after a pre-copy round: it ran, and what ended it was not the dump) */
	if (g_keep_fd >= 0 || g_copy_fd >= 0) {
		int streamed = g_streamed;
		cancel_empty_image();
		ctlf("STAT streamed=%d seized=%d", streamed, g_seized);
	}
	ctlf("ERR %s %s", errname(g_errno ? g_errno : EIO), g_err[0] ? g_err : "unknown failure");
	return 1;
}

/* One command line from fd 5 into line (NUL-terminated, without its newline); -1 at the end of
 * fd 5. A line longer than cap - 1 is read to its end and comes back empty (no command). */
int cmd_line(char *line, size_t cap)
{
	size_t n = 0;
	int over = 0;
	for (;;) {
		char c;
		ssize_t r = read(5, &c, 1);
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) return -1;
		if (c == '\n') break;
		if (n + 1 >= cap) over = 1;
		else line[n++] = c;
	}
	line[over ? 0 : n] = 0;
	return 0;
}

/* HPC_PPM_TRACE=1: "STAT t <what> <wall clock ms>" at the steps of a move, to line up the helpers
 * of both nodes with the daemons' logs. Kept until the next control line (no write of its own). */
void trace(const char *what)
{
	if (g_trace < 0) g_trace = getenv("HPC_PPM_TRACE") != NULL;
	if (!g_trace) return;
	int n = snprintf(tbuf + tlen, sizeof tbuf - tlen, "STAT t %s %.3f\n", what, clock_ns(CLOCK_REALTIME) / 1e6);
	if (n > 0 && (size_t)n < sizeof tbuf - tlen) tlen += n;
}

double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

ssize_t read_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -errno;
	size_t n = 0;
	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, cap - 1 - n);
		if (r < 0) { if (errno == EINTR) continue; int e = errno; close(fd); return -e; }
		if (r == 0) break;
		n += r;
	}
	buf[n] = 0;
	close(fd);
	return n;
}

int status_field(const char *status, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key);
	for (const char *p = status; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (!strncmp(p, key, kl) && p[kl] == ':') {
			p += kl + 1;
			while (*p == ' ' || *p == '\t') p++;
			size_t n = strcspn(p, "\n");
			if (n >= cap) n = cap - 1;
			memcpy(out, p, n);
			out[n] = 0;
			return 0;
		}
	}
	return -1;
}

/* The signals whose disposition is not the default (SigIgn | SigCgt of /proc/PID/status, bit s-1
 * for signal s), in *mask; the ignored ones alone in *ign (NULL: not wanted). A default
 * disposition needs no injected rt_sigaction to read or set. */
int sig_nondefault(pid_t pid, uint64_t *mask, uint64_t *ign)
{
	char fn[64], st[4096], v[32];
	snprintf(fn, sizeof fn, "/proc/%d/status", pid);
	if (read_file(fn, st, sizeof st) <= 0) return fail(errno ? errno : EIO, "reading %s", fn);
	*mask = 0;
	const char *keys[2] = { "SigIgn", "SigCgt" };
	for (int i = 0; i < 2; i++) {
		if (status_field(st, keys[i], v, sizeof v)) return fail(EIO, "%s: no %s", fn, keys[i]);
		uint64_t m = strtoull(v, NULL, 16);
		*mask |= m;
		if (i == 0 && ign) *ign = m;
	}
	return 0;
}

void clear_err(void)
{
	pthread_mutex_lock(&err_mu);
	g_err[0] = 0;
	g_errno = 0;
	pthread_mutex_unlock(&err_mu);
}

/* the message of this thread's last failure (a reader thread keeps its own: the main thread may
 * have a failure of its own, or clear it) */
void err_copy(char *buf, size_t n)
{
	snprintf(buf, n, "%s", t_err);
}

int ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

/* a whole (small, /proc) file, NUL-terminated; NULL on error */
char *read_file_alloc(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return NULL;
	size_t n = 0, cap = 4096;
	char *b = malloc(cap);
	for (;;) {
		if (n + 1 >= cap) { cap *= 2; b = realloc(b, cap); }
		ssize_t r = read(fd, b + n, cap - 1 - n);
		if (r < 0) { if (errno == EINTR) continue; free(b); close(fd); return NULL; }
		if (r == 0) break;
		n += r;
	}
	close(fd);
	b[n] = 0;
	return b;
}

/* a duplicate of descriptor fd of process pid (pidfd_open + pidfd_getfd: close-on-exec), or -1
 * with errno set */
int fd_of(pid_t pid, int fd)
{
	int pfd = syscall(NR_PIDFD_OPEN, pid, 0);
	if (pfd < 0) return -1;
	int d = syscall(NR_PIDFD_GETFD, pfd, fd, 0);
	int e = errno;
	close(pfd);
	errno = e;
	return d;
}
