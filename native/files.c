/* Descriptors. The dump reads the process's fd table (fdtab_read: link, object, fdinfo, and which
 * fds share an open file description, by kcmp), judges it (fds_check: a REASON per descriptor
 * that cannot be recreated, or that another process shares), and saves one FD record per fd
 * (dump_fds). Kinds with state of their own are in pipes.c, anonfds.c and memfd.c.
 *
 * The restore (restore_fds) closes what the image does not have, then creates every object by
 * injected syscalls in the target and moves it to its number, in passes: the objects themselves,
 * then further open file descriptions of a pipe or memfd (reopened through /proc/self/fd), then
 * duplicates (dup3), then epoll registrations. State that is not in the fd table (pipe sizes,
 * counters, socket options, data) is set from the helper through a duplicate of the target's fd
 * (pidfd_getfd). fds 0-2 of any kind are inherited from the restorer. */
#include "ppm.h"
#include <sys/statfs.h>

static int ok_chrdev(const char *p)
{
	return !strcmp(p, "/dev/null") || !strcmp(p, "/dev/zero") || !strcmp(p, "/dev/full") || !strcmp(p, "/dev/random") || !strcmp(p, "/dev/urandom");
}

int kcmp_file(pid_t p1, int fd1, pid_t p2, int fd2)
{
	return syscall(NR_KCMP, p1, p2, KCMP_FILE, fd1, fd2) == 0;
}

static int classify(struct fdent *e)
{
	const char *l = e->link;
	mode_t m = e->st.st_mode;
	if (S_ISREG(m) && l[0] == '/' && !ends_with(l, " (deleted)")) return F_FILE;
	if (S_ISDIR(m) && l[0] == '/') return F_DIR;
	if (S_ISCHR(m) && ok_chrdev(l)) return F_CHR;
	if (S_ISFIFO(m) && l[0] == '/') return F_FIFO;
	/* fds 0-2 that cannot be reopened by path are the restorer's (or the hollow original's) */
	if (e->fd <= 2) return F_INHERIT;
	if (S_ISREG(m) && !strncmp(l, "/memfd:", 7) && ends_with(l, " (deleted)")) return F_MEMFD;
	if (S_ISFIFO(m) && !strncmp(l, "pipe:[", 6)) return F_PIPE;
	if (S_ISSOCK(m)) return F_UNIX;	/* unix_check tells whether it is one */
	if (!strcmp(l, "anon_inode:[eventfd]")) return F_EVENTFD;
	if (!strcmp(l, "anon_inode:[timerfd]")) return F_TIMERFD;
	if (!strcmp(l, "anon_inode:[signalfd]")) return F_SIGNALFD;
	if (!strcmp(l, "anon_inode:[eventpoll]")) return F_EPOLL;
	if (!strcmp(l, "anon_inode:inotify")) return F_INOTIFY;
	return 0;
}

static int cmp_fd(const void *a, const void *b) { return ((const struct fdent *)a)->fd - ((const struct fdent *)b)->fd; }

int fdtab_read(pid_t pid, struct fdtab *tab)
{
	memset(tab, 0, sizeof *tab);
	tab->pid = pid;
	tab->pidfd = -1;
	char fn[64];
	snprintf(fn, sizeof fn, "/proc/%d/fd", pid);
	DIR *d = opendir(fn);
	if (!d) return fail(errno, "opendir %s: %s", fn, strerror(errno));
	int cap = 16;
	tab->v = calloc(cap, sizeof *tab->v);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!isdigit(de->d_name[0])) continue;
		if (tab->n == cap) { cap *= 2; tab->v = realloc(tab->v, cap * sizeof *tab->v); }
		struct fdent *e = &tab->v[tab->n];
		memset(e, 0, sizeof *e);
		e->fd = atoi(de->d_name);
		e->dup_of = -1;
		char lp[64];
		snprintf(lp, sizeof lp, "/proc/%d/fd/%d", pid, e->fd);
		ssize_t l = readlink(lp, e->link, sizeof e->link - 1);
		if (l < 0) continue;	/* closed meanwhile */
		e->link[l] = 0;
		if (stat(lp, &e->st)) e->st.st_mode = 0;
		snprintf(lp, sizeof lp, "/proc/%d/fdinfo/%d", pid, e->fd);
		e->info = read_file_alloc(lp);
		if (!e->info) continue;
		char val[64];
		if (!status_field(e->info, "pos", val, sizeof val)) e->pos = strtoull(val, NULL, 10);
		if (!status_field(e->info, "flags", val, sizeof val)) e->flags = strtoul(val, NULL, 8);
		e->kind = e->st.st_mode ? classify(e) : 0;
		tab->n++;
	}
	closedir(d);
	qsort(tab->v, tab->n, sizeof *tab->v, cmp_fd);
	/* which fds share an open file description with a lower one (dup, fork, SCM_RIGHTS); fds 0-2
	 * are each inherited as they are */
	for (int i = 0; i < tab->n; i++) {
		struct fdent *e = &tab->v[i];
		if (e->fd <= 2) continue;
		for (int k = 0; k < i && e->dup_of < 0; k++) {
			struct fdent *o = &tab->v[k];
			if (o->dup_of >= 0 || o->st.st_ino != e->st.st_ino || o->st.st_dev != e->st.st_dev || strcmp(o->link, e->link)) continue;
			if (kcmp_file(pid, o->fd, pid, e->fd)) e->dup_of = o->fd;
		}
	}
	if (g_relay) relay_mark(tab);
	return 0;
}

void fdtab_free(struct fdtab *tab)
{
	for (int i = 0; i < tab->n; i++) free(tab->v[i].info);
	free(tab->v);
	if (tab->pidfd >= 0) close(tab->pidfd);
	memset(tab, 0, sizeof *tab);
	tab->pidfd = -1;
}

struct fdent *fdtab_find(struct fdtab *tab, int fd)
{
	for (int i = 0; i < tab->n; i++) if (tab->v[i].fd == fd) return &tab->v[i];
	return NULL;
}

/* a duplicate of the process's fd in the helper (the caller closes it); -errno on failure */
int fdtab_getfd(struct fdtab *tab, int fd)
{
	if (tab->pidfd < 0) {
		tab->pidfd = syscall(NR_PIDFD_OPEN, tab->pid, 0);
		if (tab->pidfd < 0) return fail(errno, "pidfd_open(%d): %s", tab->pid, strerror(errno));
	}
	int d = syscall(NR_PIDFD_GETFD, tab->pidfd, fd, 0);
	if (d < 0) return fail(errno, "pidfd_getfd(%d, fd %d): %s", tab->pid, fd, strerror(errno));
	return d;
}

/* does a process other than tab->pid hold the object of e? (pipes, sockets and memfds by inode,
 * objects behind an anonymous inode by their open file description) */
int shared_objects(struct fdtab *tab, struct fdent **objs, int nobj, int print, char *found_out)
{
	int n = 0;
	char *found = found_out ? found_out : calloc(nobj, 1);
	DIR *d = opendir("/proc");
	if (!d) { free(found); return 0; }
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!isdigit(de->d_name[0])) continue;
		pid_t o = atoi(de->d_name);
		if (o == tab->pid || o == getpid()) continue;
		char fn[64];
		snprintf(fn, sizeof fn, "/proc/%d/fd", o);
		DIR *fd = opendir(fn);
		if (!fd) continue;
		struct dirent *fe;
		while ((fe = readdir(fd))) {
			if (!isdigit(fe->d_name[0])) continue;
			char lp[96], l[PATH_MAX];
			snprintf(lp, sizeof lp, "/proc/%d/fd/%d", o, atoi(fe->d_name));
			ssize_t ll = readlink(lp, l, sizeof l - 1);
			if (ll < 0) continue;
			l[ll] = 0;
			for (int i = 0; i < nobj; i++) {
				struct fdent *e = objs[i];
				if (found[i] || strcmp(l, e->link)) continue;
				int same;
				if (e->kind == F_PIPE || e->kind == F_UNIX) same = 1;	/* the link names the inode */
				else if (e->kind == F_MEMFD) { struct stat sb; same = !stat(lp, &sb) && sb.st_ino == e->st.st_ino && sb.st_dev == e->st.st_dev; }
				else same = kcmp_file(tab->pid, e->fd, o, atoi(fe->d_name));
				if (!same) continue;
				found[i] = 1;
				n += reason(print, "fd-shared", "fd %d (%s) is shared with process %d", e->fd, e->link, o);
			}
		}
		closedir(fd);
	}
	closedir(d);
	if (!found_out) free(found);
	return n;
}

/* One REASON line per descriptor that cannot be recreated; returns the count. Touches nothing. */
int fds_check(struct fdtab *tab, int print)
{
	int n = 0, nobj = 0;
	struct fdent **objs = calloc(tab->n + 1, sizeof *objs);
	for (int i = 0; i < tab->n; i++) {
		struct fdent *e = &tab->v[i];
		const char *l = e->link;
		mode_t m = e->st.st_mode;
		/* stdio is inherited from the restorer or relayed by the deputy; a duplicate of a lower fd
		 * is restored as one */
		if (e->fd <= 2 || e->dup_of >= 0) continue;
		switch (e->kind) {
		case F_PIPE: n += pipe_check(tab, e, print); objs[nobj++] = e; break;
		case F_UNIX: n += g_relay ? relay_reason(tab, e, print) : unix_check(tab, e, print); objs[nobj++] = e; break;
		case F_EVENTFD: case F_TIMERFD: case F_SIGNALFD: case F_EPOLL: case F_INOTIFY:
			n += anon_check(tab, e, print); objs[nobj++] = e; break;
		case F_MEMFD: n += memfd_check(tab, e, print); objs[nobj++] = e; break;
		case 0:
			if (!m) n += reason(print, "fd-other", "fd %d (%s) cannot be examined", e->fd, l);
			else if (S_ISCHR(m)) n += reason(print, "fd-device", "fd %d is a device (%s)", e->fd, l);
			else if (S_ISBLK(m)) n += reason(print, "fd-device", "fd %d is a block device (%s)", e->fd, l);
			else if (ends_with(l, " (deleted)")) n += reason(print, "fd-deleted", "fd %d refers to a deleted file (%s)", e->fd, l);
			else n += reason(print, "fd-other", "fd %d is an unsupported descriptor (%s)", e->fd, l);
			break;
		}
	}
	if (nobj) n += shared_objects(tab, objs, nobj, print, NULL);
	free(objs);
	return n;
}

/* the objects with more than one open file description: the first is created, the others are
 * reopened from it; a pipe's first read and first write descriptions are created together */
static void group_objects(struct img_fd *fds, int n)
{
	for (int i = 0; i < n; i++) {
		struct img_fd *f = &fds[i];
		if (f->dup_of >= 0 || (f->kind != F_PIPE && f->kind != F_MEMFD)) continue;
		if (f->kind == F_PIPE && f->peer >= 0) continue;
		for (int k = 0; k < i; k++) {
			struct img_fd *o = &fds[k];
			if (o->kind != f->kind || o->obj != f->obj || o->dup_of >= 0 || o->reopen_of >= 0) continue;
			if (f->kind == F_MEMFD) { f->reopen_of = o->fd; break; }
			/* a pipe: the first other-direction description becomes this one's peer */
			int fr = (f->flags & O_ACCMODE) == O_RDONLY, orr = (o->flags & O_ACCMODE) == O_RDONLY;
			int fw = (f->flags & O_ACCMODE) == O_WRONLY, ow = (o->flags & O_ACCMODE) == O_WRONLY;
			if (o->peer < 0 && ((fr && ow) || (fw && orr))) { o->peer = f->fd; f->peer = o->fd; break; }
			if (o->peer >= 0 && f->reopen_of < 0) f->reopen_of = o->fd;
		}
	}
	/* a pipe description that found no peer while scanning down is reopened from one that did */
	for (int i = 0; i < n; i++) {
		struct img_fd *f = &fds[i];
		if (f->kind != F_PIPE || f->dup_of >= 0 || f->peer >= 0 || f->reopen_of >= 0) continue;
		for (int k = 0; k < n; k++)
			if (k != i && fds[k].kind == F_PIPE && fds[k].obj == f->obj && fds[k].peer >= 0) { f->reopen_of = fds[k].fd; break; }
	}
}

/* one FD record per descriptor; fails (ENOTSUP) on one that cannot be recreated */
int dump_fds(struct fdtab *tab, struct img_fd **out)
{
	struct img_fd *v = calloc(tab->n + 1, sizeof *v);
	int e = 0;
	for (int i = 0; i < tab->n && !e; i++) {
		struct fdent *en = &tab->v[i];
		struct img_fd *f = &v[i];
		f->fd = en->fd;
		f->kind = en->kind;
		f->flags = en->flags;
		f->pos = en->pos;
		f->dup_of = en->dup_of;
		f->peer = f->reopen_of = -1;
		snprintf(f->path, sizeof f->path, "%s", en->link);
		f->pathlen = strlen(f->path) + 1;
		if (en->dup_of >= 0) {
			struct fdent *o = fdtab_find(tab, en->dup_of);
			f->kind = o ? o->kind : F_INHERIT;
			continue;
		}
		switch (en->kind) {
		case F_INHERIT: case F_DIR: case F_CHR: case F_FIFO: break;
		case F_RELAY: f->u.sock.type = en->relay; relay_note(f); break;
		case F_FILE: f->size = en->st.st_size; break;
		case F_PIPE: e = pipe_dump(tab, en, f); break;
		case F_UNIX: e = unix_dump(tab, en, f); break;
		case F_EVENTFD: case F_TIMERFD: case F_SIGNALFD: case F_EPOLL: case F_INOTIFY: e = anon_dump(tab, en, f); break;
		case F_MEMFD: e = memfd_dump(tab, en, f); break;
		default: e = fail(ENOTSUP, "fd %d (%s) cannot be moved", en->fd, en->link);
		}
	}
	if (e) { free(v); return e; }
	/* unix peers: the fd of the peer socket */
	for (int i = 0; i < tab->n; i++) {
		if (v[i].kind != F_UNIX || v[i].dup_of >= 0) continue;
		for (int k = 0; k < tab->n; k++)
			if (k != i && v[k].kind == F_UNIX && v[k].dup_of < 0 && v[k].obj == v[i].u.sock.peer_ino) v[i].peer = v[k].fd;
		if (v[i].peer < 0) { free(v); return fail(ENOTSUP, "fd %d: the peer of this socket is not held by the process", v[i].fd); }
	}
	group_objects(v, tab->n);
	for (int i = 0; i < tab->n; i++)
		if (v[i].kind == F_PIPE && v[i].dup_of < 0 && v[i].peer < 0 && v[i].reopen_of < 0) {
			free(v);
			return fail(ENOTSUP, "fd %d: the other end of this pipe is not held by the process", v[i].fd);
		}
	*out = v;
	return tab->n;
}

/* can the image's descriptors be recreated here? Prints REASON lines, returns the count. */
int validate_fds(struct image *im, int print)
{
	int n = 0;
	struct stat sb;
	for (int i = 0; i < im->nfd; i++) {
		struct img_fd *f = &im->fds[i];
		if (f->dup_of >= 0 || f->kind < F_FILE || f->kind > F_FIFO) continue;
		if (stat(f->path, &sb)) { n++; if (print) ctlf("REASON file-missing fd %d: %s does not exist here", f->fd, f->path); }
		else if (f->kind == F_FILE && !(f->flags & O_APPEND) && (uint64_t)sb.st_size < f->pos) {
			n++;
			if (print) ctlf("REASON file-mismatch fd %d: %s is shorter (%lld) than the saved offset %llu", f->fd, f->path, (long long)sb.st_size, (unsigned long long)f->pos);
		}
	}
	return n + inotify_validate(im, print);
}

/* ---------- restore ---------- */

int target_fd(struct fdrestore *fr, int fd)
{
	for (int i = 0; i < fr->ncache; i++) if (fr->cache_fd[i] == fd) return fr->cache_dup[i];
	if (fr->pidfd < 0) {
		fr->pidfd = syscall(NR_PIDFD_OPEN, fr->pid, 0);
		if (fr->pidfd < 0) return fail(errno, "pidfd_open(%d): %s", fr->pid, strerror(errno));
	}
	int d = syscall(NR_PIDFD_GETFD, fr->pidfd, fd, 0);
	if (d < 0) return fail(errno, "pidfd_getfd(%d, fd %d): %s", fr->pid, fd, strerror(errno));
	if (fr->ncache == 16) { close(fr->cache_dup[0]); memmove(fr->cache_fd, fr->cache_fd + 1, 15 * sizeof(int)); memmove(fr->cache_dup, fr->cache_dup + 1, 15 * sizeof(int)); fr->ncache--; }
	fr->cache_fd[fr->ncache] = fd;
	fr->cache_dup[fr->ncache++] = d;
	return d;
}

/* the helper must hold nothing of the restored process once it runs (a pipe's reader would
 * never see the end of its input) */
void fdrestore_done(struct fdrestore *fr)
{
	for (int i = 0; i < fr->ncache; i++) close(fr->cache_dup[i]);
	fr->ncache = 0;
	if (fr->pidfd >= 0) close(fr->pidfd);
	fr->pidfd = -1;
}

static struct img_fd *img_fd_of(struct image *im, int fd)
{
	for (int i = 0; i < im->nfd; i++) if (im->fds[i].fd == fd) return &im->fds[i];
	return NULL;
}

/* moves a new descriptor tmp of the target to its number */
static int place1(struct tracee *t, long tmp, const struct img_fd *f)
{
	int cloexec = (f->flags & O_CLOEXEC) != 0;
	if (tmp == f->fd) return INJ(t, NULL, SYS_fcntl, f->fd, F_SETFD, cloexec ? FD_CLOEXEC : 0, 0, 0, 0);
	int e = INJ(t, NULL, SYS_dup3, tmp, f->fd, cloexec ? O_CLOEXEC : 0, 0, 0, 0);
	if (!e) e = INJ(t, NULL, SYS_close, tmp, 0, 0, 0, 0, 0);
	return e;
}

/* two new descriptors (a pipe's or socketpair's) to their numbers; one that sits on the other's
 * number is first moved out of the way, above every number of the image */
static int place2(struct tracee *t, long tmp[2], const struct img_fd *f[2], int base)
{
	int e = 0;
	for (int i = 0; i < 2 && !e; i++) {
		if (tmp[i] != f[1 - i]->fd) continue;
		long hi;
		e = INJ(t, &hi, SYS_fcntl, tmp[i], F_DUPFD, base, 0, 0, 0);
		if (!e) e = INJ(t, NULL, SYS_close, tmp[i], 0, 0, 0, 0, 0);
		tmp[i] = hi;
	}
	for (int i = 0; i < 2 && !e; i++) e = place1(t, tmp[i], f[i]);
	return e;
}

/* file status flags that F_SETFL can set */
#define SETFL_MASK (O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME | O_NONBLOCK)

static int reopen_by_path(struct tracee *t, const struct img_fd *f, const char *path, uint64_t scr)
{
	int fl = f->flags & ~(O_CREAT | O_TRUNC | O_EXCL | O_NOCTTY | O_CLOEXEC);
	if (f->kind == F_FIFO || f->kind == F_PIPE) fl |= O_NONBLOCK;	/* no wait for the other end */
	long tmp;
	int e = put_str(t, scr, path);
	if (!e && (e = INJ(t, &tmp, SYS_openat, AT_FDCWD, scr, fl, 0, 0, 0))) { clear_err(); return fail(-e, "reopening fd %d (%s): %s", f->fd, path, strerror(-e)); }
	if (!e) e = place1(t, tmp, f);
	if (!e && (f->kind == F_FIFO || f->kind == F_PIPE)) e = INJ(t, NULL, SYS_fcntl, f->fd, F_SETFL, f->flags & (f->kind == F_PIPE ? SETFL_MASK : ~0u), 0, 0, 0);
	if (!e && (f->kind == F_FILE || f->kind == F_MEMFD)) e = INJ(t, NULL, SYS_lseek, f->fd, f->pos, SEEK_SET, 0, 0, 0);
	return e;
}

/* creates the object of primary descriptor f (and a pipe's or socketpair's other end) */
static int create_one(struct tracee *t, struct image *im, struct img_fd *f, uint64_t scr, int base, char *placed, struct fdrestore *fr)
{
	int e;
	long tmp = -1, two[2];
	switch (f->kind) {
	case F_FILE: case F_DIR: case F_CHR: case F_FIFO:
		return reopen_by_path(t, f, f->path, scr);
	case F_PIPE: case F_UNIX: {
		struct img_fd *p = img_fd_of(im, f->peer);
		if (!p) return fail(EBADMSG, "fd %d: its peer fd %d is not in the image", f->fd, f->peer);
		e = f->kind == F_PIPE ? pipe_create(t, f, scr, two) : unix_create(t, f, scr, two);
		if (e) return e;
		/* pipe2 gives the read end first; a socketpair's ends are alike */
		const struct img_fd *fs[2] = { f, p };
		if (f->kind == F_PIPE && (f->flags & O_ACCMODE) != O_RDONLY) { fs[0] = p; fs[1] = f; }
		if ((e = place2(t, two, fs, base))) return e;
		placed[p->fd] = 1;
		for (int i = 0; i < 2 && !e; i++) e = INJ(t, NULL, SYS_fcntl, fs[i]->fd, F_SETFL, fs[i]->flags & SETFL_MASK, 0, 0, 0);
		if (!e) e = queue_setup(fr, f);
		if (!e) e = queue_setup(fr, p);
		return e;
	}
	case F_RELAY:
		return relay_restore(t, f, scr);
	case F_MEMFD:
		if ((e = memfd_create_in(t, f, scr, &tmp))) return e;
		if ((e = place1(t, tmp, f))) return e;
		e = INJ(t, NULL, SYS_fcntl, f->fd, F_SETFL, f->flags & SETFL_MASK, 0, 0, 0);
		if (!e) e = INJ(t, NULL, SYS_lseek, f->fd, f->pos, SEEK_SET, 0, 0, 0);
		if (!e) e = memfd_setup(fr, f);
		return e;
	default:
		if ((e = anon_create(t, f, scr, &tmp))) return e;
		if ((e = place1(t, tmp, f))) return e;
		e = INJ(t, NULL, SYS_fcntl, f->fd, F_SETFL, f->flags & SETFL_MASK, 0, 0, 0);
		if (!e) e = anon_setup(fr, im, f);
		return e;
	}
}

int restore_fds(struct tracee *t, struct image *im, uint64_t scr, struct fdrestore *fr)
{
	memset(fr, 0, sizeof *fr);
	fr->pid = t->pid;
	fr->pidfd = -1;
	int *cur = NULL, ncur = fd_numbers(t->pid, &cur);
	if (ncur < 0) return fail(errno, "reading /proc/%d/fd: %s", t->pid, strerror(errno));
	int e = 0;
	/* close what the image does not have; keep inherited stdio where the image wants it */
	for (int i = 0; i < ncur && !e; i++) {
		int keep = 0;
		for (int k = 0; k < im->nfd; k++)
			if (im->fds[k].fd == cur[i] && im->fds[k].dup_of < 0 && (im->fds[k].kind == F_INHERIT || (im->fds[k].kind == F_RELAY && g_relay_keep))) keep = 1;
		if (!keep) e = INJ(t, NULL, SYS_close, cur[i], 0, 0, 0, 0, 0);
	}
	free(cur);
	int base = 3;
	for (int k = 0; k < im->nfd; k++) if (im->fds[k].fd >= base) base = im->fds[k].fd + 1;
	char *placed = calloc(base + 1, 1);
	/* 1. the objects */
	for (int k = 0; k < im->nfd && !e; k++) {
		struct img_fd *f = &im->fds[k];
		if (f->kind == F_INHERIT || f->dup_of >= 0 || f->reopen_of >= 0 || placed[f->fd]) continue;
		e = create_one(t, im, f, scr, base, placed, fr);
		placed[f->fd] = 1;
	}
	/* 2. more open file descriptions of a pipe or memfd */
	for (int k = 0; k < im->nfd && !e; k++) {
		struct img_fd *f = &im->fds[k];
		if (f->dup_of >= 0 || f->reopen_of < 0) continue;
		char p[64];
		snprintf(p, sizeof p, "/proc/self/fd/%d", f->reopen_of);
		e = reopen_by_path(t, f, p, scr);
	}
	/* 3. duplicates */
	for (int k = 0; k < im->nfd && !e; k++) {
		struct img_fd *f = &im->fds[k];
		if (f->dup_of >= 0) e = INJ(t, NULL, SYS_dup3, f->dup_of, f->fd, f->flags & O_CLOEXEC ? O_CLOEXEC : 0, 0, 0, 0);
	}
	/* 4. epoll interest lists, now that every registered descriptor exists */
	if (!e) e = epoll_restore(t, im, scr);
	free(placed);
	return e;
}

int fd_data(struct fdrestore *fr, struct image *im, const struct img_fddata *dd, const uint8_t *data, size_t len)
{
	struct img_fd *f = img_fd_of(im, dd->fd);
	if (!f || f->dup_of >= 0 || f->reopen_of >= 0) return fail(EBADMSG, "data for fd %d, which the image does not create", dd->fd);
	if (f->kind == F_PIPE || f->kind == F_UNIX) return queue_data(fr, im, f, data, len);
	if (f->kind == F_MEMFD) return memfd_data(fr, f, dd->off, data, len);
	return fail(EBADMSG, "data for fd %d, which holds none", dd->fd);
}

int restore_fds_late(struct tracee *t, struct image *im, uint64_t scr, struct fdrestore *fr)
{
	(void)t; (void)scr;
	int e = 0;
	for (int k = 0; k < im->nfd && !e; k++) {
		struct img_fd *f = &im->fds[k];
		if (f->dup_of >= 0 || f->reopen_of >= 0) continue;
		if (f->kind == F_TIMERFD) e = anon_late(fr, f);
		else if (f->kind == F_MEMFD) e = memfd_late(fr, f);
		else if (f->kind == F_UNIX || f->kind == F_PIPE) e = queue_finish(fr, f);
	}
	return e;
}
