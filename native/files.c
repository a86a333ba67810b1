/* Descriptors: what each one is (fd_check: can it move?), how it is saved (dump_fds: one FD
 * record each), checked on the target (validate_fds) and recreated (restore_fds, by injected
 * syscalls in the restored process). fds 0-2 of any kind are inherited from the restorer. */
#include "ppm.h"

static int ok_chrdev(const char *p)
{
	return !strcmp(p, "/dev/null") || !strcmp(p, "/dev/zero") || !strcmp(p, "/dev/full") || !strcmp(p, "/dev/random") || !strcmp(p, "/dev/urandom");
}

/* Prints a REASON line if fd of pid cannot be recreated; returns the number of reasons. */
int fd_check(pid_t pid, int fd, int print)
{
	char lp[64], tgt[PATH_MAX];
	snprintf(lp, sizeof lp, "/proc/%d/fd/%d", pid, fd);
	ssize_t l = readlink(lp, tgt, sizeof tgt - 1);
	if (l < 0) return 0;
	tgt[l] = 0;
	if (fd <= 2) return 0;	/* stdio is inherited from the restorer or relayed by the deputy */
	struct stat sb;
	if (stat(lp, &sb)) return reason(print, "fd-other", "fd %d (%s) cannot be examined", fd, tgt);
	if (S_ISSOCK(sb.st_mode)) return reason(print, "fd-socket", "fd %d is a socket (%s)", fd, tgt);
	if (S_ISFIFO(sb.st_mode) && tgt[0] != '/') return reason(print, "fd-pipe", "fd %d is an unnamed pipe (%s)", fd, tgt);
	if (S_ISCHR(sb.st_mode) && !ok_chrdev(tgt)) return reason(print, "fd-device", "fd %d is a device (%s)", fd, tgt);
	if (S_ISBLK(sb.st_mode)) return reason(print, "fd-device", "fd %d is a block device (%s)", fd, tgt);
	if (tgt[0] != '/') return reason(print, "fd-other", "fd %d is an unsupported descriptor (%s)", fd, tgt);
	if (ends_with(tgt, " (deleted)")) return reason(print, "fd-deleted", "fd %d refers to a deleted file (%s)", fd, tgt);
	return 0;
}

/* one FD record per descriptor; fails (ENOTSUP) on one above 2 that cannot be recreated */
int dump_fds(pid_t pid, struct img_fd **out)
{
	char fn[64];
	snprintf(fn, sizeof fn, "/proc/%d/fd", pid);
	DIR *d = opendir(fn);
	if (!d) return fail(errno, "opendir %s: %s", fn, strerror(errno));
	int n = 0, cap = 16;
	struct img_fd *v = calloc(cap, sizeof *v);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!isdigit(de->d_name[0])) continue;
		if (n == cap) { cap *= 2; v = realloc(v, cap * sizeof *v); }
		struct img_fd *f = &v[n];
		memset(f, 0, sizeof *f);
		f->fd = atoi(de->d_name);
		char lp[128], info[1024], val[64];
		snprintf(lp, sizeof lp, "/proc/%d/fd/%d", pid, f->fd);
		ssize_t l = readlink(lp, f->path, sizeof f->path - 1);
		if (l < 0) continue;
		f->path[l] = 0;
		f->pathlen = l + 1;
		snprintf(lp, sizeof lp, "/proc/%d/fdinfo/%d", pid, f->fd);
		if (read_file(lp, info, sizeof info) <= 0) continue;
		if (!status_field(info, "pos", val, sizeof val)) f->pos = strtoull(val, NULL, 10);
		if (!status_field(info, "flags", val, sizeof val)) f->flags = strtoul(val, NULL, 8);
		struct stat sb;
		snprintf(lp, sizeof lp, "/proc/%d/fd/%d", pid, f->fd);
		if (stat(lp, &sb)) { f->kind = F_INHERIT; }
		else if (S_ISREG(sb.st_mode) && f->path[0] == '/') { f->kind = F_FILE; f->size = sb.st_size; }
		else if (S_ISDIR(sb.st_mode)) f->kind = F_DIR;
		else if (S_ISCHR(sb.st_mode) && ok_chrdev(f->path)) f->kind = F_CHR;
		else if (S_ISFIFO(sb.st_mode) && f->path[0] == '/') f->kind = F_FIFO;
		else f->kind = F_INHERIT;
		if (f->kind == F_INHERIT && f->fd > 2) { int r = fail(ENOTSUP, "fd %d (%s) cannot be moved", f->fd, f->path); free(v); closedir(d); return r; }
		n++;
	}
	closedir(d);
	*out = v;
	return n;
}

/* can the image's descriptors be recreated here? Prints REASON lines, returns the count. */
int validate_fds(struct image *im, int print)
{
	int n = 0;
	struct stat sb;
	for (int i = 0; i < im->nfd; i++) {
		struct img_fd *f = &im->fds[i];
		if (f->kind == F_INHERIT) continue;
		if (stat(f->path, &sb)) { n++; if (print) ctlf("REASON file-missing fd %d: %s does not exist here", f->fd, f->path); }
		else if (f->kind == F_FILE && !(f->flags & O_APPEND) && (uint64_t)sb.st_size < f->pos) {
			n++;
			if (print) ctlf("REASON file-mismatch fd %d: %s is shorter (%lld) than the saved offset %llu", f->fd, f->path, (long long)sb.st_size, (unsigned long long)f->pos);
		}
	}
	return n;
}

/* closes what the image does not have, then reopens each descriptor at its number */
int restore_fds(struct tracee *t, struct image *im, uint64_t scr)
{
	char fn[64];
	snprintf(fn, sizeof fn, "/proc/%d/fd", t->pid);
	DIR *d = opendir(fn);
	if (!d) return fail(errno, "opendir %s", fn);
	int cur[1024], ncur = 0;
	struct dirent *de;
	while ((de = readdir(d)) && ncur < 1024) if (isdigit(de->d_name[0])) cur[ncur++] = atoi(de->d_name);
	closedir(d);
	int e = 0;
	/* close what the image does not have; keep inherited stdio where the image wants it */
	for (int i = 0; i < ncur && !e; i++) {
		int keep = 0;
		for (int k = 0; k < im->nfd; k++) if (im->fds[k].fd == cur[i] && im->fds[k].kind == F_INHERIT) keep = 1;
		if (!keep) e = INJ(t, NULL, SYS_close, cur[i], 0, 0, 0, 0, 0);
	}
	for (int k = 0; k < im->nfd && !e; k++) {
		struct img_fd *f = &im->fds[k];
		if (f->kind == F_INHERIT) continue;
		int fl = f->flags & ~(O_CREAT | O_TRUNC | O_EXCL | O_NOCTTY);
		if (f->kind == F_FIFO) fl |= O_NONBLOCK;
		long tmp;
		if ((e = put_str(t, scr, f->path))) break;
		if ((e = INJ(t, &tmp, SYS_openat, AT_FDCWD, scr, fl, 0, 0, 0))) { clear_err(); e = fail(-e, "reopening fd %d (%s): %s", f->fd, f->path, strerror(-e)); break; }
		if (tmp != f->fd) {
			e = INJ(t, NULL, SYS_dup3, tmp, f->fd, f->flags & O_CLOEXEC, 0, 0, 0);
			if (!e) e = INJ(t, NULL, SYS_close, tmp, 0, 0, 0, 0, 0);
		}
		if (!e && f->kind == F_FIFO) e = INJ(t, NULL, SYS_fcntl, f->fd, F_SETFL, f->flags, 0, 0, 0);
		if (!e && f->kind == F_FILE) e = INJ(t, NULL, SYS_lseek, f->fd, f->pos, SEEK_SET, 0, 0, 0);
	}
	return e;
}
