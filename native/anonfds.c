/* Descriptors behind an anonymous inode, read from their fdinfo and recreated by injected calls:
 *   eventfd   counter (eventfd-count) and EFD_SEMAPHORE (eventfd-semaphore); the counter is
 *             written into the new one from the helper
 *   timerfd   clock, remaining time and interval (relative: frozen while the process moves, as
 *             itimers are), TFD_TIMER_ABSTIME|CANCEL_ON_SET, expirations not yet read (ticks,
 *             set with TFD_IOC_SET_TICKS); armed at the end of the restore
 *   signalfd  its mask
 *   epoll     its interest list (tfd, events, data); each registration must still be the file at
 *             that fd (kcmp KCMP_EPOLL_TFD), and is added again with epoll_ctl in the target
 *   inotify   its watches (wd, mask, and the watched inode as a file handle, turned into a path
 *             with open_by_handle_at); recreated with the same wd numbers from the helper; the
 *             paths must exist on the target. Unread events cannot be carried: refused. */
#include "ppm.h"
#include <sys/ioctl.h>
#include <sys/inotify.h>
#include <sys/timerfd.h>

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

/* ---------- fdinfo parsing ---------- */

struct epoll_line { int tfd; uint32_t events; uint64_t data; };

/* the registrations of an epoll fd; returns the count (max cap) */
static int epoll_lines(const char *info, struct epoll_line *v, int cap)
{
	int n = 0;
	for (const char *p = strstr(info, "tfd:"); p && n < cap; p = strstr(p + 4, "tfd:")) {
		unsigned ev;
		unsigned long long data;
		int tfd;
		if (sscanf(p, "tfd: %d events: %x data: %llx", &tfd, &ev, &data) != 3) continue;
		v[n].tfd = tfd; v[n].events = ev; v[n].data = data;
		n++;
	}
	return n;
}

struct watch { int wd; uint32_t mask; char path[PATH_MAX]; int err; };

static int hexval(int c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; }

/* the path of the inode behind a file handle on filesystem sdev (as fdinfo prints it) */
static int handle_path(pid_t pid, unsigned sdev, int htype, const char *hex, unsigned hbytes, char *out, size_t cap)
{
	unsigned maj = sdev >> 20, min = sdev & 0xfffff;
	char fn[64], *mi;
	snprintf(fn, sizeof fn, "/proc/%d/mountinfo", pid);
	if (!(mi = read_file_alloc(fn))) return -EIO;
	char mnt[PATH_MAX] = "";
	int best = 0;
	for (char *l = mi; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		unsigned a, b;
		char root[PATH_MAX], point[PATH_MAX];
		if (sscanf(l, "%*d %*d %u:%u %4095s %4095s", &a, &b, root, point) != 4 || a != maj || b != min) continue;
		int score = !strcmp(root, "/") ? 2 : 1;	/* a mount of the whole filesystem finds any inode */
		if (score > best) { best = score; snprintf(mnt, sizeof mnt, "%s", point); }
	}
	free(mi);
	if (!best) return -ENOENT;
	union { struct file_handle h; unsigned char b[sizeof(struct file_handle) + 128]; } fh;
	if (hbytes > 128 || strlen(hex) < hbytes * 2) return -EINVAL;
	fh.h.handle_bytes = hbytes;
	fh.h.handle_type = htype;
	for (unsigned i = 0; i < hbytes; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) return -EINVAL;
		fh.h.f_handle[i] = hi << 4 | lo;
	}
	int mfd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (mfd < 0) return -errno;
	int fd = open_by_handle_at(mfd, &fh.h, O_PATH | O_CLOEXEC);
	int er = errno;
	close(mfd);
	if (fd < 0) return -er;
	snprintf(fn, sizeof fn, "/proc/self/fd/%d", fd);
	ssize_t l = readlink(fn, out, cap - 1);
	er = errno;
	close(fd);
	if (l < 0) return -er;
	out[l] = 0;
	if (ends_with(out, " (deleted)")) return -ESTALE;
	return 0;
}

/* the watches of an inotify fd; returns the count (max cap) */
static int inotify_watches(pid_t pid, const char *info, struct watch *v, int cap)
{
	int n = 0;
	for (const char *p = strstr(info, "inotify wd:"); p && n < cap; p = strstr(p + 11, "inotify wd:")) {
		unsigned wd, sdev, mask, hbytes;
		int htype;
		char hex[300];
		if (sscanf(p, "inotify wd:%x ino:%*x sdev:%x mask:%x ignored_mask:%*x fhandle-bytes:%x fhandle-type:%x f_handle:%299s", &wd, &sdev, &mask,
			   &hbytes, (unsigned *)&htype, hex) != 6)
			continue;
		v[n].wd = wd;
		v[n].mask = mask;
		v[n].err = handle_path(pid, sdev, htype, hex, hbytes, v[n].path, sizeof v[n].path);
		n++;
	}
	return n;
}

#define MAX_ITEMS 4096

/* ---------- check ---------- */

int anon_check(struct fdtab *tab, struct fdent *e, int print)
{
	int n = 0;
	if (e->kind == F_EPOLL) {
		static struct epoll_line v[MAX_ITEMS];
		int k = epoll_lines(e->info, v, MAX_ITEMS);
		if (k == MAX_ITEMS) return reason(print, "fd-epoll", "epoll fd %d has more than %d registrations", e->fd, MAX_ITEMS);
		for (int i = 0; i < k; i++) {
			struct { uint32_t efd, tfd, toff; } slot = { e->fd, v[i].tfd, 0 };
			/* the registration is keyed by fd number: that fd must still be the registered file */
			if (syscall(NR_KCMP, tab->pid, tab->pid, KCMP_EPOLL_TFD, v[i].tfd, &slot) != 0)
				n += reason(print, "fd-epoll", "epoll fd %d watches a file registered as fd %d that is no longer open at that number", e->fd, v[i].tfd);
		}
	} else if (e->kind == F_INOTIFY) {
		static struct watch v[MAX_ITEMS];
		int k = inotify_watches(tab->pid, e->info, v, MAX_ITEMS);
		if (k == MAX_ITEMS) return reason(print, "fd-inotify", "inotify fd %d has more than %d watches", e->fd, MAX_ITEMS);
		for (int i = 0; i < k; i++)
			if (v[i].err) n += reason(print, "fd-inotify", "inotify fd %d: the file of watch %d cannot be found by path (%s)", e->fd, v[i].wd,
						 v[i].err == -ESTALE ? "deleted" : strerror(-v[i].err));
		int d = fdtab_getfd(tab, e->fd), q = 0;
		clear_err();
		if (d >= 0) { ioctl(d, FIONREAD, &q); close(d); }
		if (q > 0) n += reason(print, "fd-inotify", "inotify fd %d has %d bytes of unread events (they cannot be carried)", e->fd, q);
	}
	return n;
}

/* ---------- dump ---------- */

int anon_dump(struct fdtab *tab, struct fdent *e, struct img_fd *f)
{
	(void)tab;
	char v[128];
	const char *in = e->info;
	switch (e->kind) {
	case F_EVENTFD:
		if (status_field(in, "eventfd-count", v, sizeof v)) return fail(EIO, "fd %d: no eventfd-count in its fdinfo", e->fd);
		f->u.efd.count = strtoull(v, NULL, 16);
		if (!status_field(in, "eventfd-semaphore", v, sizeof v)) f->u.efd.semaphore = atoi(v);
		return 0;
	case F_TIMERFD: {
		long long vs, vn, is, inn;
		const char *p1 = strstr(in, "it_value:"), *p2 = strstr(in, "it_interval:");
		if (status_field(in, "clockid", v, sizeof v)) return fail(EIO, "fd %d: no clockid in its fdinfo", e->fd);
		f->u.tfd.clockid = atoi(v);
		if (!status_field(in, "ticks", v, sizeof v)) f->u.tfd.ticks = strtoull(v, NULL, 10);
		if (!status_field(in, "settime flags", v, sizeof v)) f->u.tfd.settime_flags = strtoul(v, NULL, 8);
		if (!p1 || !p2 || sscanf(p1, "it_value: (%lld, %lld)", &vs, &vn) != 2 || sscanf(p2, "it_interval: (%lld, %lld)", &is, &inn) != 2)
			return fail(EIO, "fd %d: cannot read the timer from its fdinfo", e->fd);
		f->u.tfd.value_ns = vs * 1000000000LL + vn;
		f->u.tfd.interval_ns = is * 1000000000LL + inn;
		return 0;
	}
	case F_SIGNALFD:
		if (status_field(in, "sigmask", v, sizeof v)) return fail(EIO, "fd %d: no sigmask in its fdinfo", e->fd);
		f->u.sfd.mask = strtoull(v, NULL, 16);
		return 0;
	default:
		return 0;
	}
}

/* EPOLL and INOTIFY records for the image's epoll and inotify descriptors */
int anon_dump_meta(struct imgw *w, struct fdtab *tab, struct img_fd *fds, int n)
{
	int e = 0;
	for (int i = 0; i < n && !e; i++) {
		struct img_fd *f = &fds[i];
		struct fdent *en = fdtab_find(tab, f->fd);
		if (f->dup_of >= 0 || !en) continue;
		if (f->kind == F_EPOLL) {
			static struct epoll_line v[MAX_ITEMS];
			int k = epoll_lines(en->info, v, MAX_ITEMS);
			for (int j = 0; j < k && !e; j++) {
				struct img_epoll r = { f->fd, v[j].tfd, v[j].events, 0, v[j].data };
				e = rec_put(w, R_EPOLL, &r, sizeof r, NULL, 0);
			}
		} else if (f->kind == F_INOTIFY) {
			static struct watch v[MAX_ITEMS];
			int k = inotify_watches(tab->pid, en->info, v, MAX_ITEMS);
			for (int j = 0; j < k && !e; j++) {
				if (v[j].err) return fail(ENOTSUP, "inotify fd %d: the file of watch %d cannot be found by path", f->fd, v[j].wd);
				static struct img_inotify r;
				memset(&r, 0, sizeof r);
				r.fd = f->fd; r.wd = v[j].wd; r.mask = v[j].mask;
				snprintf(r.path, sizeof r.path, "%s", v[j].path);
				r.pathlen = strlen(r.path) + 1;
				e = rec_put(w, R_INOTIFY, &r, INOTIFY_FIXED + r.pathlen, NULL, 0);
			}
		}
	}
	return e;
}

/* ---------- restore ---------- */

int inotify_validate(struct image *im, int print)
{
	int n = 0;
	struct stat sb;
	for (int i = 0; i < im->nwatch; i++) {
		struct img_inotify *w = &im->watches[i];
		if (lstat(w->path, &sb)) {
			n++;
			if (print) ctlf("REASON file-missing inotify fd %d watches %s, which does not exist here", w->fd, w->path);
		}
	}
	return n;
}

int anon_create(struct tracee *t, const struct img_fd *f, uint64_t scr, long *out)
{
	int nb = f->flags & O_NONBLOCK;
	switch (f->kind) {
	case F_EVENTFD: return INJ(t, out, SYS_eventfd2, 0, nb | (f->u.efd.semaphore ? 1 /* EFD_SEMAPHORE */ : 0), 0, 0, 0, 0);
	case F_TIMERFD: return INJ(t, out, SYS_timerfd_create, f->u.tfd.clockid, nb, 0, 0, 0, 0);
	case F_SIGNALFD: {
		int e = mem_write(t, scr, &f->u.sfd.mask, 8);
		return e ? e : INJ(t, out, SYS_signalfd4, -1, scr, 8, nb, 0, 0);
	}
	case F_EPOLL: return INJ(t, out, SYS_epoll_create1, 0, 0, 0, 0, 0, 0);
	case F_INOTIFY: return INJ(t, out, SYS_inotify_init1, nb, 0, 0, 0, 0, 0);
	default: return fail(EBADMSG, "fd %d: unknown kind %u", f->fd, f->kind);
	}
}

/* the watches of an inotify fd, with their wd numbers: wds are handed out in increasing order, so
 * each watch is added in wd order; numbers in between are used up by a watch on a directory of
 * our own, removed again; the IN_IGNORED events that this queues are read away at the end */
static int inotify_setup(struct fdrestore *fr, struct image *im, const struct img_fd *f)
{
	int d = target_fd(fr, f->fd);
	if (d < 0) return d;
	char tmp[] = "/tmp/hpc-ppm-wdXXXXXX";
	int e = 0, burned = 0, last = 0;
	for (;;) {
		struct img_inotify *w = NULL;	/* the next watch by wd */
		for (int i = 0; i < im->nwatch; i++) {
			struct img_inotify *c = &im->watches[i];
			if (c->fd == f->fd && c->wd > last && (!w || c->wd < w->wd)) w = c;
		}
		if (!w) break;
		struct stat sb;
		uint32_t mask = w->mask;
		if (!lstat(w->path, &sb) && S_ISLNK(sb.st_mode)) mask |= IN_DONT_FOLLOW;
		for (int tries = 0;; tries++) {
			int wd = inotify_add_watch(d, w->path, mask);
			if (wd < 0) { e = fail(errno, "inotify fd %d: watching %s: %s", f->fd, w->path, strerror(errno)); break; }
			if (wd == w->wd) break;
			if (wd > w->wd || tries > 1) { e = fail(EEXIST, "inotify fd %d: watch %s got wd %d, not %d", f->fd, w->path, wd, w->wd); break; }
			inotify_rm_watch(d, wd);
			if (!burned && !mkdtemp(tmp)) { e = fail(errno, "mkdtemp: %s", strerror(errno)); break; }
			burned = 1;
			for (int k = wd + 1; k < w->wd && !e; k++) {
				int b = inotify_add_watch(d, tmp, IN_DELETE_SELF);
				if (b < 0) e = fail(errno, "inotify fd %d: %s", f->fd, strerror(errno));
				else inotify_rm_watch(d, b);
			}
			if (e) break;
		}
		if (e) break;
		last = w->wd;
	}
	if (burned) {
		rmdir(tmp);
		/* the IN_IGNORED events of the removed watches */
		char buf[4096];
		int q = 0;
		while (!ioctl(d, FIONREAD, &q) && q > 0) {
			int fl = fcntl(d, F_GETFL);
			fcntl(d, F_SETFL, fl | O_NONBLOCK);
			ssize_t r = read(d, buf, sizeof buf);
			fcntl(d, F_SETFL, fl);
			if (r <= 0) break;
		}
	}
	return e;
}

int anon_setup(struct fdrestore *fr, struct image *im, const struct img_fd *f)
{
	if (f->kind == F_EVENTFD && f->u.efd.count) {
		int d = target_fd(fr, f->fd);
		if (d < 0) return d;
		if (write(d, &f->u.efd.count, 8) != 8) return fail(errno, "eventfd fd %d: setting the counter: %s", f->fd, strerror(errno));
	}
	if (f->kind == F_INOTIFY) return inotify_setup(fr, im, f);
	return 0;
}

int epoll_restore(struct tracee *t, struct image *im, uint64_t scr)
{
	int e = 0;
	for (int i = 0; i < im->nepoll && !e; i++) {
		struct img_epoll *p = &im->epolls[i];
		struct __attribute__((packed)) { uint32_t events; uint64_t data; } ev = { p->events, p->data };
		e = mem_write(t, scr, &ev, sizeof ev);
		if (!e && (e = INJ(t, NULL, SYS_epoll_ctl, p->epfd, 1 /* EPOLL_CTL_ADD */, p->tfd, scr, 0, 0))) {
			clear_err();
			e = fail(-e, "epoll fd %d: registering fd %d: %s", p->epfd, p->tfd, strerror(-e));
		}
	}
	return e;
}

/* A timerfd is armed last: settime first (it clears the count), then the unread expirations.
 * A periodic timer that has expired and was not read since shows no time left (the kernel arms it
 * again only when it is read): it is armed to expire one interval from now, not left disarmed. */
int anon_late(struct fdrestore *fr, const struct img_fd *f)
{
	if (f->kind != F_TIMERFD) return 0;
	int64_t value_ns = f->u.tfd.value_ns ? f->u.tfd.value_ns : f->u.tfd.ticks ? f->u.tfd.interval_ns : 0;
	if (!value_ns && !f->u.tfd.ticks) return 0;
	int d = target_fd(fr, f->fd);
	if (d < 0) return d;
	if (value_ns) {
		struct itimerspec its = { { f->u.tfd.interval_ns / 1000000000LL, f->u.tfd.interval_ns % 1000000000LL },
					  { value_ns / 1000000000LL, value_ns % 1000000000LL } };
		int flags = 0;
		if (f->u.tfd.settime_flags & TFD_TIMER_CANCEL_ON_SET) {
			/* only with an absolute CLOCK_REALTIME time: the same remaining time from now */
			struct timespec now;
			clock_gettime(f->u.tfd.clockid, &now);
			int64_t abs = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec + value_ns;
			its.it_value.tv_sec = abs / 1000000000LL;
			its.it_value.tv_nsec = abs % 1000000000LL;
			flags = TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET;
		}
		if (timerfd_settime(d, flags, &its, NULL)) return fail(errno, "timerfd fd %d: arming: %s", f->fd, strerror(errno));
	}
	if (f->u.tfd.ticks && ioctl(d, TFD_IOC_SET_TICKS, &f->u.tfd.ticks))
		return fail(errno, "timerfd fd %d: restoring %llu unread expirations: %s", f->fd, (unsigned long long)f->u.tfd.ticks, strerror(errno));
	return 0;
}
