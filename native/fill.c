/* The page fill of a restore (step 8 of restore_into, docs/ppm.md "How it works"): the page data
 * goes into the private anonymous regions (K_ANON, K_STACK, K_FULL: mapped MAP_PRIVATE |
 * MAP_ANONYMOUS by step 7) by UFFDIO_COPY, which puts the helper's bytes into new pages without
 * zeroing them first, and everywhere else (private file mappings) through /proc/PID/mem.
 *
 * The userfaultfd is made inside the tracee by an injected userfaultfd(2) (its context belongs to
 * the tracee's mm), taken into the helper with pidfd_getfd and closed in the tracee at once, as
 * precopy.c does: the tracee's fd table never keeps it. The helper sets it up (UFFDIO_API, no
 * features) and registers the regions in MISSING mode; a page already present (written twice, or
 * there before) answers EEXIST and is written through /proc/PID/mem instead. No fault is ever
 * raised in a registered region while the fill runs: nothing runs in the tracee and every write
 * into one goes through fill_write. fill_end unregisters every region and closes the helper's
 * duplicate, so the restored process keeps no trace of it (no fd, no VmFlags "um").
 *
 * A kernel without userfaultfd (ENOSYS), one that refuses it (EPERM) or HPC_PPM_FILL=pwrite
 * means /proc/PID/mem for everything; STAT says which (`fill=pwrite fill_why=...`). A tracee
 * without CAP_SYS_PTRACE (a hollow original of another user coming home) with
 * vm.unprivileged_userfaultfd=0 gets UFFD_USER_MODE_ONLY, enough for UFFDIO_COPY. */
#include "ppm.h"
#include <sys/ioctl.h>
#include <linux/userfaultfd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

int g_fill_pwrite;

static int anon_private(uint32_t kind) { return kind == K_ANON || kind == K_STACK || kind == K_FULL; }

static void fill_off(struct fill *f, const char *why)
{
	if (f->uffd >= 0) close(f->uffd);
	f->uffd = -1;
	f->nreg = 0;
	snprintf(f->why, sizeof f->why, "%s", why);
}

/* off, because step failed with err (its name, or its number where errname has none) */
static void fill_off_err(struct fill *f, const char *step, int err)
{
	char why[48];
	if (err != EIO && !strcmp(errname(err), "EIO")) snprintf(why, sizeof why, "%s:%d", step, err);
	else snprintf(why, sizeof why, "%s:%s", step, errname(err));
	fill_off(f, why);
}

/* Sets up the fill for tracee t, whose regions of im are mapped (step 7). Only a failure of the
 * tracee itself is an error; without userfaultfd the fill falls back to /proc/PID/mem. */
int fill_start(struct fill *f, struct tracee *t, struct image *im)
{
	memset(f, 0, sizeof *f);
	f->t = t;
	f->uffd = -1;
	if (g_fill_pwrite) { fill_off(f, "env"); return 0; }
	int n = 0;
	for (int i = 0; i < im->nvma; i++) n += anon_private(im->vmas[i].kind);
	if (!n) { fill_off(f, "no-anon"); return 0; }
	long ufd, rv;
	/* HPC_PPM_TEST_FAULT=no-userfaultfd, a hook for the tests: a call the kernel does not have
	 * (ENOSYS) is injected instead, as on a kernel built without userfaultfd */
	const char *tf = getenv("HPC_PPM_TEST_FAULT");
	long nr = tf && !strcmp(tf, "no-userfaultfd") ? 1023 : SYS_userfaultfd;
	int e = inject(t, nr, O_CLOEXEC | O_NONBLOCK, 0, 0, 0, 0, 0, &rv);
	if (e) return e;
	if (rv == -EPERM) {
		e = inject(t, nr, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY, 0, 0, 0, 0, 0, &rv);
		if (e) return e;
	}
	if (rv < 0) { fill_off_err(f, "userfaultfd", -rv); return 0; }
	ufd = rv;
	f->uffd = fd_of(t->pid, (int)ufd);
	int ge = errno;
	/* never left in the tracee */
	if ((e = INJ(t, NULL, SYS_close, ufd, 0, 0, 0, 0, 0))) return e;
	if (f->uffd < 0) { fill_off_err(f, "pidfd_getfd", ge); return 0; }
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	if (ioctl(f->uffd, UFFDIO_API, &api)) { fill_off_err(f, "api", errno); return 0; }
	f->reg = calloc(n, sizeof *f->reg);
	for (int i = 0; i < im->nvma; i++) {
		struct img_vma *v = &im->vmas[i];
		if (!anon_private(v->kind)) continue;
		struct uffdio_register reg = { { v->start, v->end - v->start }, UFFDIO_REGISTER_MODE_MISSING, 0 };
		if (ioctl(f->uffd, UFFDIO_REGISTER, &reg)) { f->unreg++; continue; }	/* that region: /proc/PID/mem */
		f->reg[f->nreg][0] = v->start;
		f->reg[f->nreg][1] = v->end;
		f->nreg++;
	}
	return 0;
}

static int registered(struct fill *f, uint64_t addr, uint64_t len)
{
	for (int i = 0; i < f->nreg; i++) if (addr >= f->reg[i][0] && addr + len <= f->reg[i][1]) return 1;
	return 0;
}

/* writes [addr, addr+len) of the tracee (page aligned; len a multiple of PAGE when addr is in a
 * registered region) */
int fill_write(struct fill *f, uint64_t addr, const void *p, uint64_t len)
{
	if (f->uffd < 0 || !registered(f, addr, len)) {
		f->written += len / PAGE;
		return mem_write(f->t, addr, p, len);
	}
	const uint8_t *src = p;
	int again = 0;
	while (len) {
		struct uffdio_copy c = { addr, (uint64_t)(uintptr_t)src, len, UFFDIO_COPY_MODE_DONTWAKE, 0 };
		int r = ioctl(f->uffd, UFFDIO_COPY, &c);
		int err = r ? errno : 0;
		uint64_t done = c.copy > 0 ? (uint64_t)c.copy : 0;
		if (done > len) done = len;
		addr += done; src += done; len -= done;
		f->copied += done / PAGE;
		if (!len) break;
		if (!r && done) continue;	/* a partial copy: on from there */
		if ((err == EAGAIN || err == EINTR) && ++again < 1000) continue;
		if (!r) err = EIO;	/* nothing copied, no error */
		if (err == EEXIST) {	/* the page is there already: written through /proc/PID/mem */
			int e = mem_write(f->t, addr, src, PAGE);
			if (e) return e;
			f->eexist++;
			addr += PAGE; src += PAGE; len -= PAGE;
			continue;
		}
		return fail(err, "UFFDIO_COPY at %#lx+%#lx: %s", addr, len, strerror(err));
	}
	return 0;
}

/* Unregisters the regions and closes the helper's duplicate (also after a failure); with report,
 * a STAT line of how the pages went. */
int fill_end(struct fill *f, int report)
{
	int e = 0;
	for (int i = 0; i < f->nreg; i++) {
		struct uffdio_range rg = { f->reg[i][0], f->reg[i][1] - f->reg[i][0] };
		if (ioctl(f->uffd, UFFDIO_UNREGISTER, &rg) && !e) e = fail(errno, "UFFDIO_UNREGISTER at %#llx: %s", (unsigned long long)rg.start, strerror(errno));
	}
	if (f->uffd >= 0) close(f->uffd);
	f->uffd = -1;
	free(f->reg);
	f->reg = NULL;
	if (report && !e) {
		if (f->why[0]) ctlf("STAT fill=pwrite fill_why=%s uffd_pages=0 mem_pages=%llu", f->why, (unsigned long long)f->written);
		else ctlf("STAT fill=uffd uffd_pages=%llu uffd_eexist=%llu mem_pages=%llu uffd_regions=%d uffd_unregistered=%d", (unsigned long long)f->copied,
			  (unsigned long long)f->eexist, (unsigned long long)f->written, f->nreg, f->unreg);
	}
	f->nreg = 0;
	return e;
}
