/* memfd (memfd_create): name, size, contents, mode and owner, seals. The contents are read through
 * a new open file description (open of /proc/PID/fd/N), so that the original's offset is not
 * moved, and only the extents that hold data (SEEK_DATA/SEEK_HOLE) go into FDDATA records. On
 * restore the memfd is created before the memory regions, so that a MAP_SHARED mapping of it is
 * mapped from it again (K_MEMFD); the contents are written into it from the helper as they stream
 * in; the seals are added at the end. hugetlbfs memfds are refused. */
#include "ppm.h"
#include <sys/statfs.h>
#include <linux/magic.h>


int memfd_check(struct fdtab *tab, struct fdent *e, int print)
{
	char p[64];
	struct statfs sf;
	snprintf(p, sizeof p, "/proc/%d/fd/%d", tab->pid, e->fd);
	if (!statfs(p, &sf) && sf.f_type == HUGETLBFS_MAGIC) return reason(print, "fd-other", "fd %d is a huge-page memfd (%s)", e->fd, e->link);
	return 0;
}

int memfd_dump(struct fdtab *tab, struct fdent *e, struct img_fd *f)
{
	f->obj = e->st.st_ino;
	f->size = e->st.st_size;
	f->u.memfd.mode = e->st.st_mode & 07777;
	f->u.memfd.uid = e->st.st_uid;
	f->u.memfd.gid = e->st.st_gid;
	/* the name: "/memfd:NAME (deleted)" -> "memfd:NAME" */
	size_t l = strlen(e->link) - strlen(" (deleted)") - 1;
	memmove(f->path, e->link + 1, l);
	f->path[l] = 0;
	f->pathlen = l + 1;
	int d = fdtab_getfd(tab, e->fd);
	if (d < 0) return d;
	int s = fcntl(d, F_GET_SEALS);
	close(d);
	f->u.memfd.seals = s < 0 ? 0 : s;
	return 0;
}

int memfd_dump_data(struct imgw *w, struct fdtab *tab, struct img_fd *fds, int n)
{
	int e = 0;
	uint8_t *buf = NULL;
	for (int i = 0; i < n && !e; i++) {
		struct img_fd *f = &fds[i];
		if (f->kind != F_MEMFD || f->dup_of >= 0 || f->reopen_of >= 0 || !f->size) continue;
		char p[64];
		snprintf(p, sizeof p, "/proc/%d/fd/%d", tab->pid, f->fd);
		int d = open(p, O_RDONLY | O_CLOEXEC);
		if (d < 0) return fail(errno, "opening memfd fd %d: %s", f->fd, strerror(errno));
		if (!buf) buf = malloc(CHUNK);
		off_t off = 0;
		while (!e && (uint64_t)off < f->size) {
			off_t data = lseek(d, off, SEEK_DATA);
			if (data < 0) break;	/* ENXIO: only a hole is left */
			off_t hole = lseek(d, data, SEEK_HOLE);
			if (hole < 0 || (uint64_t)hole > f->size) hole = f->size;
			for (off = data; off < hole && !e;) {
				size_t want = hole - off < (off_t)CHUNK ? (size_t)(hole - off) : CHUNK;
				ssize_t r = pread(d, buf, want, off);
				if (r <= 0) { e = fail(r < 0 ? errno : EIO, "reading memfd fd %d", f->fd); break; }
				struct img_fddata dd = { f->fd, 0, (uint64_t)off };
				e = rec_put(w, R_FDDATA, &dd, sizeof dd, buf, r);
				off += r;
			}
		}
		close(d);
	}
	free(buf);
	return e;
}

int memfd_create_in(struct tracee *t, const struct img_fd *f, uint64_t scr, long *out)
{
	if (strncmp(f->path, "memfd:", 6)) return fail(EBADMSG, "fd %d: bad memfd name", f->fd);
	int e = put_str(t, scr, f->path + 6);
	return e ? e : INJ(t, out, SYS_memfd_create, scr, 2 /* MFD_ALLOW_SEALING; seals come last */, 0, 0, 0, 0);
}

int memfd_setup(struct fdrestore *fr, const struct img_fd *f)
{
	int d = target_fd(fr, f->fd);
	if (d < 0) return d;
	if (ftruncate(d, f->size) || fchmod(d, f->u.memfd.mode) || fchown(d, f->u.memfd.uid, f->u.memfd.gid))
		return fail(errno, "memfd fd %d: size, mode or owner: %s", f->fd, strerror(errno));
	return 0;
}

int memfd_data(struct fdrestore *fr, const struct img_fd *f, uint64_t off, const uint8_t *data, size_t len)
{
	if (off + len > f->size) return fail(EBADMSG, "memfd fd %d: data beyond its size", f->fd);
	int d = target_fd(fr, f->fd);
	if (d < 0) return d;
	for (size_t k = 0; k < len;) {
		ssize_t r = pwrite(d, data + k, len - k, off + k);
		if (r <= 0) return fail(r < 0 ? errno : EIO, "memfd fd %d: writing its contents: %s", f->fd, r < 0 ? strerror(errno) : "short write");
		k += r;
	}
	return 0;
}

int memfd_late(struct fdrestore *fr, const struct img_fd *f)
{
	if (!f->u.memfd.seals) return 0;
	int d = target_fd(fr, f->fd);
	if (d < 0) return d;
	if (fcntl(d, F_ADD_SEALS, f->u.memfd.seals)) return fail(errno, "memfd fd %d: seals %#x: %s", f->fd, f->u.memfd.seals, strerror(errno));
	return 0;
}
