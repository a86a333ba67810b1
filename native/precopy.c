/* Pre-copy (live migration): the memory is copied while the process runs, then only the pages
 * written since, and the process is frozen for the last, small round only (docs/ppm.md,
 * "Pre-copy").
 *
 * Dirty pages are tracked without soft-dirty bits (CONFIG_MEM_SOFT_DIRTY is off on the reference
 * kernel) with userfaultfd write protection in asynchronous mode, as CRIU does: a userfaultfd is
 * made inside the process by an injected userfaultfd(2), taken into the helper with pidfd_getfd
 * and closed again in the process at once (its fd table never keeps it; the helper's duplicate
 * keeps the context alive). The helper sets it up (UFFDIO_API with UFFD_FEATURE_WP_ASYNC) and
 * registers the private anonymous regions in write-protect mode. A write to a protected page is
 * resolved by the kernel itself (the protection is dropped, no message, the process never waits);
 * each round, PAGEMAP_SCAN on /proc/PID/pagemap returns the pages written since the last round and
 * protects them again in the same walk (PM_SCAN_WP_MATCHING), and the helper then copies them.
 * So a protected page is one whose present contents went out in the stream since it was protected;
 * a write, a new page (also the zero page of a read), a region moved by mremap (the kernel drops
 * its registration) or a new region all count as written. Closing the helper's duplicate (also
 * when the helper dies) unregisters every region and drops the protection.
 *
 * Not UFFD_FEATURE_WP_UNPOPULATED: with it, a page read after being zapped would come back as the
 * zero page still marked protected, i.e. "not written", and a stale staged copy would be used.
 *
 * The stream: R_PRECOPY, then the rounds as R_PREPAGES records, then the ordinary image, in which
 * a tracked region's present pages are either R_PAGES (written since the last round) or R_PREVALID
 * ranges (staged, unchanged since). The restore side (stage_*) keeps the staged pages in memory
 * (the latest copy of each page) and writes a PREVALID range from them. */
#include "threads.h"
#include <sys/ioctl.h>
#include <linux/userfaultfd.h>

#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
/* PAGEMAP_SCAN (Linux 6.7, not in the build host's headers) */
struct pm_scan_arg_ {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN_ _IOWR('f', 16, struct pm_scan_arg_)
#define PM_SCAN_WP_MATCHING_ 1
#define PM_SCAN_CHECK_WPASYNC_ 2
#define PAGE_IS_WRITTEN_ 2

struct precopy *g_pc;
int g_precopy, g_precopy_rounds = 8;
uint64_t g_precopy_final = 4UL << 20;

/* a region the rounds track: private anonymous memory, the kind dump_vmas calls K_ANON/K_STACK */
static int tracked(const struct vma *m)
{
	if (m->shared) return 0;
	const char *p = m->path;
	return !p[0] || !strcmp(p, "[heap]") || !strcmp(p, "[stack]") || !strncmp(p, "[anon", 5);
}

/* Sets up dirty tracking in the running process pid and starts the stream (R_PRECOPY). The
 * process runs again when this returns, with no userfaultfd of its own in any case. */
int precopy_start(struct precopy *pc, pid_t pid, int imgfd)
{
	memset(pc, 0, sizeof *pc);
	pc->pid = pid;
	pc->uffd = pc->pmfd = pc->memfd = -1;
	pc->w.fd = imgfd;
	pc->w.copy = g_copy_fd;
	struct tracee t;
	int e = seize(&t, pid, SEIZE_OPTS);
	if (e) { if (!t.dead) ptrace(PTRACE_DETACH, pid, 0, 0); if (t.memfd >= 0) close(t.memfd); return e; }
	long ufd = -1;
	uint64_t vv, vc, vd;
	e = find_vdso(&t, &vv, &vc, &vd);	/* the `syscall` instruction injections run at */
	if (!e) e = sig_save(&t);	/* (SIGTRAP's action, put back by release_live) */
	if (!e) e = INJ(&t, &ufd, SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK, 0, 0, 0, 0, 0);
	if (!e) {
		int pidfd = syscall(NR_PIDFD_OPEN, pid, 0);
		if (pidfd < 0) e = fail(errno, "pidfd_open(%d): %s", pid, strerror(errno));
		else {
			pc->uffd = syscall(NR_PIDFD_GETFD, pidfd, (int)ufd, 0);
			if (pc->uffd < 0) e = fail(errno, "pidfd_getfd(userfaultfd): %s", strerror(errno));
			close(pidfd);
		}
	}
	if (ufd >= 0) {	/* never left in the process */
		int e2 = INJ(&t, NULL, SYS_close, ufd, 0, 0, 0, 0, 0);
		if (!e) e = e2;
	}
	if (getenv("HPC_PPM_TEST_FAULT") && !strcmp(getenv("HPC_PPM_TEST_FAULT"), "precopy-setup") && !e)
		e = fail(EIO, "fault injected after the userfaultfd was made (HPC_PPM_TEST_FAULT)");
	if (t.dead) e = e ? e : fail(ESRCH, "process %d died", pid);
	else release_live(&t);
	if (t.memfd >= 0) close(t.memfd);
	if (e) { precopy_end(pc); return e; }
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC };
	if (ioctl(pc->uffd, UFFDIO_API, &api)) e = fail(ENOTSUP, "pre-copy needs userfaultfd write-protection in asynchronous mode (UFFDIO_API WP_ASYNC): %s", strerror(errno));
	char fn[64];
	snprintf(fn, sizeof fn, "/proc/%d/pagemap", pid);
	if (!e && (pc->pmfd = open(fn, O_RDONLY | O_CLOEXEC)) < 0) e = fail(errno, "open %s: %s", fn, strerror(errno));
	snprintf(fn, sizeof fn, "/proc/%d/mem", pid);
	if (!e && (pc->memfd = open(fn, O_RDONLY | O_CLOEXEC)) < 0) e = fail(errno, "open %s: %s", fn, strerror(errno));
	if (!e) {
		struct pm_scan_arg_ a = { sizeof a, PM_SCAN_CHECK_WPASYNC_, 0, 0, 0, 0, 0, 0, 0, PAGE_IS_WRITTEN_, 0, PAGE_IS_WRITTEN_ };
		if (ioctl(pc->pmfd, PAGEMAP_SCAN_, &a) < 0 && errno == ENOTTY) e = fail(ENOTSUP, "pre-copy needs PAGEMAP_SCAN (Linux 6.7)");
	}
	struct img_precopy p;
	memset(&p, 0, sizeof p);
	memcpy(p.magic, IMG_MAGIC, 8);
	p.version = IMG_VERSION;
	p.pid = pid;
	struct stat isb;
	if (!e && fstat(imgfd, &isb) == 0 && S_ISFIFO(isb.st_mode)) fcntl(imgfd, F_SETPIPE_SZ, 1 << 20);
	if (!e) e = rec_put(&pc->w, R_PRECOPY, &p, sizeof p, NULL, 0);
	if (e) precopy_end(pc);
	return e;
}

/* the pages of [start, end) written since the last scan (protected again when wp): up to cap
 * regions per call; returns their number, -EPERM for a region not registered */
static long scan(struct precopy *pc, uint64_t start, uint64_t end, int wp, struct page_region_ *v, long cap, uint64_t *walk_end)
{
	struct pm_scan_arg_ a = { sizeof a, PM_SCAN_CHECK_WPASYNC_ | (wp ? PM_SCAN_WP_MATCHING_ : 0), start, end, 0,
				  (uint64_t)(uintptr_t)v, cap, 0, 0, PAGE_IS_WRITTEN_, 0, PAGE_IS_WRITTEN_ };
	long n = ioctl(pc->pmfd, PAGEMAP_SCAN_, &a);
	if (n < 0) return -errno;
	*walk_end = a.walk_end;
	return n;
}

/* copies [addr, addr+len) of the running process into PREPAGES records; a part that cannot be
 * read (unmapped meanwhile) is unprotected, so that it counts as written if it is ever there */
static int copy_run(struct precopy *pc, uint8_t *buf, uint64_t addr, uint64_t len, uint64_t *sent)
{
	while (len) {
		uint64_t n = len < CHUNK ? len : CHUNK;
		ssize_t r = pread(pc->memfd, buf + 16, n, addr);
		if (r != (ssize_t)n) {
			struct uffdio_writeprotect wp = { { addr, n }, 0 };
			ioctl(pc->uffd, UFFDIO_WRITEPROTECT, &wp);
		} else {
			uint64_t hdr[2] = { addr, n };
			memcpy(buf, hdr, 16);
			int e = rec_put(&pc->w, R_PREPAGES, buf, 16 + n, NULL, 0);
			if (e) return e;
			*sent += n;
		}
		addr += n; len -= n;
	}
	return 0;
}

/* One round while the process runs: registers the private anonymous regions (new ones too), then
 * copies the pages written since the last round. *dirty: the bytes copied. */
int precopy_round(struct precopy *pc, uint64_t *dirty)
{
	struct vma *m;
	int nm = parse_maps(pc->pid, &m);
	if (nm < 0) return nm;
	static struct page_region_ v[512];
	uint8_t *buf = malloc(CHUNK + 16);
	int e = 0;
	*dirty = 0;
	for (int i = 0; i < nm && !e; i++) {
		if (!tracked(&m[i]) || is_special(m[i].path)) continue;
		struct uffdio_register reg = { { m[i].start, m[i].end - m[i].start }, UFFDIO_REGISTER_MODE_WP, 0 };
		ioctl(pc->uffd, UFFDIO_REGISTER, &reg);	/* a region it fails for stays untracked: sent whole at the end */
		for (uint64_t at = m[i].start; at < m[i].end && !e;) {
			uint64_t we = m[i].end;
			long n = scan(pc, at, m[i].end, 1, v, 512, &we);
			if (n < 0) break;	/* not registered (or gone) */
			for (long k = 0; k < n && !e; k++) e = copy_run(pc, buf, v[k].start, v[k].end - v[k].start, dirty);
			if (we <= at) break;
			at = we;
		}
	}
	free(buf);
	free(m);
	pc->rounds++;
	pc->pre_bytes += *dirty;
	return e;
}

/* Rounds until what was written during one is at most g_precopy_final bytes (the last round is
 * then taken frozen). The rounds also end after g_precopy_rounds rounds, or from the third round on
 * as soon as a round copied no less than the one before (it does not converge): then, if the last
 * round still copied more than half of what the first did, the process writes about as fast as
 * the rounds copy and pc->fallback makes it a plain stop-and-copy; else the frozen part is that
 * round's worth. */
int precopy_rounds(struct precopy *pc)
{
	uint64_t d = 0, prev = UINT64_MAX, first = 0;
	double t0 = now_ms();
	int e = 0;
	for (;;) {
		if ((e = precopy_round(pc, &d))) break;
		pc->last_dirty = d;
		if (pc->rounds == 1) first = d;
		if (pc->rounds > 1 && d <= g_precopy_final) break;
		if (pc->rounds >= g_precopy_rounds || (pc->rounds >= 3 && d >= prev)) { pc->fallback = d > first / 2; break; }
		prev = d;
	}
	if (!e) ctlf("STAT precopy_rounds=%d precopy_bytes=%llu precopy_last=%llu precopy_fallback=%d precopy_ms=%.3f", pc->rounds,
		     (unsigned long long)pc->pre_bytes, (unsigned long long)d, pc->fallback, now_ms() - t0);
	return e;
}

/* The final part, for region v of the stopped process: 1 when v is tracked, its written pages in
 * *vec (n regions, sorted), 0 when it must be sent whole, <0 an error. */
int precopy_written(struct precopy *pc, const struct img_vma *v, struct page_region_ **vec, long *n)
{
	*vec = NULL; *n = 0;
	if (!pc || pc->fallback || (v->kind != K_ANON && v->kind != K_STACK)) return 0;
	long cap = 0;
	for (uint64_t at = v->start; at < v->end;) {
		if (cap - *n < 512) { cap = cap ? cap * 2 : 1024; *vec = realloc(*vec, cap * sizeof **vec); }
		uint64_t we = v->end;
		long k = scan(pc, at, v->end, 0, *vec + *n, cap - *n, &we);
		if (k == -EPERM) { free(*vec); *vec = NULL; *n = 0; return 0; }	/* not registered */
		if (k < 0) { free(*vec); *vec = NULL; return fail(-k, "PAGEMAP_SCAN at %#lx: %s", at, strerror(-k)); }
		*n += k;
		if (we <= at) break;
		at = we;
	}
	return 1;
}

/* Ends the tracking: the helper's duplicate of the userfaultfd is closed, which unregisters every
 * region and drops the protection. Safe to call more than once. */
void precopy_end(struct precopy *pc)
{
	if (pc->uffd >= 0) close(pc->uffd);
	if (pc->pmfd >= 0) close(pc->pmfd);
	if (pc->memfd >= 0) close(pc->memfd);
	pc->uffd = pc->pmfd = pc->memfd = -1;
}

/* ---------- restore side: the staged pages ---------- */

/* the latest staged copy of each page: data in one growing mapping, an open-addressing table
 * from page number to its slot */
struct stage {
	uint8_t *data;
	uint64_t used, cap;	/* pages */
	uint64_t *key, *slot;	/* key: page number + 1, 0 = empty */
	uint64_t tcap, tn;
	uint64_t applied;
};

static uint64_t hsh(uint64_t k) { k *= 0x9e3779b97f4a7c15ULL; return k ^ (k >> 29); }

static uint64_t *lookup(struct stage *s, uint64_t pg, int add)
{
	if (add && (s->tn + 1) * 2 > s->tcap) {
		uint64_t oc = s->tcap, *ok = s->key, *os = s->slot;
		s->tcap = oc ? oc * 2 : 1 << 16;
		s->key = calloc(s->tcap, 8); s->slot = calloc(s->tcap, 8);
		s->tn = 0;
		for (uint64_t i = 0; i < oc; i++) if (ok[i]) { *lookup(s, ok[i] - 1, 1) = os[i]; }
		free(ok); free(os);
	}
	if (!s->tcap) return NULL;
	for (uint64_t i = hsh(pg) & (s->tcap - 1);; i = (i + 1) & (s->tcap - 1)) {
		if (s->key[i] == pg + 1) return &s->slot[i];
		if (!s->key[i]) {
			if (!add) return NULL;
			s->key[i] = pg + 1; s->tn++;
			return &s->slot[i];
		}
	}
}

static int stage_put(struct stage *s, uint64_t addr, const uint8_t *p, uint64_t len)
{
	for (uint64_t off = 0; off < len; off += PAGE) {
		uint64_t *sl = lookup(s, (addr + off) / PAGE, 1);
		if (*sl == 0) {	/* a new page: a new slot (slot numbers start at 1) */
			if (s->used == s->cap) {
				uint64_t nc = s->cap ? s->cap * 2 : 16384;
				void *d = s->data ? mremap(s->data, s->cap * PAGE, nc * PAGE, MREMAP_MAYMOVE)
						  : mmap(NULL, nc * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
				if (d == MAP_FAILED) return fail(ENOMEM, "staging pre-copy pages: %s", strerror(errno));
				s->data = d; s->cap = nc;
			}
			*sl = ++s->used;
		}
		memcpy(s->data + (*sl - 1) * PAGE, p + off, PAGE);	/* a later round overrides */
	}
	return 0;
}

/* Reads a pre-copy stream's rounds (R_PRECOPY was peeked) up to its HEADER into r->stage. */
int stage_read(struct imgr *r)
{
	struct rechdr h;
	int e = rec_hdr(r, &h);
	struct img_precopy p;
	if (!e && h.len != sizeof p) e = fail(EBADMSG, "bad pre-copy record");
	if (!e) e = rec_body(r, &h, &p, sizeof p);
	if (!e && memcmp(p.magic, IMG_MAGIC, 8)) e = fail(EBADMSG, "not an hpc-ppm image (bad magic)");
	if (!e && p.version != IMG_VERSION) e = fail(EPROTO, "image format version %u is not supported (this engine reads version %u)", p.version, IMG_VERSION);
	if (e) return e;
	struct stage *s = calloc(1, sizeof *s);
	r->stage = s;
	uint8_t *buf = malloc(CHUNK + 16);
	uint64_t pages = 0;
	double t0 = now_ms();
	for (;;) {
		uint32_t type;
		if ((e = rec_peek(r, &type)) || type != R_PREPAGES) break;
		if ((e = rec_hdr(r, &h))) break;
		if (h.len < 16 + PAGE || (e = rec_body(r, &h, buf, CHUNK + 16))) { if (!e) e = fail(EBADMSG, "bad pre-copy page record"); break; }
		uint64_t addr, len;
		memcpy(&addr, buf, 8); memcpy(&len, buf + 8, 8);
		if (len != h.len - 16 || len % PAGE || addr % PAGE || addr + len > TASK_TOP) { e = fail(EBADMSG, "bad pre-copy page record at %#lx", addr); break; }
		if ((e = stage_put(s, addr, buf + 16, len))) break;
		pages += len / PAGE;
	}
	free(buf);
	if (!e) ctlf("STAT staged_pages=%llu staged_distinct=%llu stage_ms=%.3f", (unsigned long long)pages, (unsigned long long)s->used, now_ms() - t0);
	return e;
}

/* A PREVALID range: its staged pages into the process (fill.c; runs of pages staged together go in one write). */
int stage_apply(struct imgr *r, struct fill *f, uint64_t addr, uint64_t len)
{
	struct stage *s = r->stage;
	if (!s) return fail(EBADMSG, "pre-copy range at %#lx in an image without pre-copy rounds", addr);
	uint64_t run_a = 0, run_s = 0, run_n = 0;
	for (uint64_t off = 0; off <= len; off += PAGE) {
		uint64_t *sl = NULL;
		if (off < len && !(sl = lookup(s, (addr + off) / PAGE, 0))) return fail(EBADMSG, "pre-copy page %#lx was never sent", addr + off);
		if (sl && run_n && *sl == run_s + run_n) { run_n++; continue; }
		if (run_n) {
			int e = fill_write(f, run_a, s->data + (run_s - 1) * PAGE, run_n * PAGE);
			if (e) return e;
			s->applied += run_n;
		}
		if (sl) { run_a = addr + off; run_s = *sl; run_n = 1; }
	}
	return 0;
}

void stage_free(struct imgr *r)
{
	struct stage *s = r->stage;
	if (!s) return;
	if (s->applied) ctlf("STAT staged_applied=%llu", (unsigned long long)s->applied);
	if (s->data) munmap(s->data, s->cap * PAGE);
	free(s->key); free(s->slot); free(s);
	r->stage = NULL;
}
