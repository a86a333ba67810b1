/* The image stream: CRC32C, writing and reading checksummed records, and the parsed metadata
 * of an image (struct image). The record layouts are in image.h. */
#include "ppm.h"
#include <cpuid.h>

/* ---------- CRC32C ---------- */

static uint32_t crc_tab[256];
static int crc_hw;

void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_tab[i] = c;
	}
	unsigned a, b, c, d;
	__cpuid(1, a, b, c, d);
	crc_hw = (c >> 20) & 1;
}

__attribute__((target("sse4.2")))
static uint32_t crc_sse1(uint32_t crc, const uint8_t *p, size_t n)
{
	uint64_t c = crc;
	while (n >= 8) { uint64_t v; memcpy(&v, p, 8); c = __builtin_ia32_crc32di(c, v); p += 8; n -= 8; }
	uint32_t c32 = (uint32_t)c;
	while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
	return c32;
}

/* Polynomials over GF(2) modulo the CRC's, in its reflected order (bit 31 is x^0): a * b mod P. */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
	uint32_t m = 1u << 31, p = 0;
	for (;;) {
		if (a & m) {
			p ^= b;
			if ((a & (m - 1)) == 0) break;
		}
		m >>= 1;
		b = b & 1 ? (b >> 1) ^ 0x82f63b78u : b >> 1;
	}
	return p;
}

/* x^(8n) mod P: what a CRC register is multiplied by when n more bytes go through it */
static uint32_t x8n(uint64_t n)
{
	uint32_t r = 1u << 31, b = 1u << 30;	/* x^0, x^1 */
	for (uint64_t e = 8 * n; e; e >>= 1) {
		if (e & 1) r = multmodp(r, b);
		b = multmodp(b, b);
	}
	return r;
}

/* The crc32 instruction takes 3 cycles and can start one per cycle: three equal thirds of the
 * buffer go through it side by side (the second and third from a zero register), then are
 * joined: crc(A B) = crc(A) * x^(8|B|) + crc0(B). Three times the speed of one stream on a page
 * record; the result is the same. */
__attribute__((target("sse4.2")))
static uint32_t crc_sse(uint32_t crc, const uint8_t *p, size_t n)
{
	if (n < 3 * 1024) return crc_sse1(crc, p, n);
	static __thread size_t last_len;
	static __thread uint32_t last_pow;
	size_t len = n / 24 * 8;
	if (len != last_len) { last_pow = x8n(len); last_len = len; }
	const uint8_t *q = p + len, *r = q + len;
	uint64_t a = crc, b = 0, c = 0;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t x, y, z;
		memcpy(&x, p + i, 8);
		memcpy(&y, q + i, 8);
		memcpy(&z, r + i, 8);
		a = __builtin_ia32_crc32di(a, x);
		b = __builtin_ia32_crc32di(b, y);
		c = __builtin_ia32_crc32di(c, z);
	}
	uint32_t v = multmodp(last_pow, (uint32_t)a) ^ (uint32_t)b;
	v = multmodp(last_pow, v) ^ (uint32_t)c;
	return crc_sse1(v, p + 3 * len, n - 3 * len);
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t n)
{
	crc = ~crc;
	if (crc_hw) crc = crc_sse(crc, buf, n);
	else { const uint8_t *p = buf; while (n--) crc = crc_tab[(crc ^ *p++) & 0xff] ^ (crc >> 8); }
	return ~crc;
}

/* ---------- records ---------- */

int g_stall_ms = -1;
int g_copy_fd = -1;
long g_fault_after = -1;
volatile sig_atomic_t g_orphaned;
volatile sig_atomic_t g_streamed;
int g_seized;

static void on_orphaned(int sig) { (void)sig; g_orphaned = 1; }

/* A raw image (--copy) is written for the daemon that started this helper: if that daemon dies,
 * the dump fails at its next write (the process is released as it was, as when a pipe to the
 * daemon breaks), instead of going on into the connection on its own. */
void abort_when_orphaned(void)
{
	struct sigaction sa = { .sa_handler = on_orphaned };	/* no SA_RESTART: a blocked write or poll returns */
	sigaction(SIGUSR2, &sa, NULL);
	prctl(PR_SET_PDEATHSIG, SIGUSR2);
	if (getppid() == 1) g_orphaned = 1;
}

/* waits until fd is ready for ev (a non-blocking socket handed over by the caller); 0, or the
 * error of a stream that made no progress for --stall-ms, or of the daemon's end (g_orphaned).
 * In slices of 50 ms: SIGUSR2 may be taken by another thread (the writer, pipeline.c), so the
 * poll here is not always interrupted by it. */
int wait_io(int fd, short ev)
{
	double end = g_stall_ms >= 0 ? now_ms() + g_stall_ms : 0;
	for (;;) {
		if (g_orphaned) return fail(ECONNABORTED, "the daemon that asked for the image is gone");
		double left = g_stall_ms >= 0 ? end - now_ms() : 50;
		if (left <= 0) return fail(ETIMEDOUT, "the connection is silent: the image stream made no progress for %d ms", g_stall_ms);
		struct pollfd pf = { fd, ev, 0 };
		if (poll(&pf, 1, left < 50 ? (int)left + 1 : 50) > 0) return 0;
	}
}

int w_vec(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		if (g_orphaned) return fail(ECONNABORTED, "the daemon that asked for the image is gone");
		ssize_t r = writev(fd, iov, n);
		if (r < 0) {
			if (errno == EINTR) continue;
			if (errno == EAGAIN) { int we = wait_io(fd, POLLOUT); if (we) return we; continue; } /* a non-blocking socket from the caller */
			return fail(errno, "writing the image: %s", strerror(errno));
		}
		if (fd == 3 && r > 0) g_streamed = 1;
		while (n > 0 && (size_t)r >= iov->iov_len) { r -= iov->iov_len; iov++; n--; }
		if (n > 0) { iov->iov_base = (char *)iov->iov_base + r; iov->iov_len -= r; }
	}
	return 0;
}

int rec_put(struct imgw *w, uint32_t type, const void *a, size_t al, const void *b, size_t bl)
{
	if (w->wa) {
		/* written by the writer thread (pipeline.c): copied into its next slot, in order */
		int e;
		if (al + bl <= WAHEAD_MAX) {
			uint8_t *p = wahead_body(w, &e);
			if (!p) return e;
			memcpy(p, a, al);
			if (bl) memcpy(p + al, b, bl);
			return wahead_put(w, type, al + bl);
		}
		if ((e = wahead_sync(w))) return e;	/* too long for a slot: written here, after the rest */
	}
	struct rechdr h = { type, REC_MAGIC, al + bl };
	uint32_t crc = crc32c(0, &h, sizeof h);
	crc = crc32c(crc, a, al);
	if (bl) crc = crc32c(crc, b, bl);
	struct iovec iov[4] = { { &h, sizeof h }, { (void *)a, al }, { (void *)b, bl }, { &crc, 4 } };
	struct iovec cp[4];
	if (w->copy >= 0) memcpy(cp, iov, sizeof cp);
	int r = w_vec(w->fd, iov, 4);
	if (!r && w->copy >= 0) r = w_vec(w->copy, cp, 4);
	if (r) return r;
	w->nrec++;
	w->bytes += sizeof h + al + bl + 4;
	return 0;
}

static int r_all(struct imgr *ir, void *p, size_t n)
{
	int fd = ir->fd;
	if (ir->pre_off < ir->pre_len) {	/* bytes read ahead while waiting for the pid */
		size_t k = ir->pre_len - ir->pre_off < n ? ir->pre_len - ir->pre_off : n;
		memcpy(p, ir->pre + ir->pre_off, k);
		ir->pre_off += k;
		p = (char *)p + k;
		n -= k;
		if (ir->pre_off == ir->pre_len) { free(ir->pre); ir->pre = NULL; ir->pre_len = ir->pre_off = ir->pre_cap = 0; }
	}
	while (n) {
		ssize_t r = read(fd, p, n);
		if (r < 0) {
			if (errno == EINTR) continue;
			if (errno == EAGAIN) { int we = wait_io(fd, POLLIN); if (we) return we; continue; }
			return fail(errno, "reading the image: %s", strerror(errno));
		}
		if (r == 0) return fail(EBADMSG, "image truncated (stream ended early)");
		if (g_fault_after >= 0 && (g_fault_after -= r) < 0) return fail(ECONNABORTED, "injected fault: restore broken half-way");
		p = (char *)p + r;
		n -= r;
	}
	return 0;
}

int rec_hdr(struct imgr *r, struct rechdr *h)
{
	if (r->peeked) { *h = r->peek; r->peeked = 0; return 0; }
	if (r->ra) return rahead_next(r, h);
	int e = r_all(r, h, sizeof *h);
	if (e) return e;
	if ((h->magic != REC_MAGIC && !(h->magic == REC_MAGIC_NC && h->type == R_PAGES)) || h->type < R_HEADER || h->type > R_LAST || h->len > MAX_REC)
		return fail(EBADMSG, "image corrupt: bad record header (type %u, len %llu)", h->type, (unsigned long long)h->len);
	return 0;
}

int rec_peek(struct imgr *r, uint32_t *type)
{
	if (!r->peeked) {
		int e = rec_hdr(r, &r->peek);
		if (e) return e;
		r->peeked = 1;
	}
	*type = r->peek.type;
	return 0;
}

/* reads the body of a record whose header is h into buf (cap bytes) and checks its CRC */
int rec_body(struct imgr *r, const struct rechdr *h, void *buf, size_t cap)
{
	if (h->len > cap) return fail(EBADMSG, "image corrupt: record type %u too long (%llu)", h->type, (unsigned long long)h->len);
	if (r->ra) { memcpy(buf, rahead_body(r), h->len); return 0; }	/* read and checked ahead */
	uint32_t crc_img;
	int e = r_all(r, buf, h->len);
	if (!e) e = r_all(r, &crc_img, 4);
	if (e) return e;
	uint32_t crc = h->magic == REC_MAGIC_NC ? 0 : crc32c(crc32c(0, h, sizeof *h), buf, h->len);
	if (crc != crc_img) return fail(EBADMSG, "image corrupt: checksum mismatch in record %u (type %u)", r->nrec, h->type);
	r->nrec++;
	r->bytes += sizeof *h + h->len + 4;
	return 0;
}

/* rec_body without a copy where the record was read ahead (pipeline.c): *out is the body, in a
 * slot of the read-ahead (valid until the next record) or in buf */
int rec_body_ref(struct imgr *r, const struct rechdr *h, void *buf, size_t cap, const uint8_t **out)
{
	if (r->ra && h->len <= cap) { *out = rahead_body(r); return 0; }
	*out = buf;
	return rec_body(r, h, buf, cap);
}

void free_image(struct image *im)
{
	free(im->threads);
	free(im->vmas);
	free(im->fds);
	free(im->epolls);
	free(im->watches);
	free(im->timers);
	free(im->sigs);
	for (int i = 0; i < im->nfilt; i++) free(im->filters[i]);
	free(im);
}

/* reads the metadata records (everything before the first page record) */
int read_meta(struct imgr *r, struct image **out)
{
	struct image *im = calloc(1, sizeof *im);
	struct rechdr h;
	uint32_t first;
	int e = rec_peek(r, &first);
	trace("first-hdr");
	if (!e && first == R_PRECOPY) e = stage_read(r);	/* a pre-copy stream: its rounds first */
	if (!e) e = rec_hdr(r, &h);
	if (!e && h.type == R_END && h.len == sizeof(struct img_end)) {
		/* an empty image (native/ppm.c cancel_empty_image): the sender's dump failed */
		struct img_end end;
		e = rec_body(r, &h, &end, sizeof end);
		if (!e) e = fail(ECANCELED, "the sender sent no image (its dump failed)");
	}
	if (!e && h.type != R_HEADER) e = fail(EBADMSG, "not an hpc-ppm image (first record type %u)", h.type);
	if (!e && h.len < 16) e = fail(EBADMSG, "not an hpc-ppm image");
	if (!e) {
		uint8_t b[4096];
		e = rec_body(r, &h, b, sizeof b);
		if (!e && memcmp(b, IMG_MAGIC, 8)) e = fail(EBADMSG, "not an hpc-ppm image (bad magic)");
		if (!e) {
			memcpy(&im->h, b, sizeof im->h < h.len ? sizeof im->h : h.len);
			if (im->h.version != IMG_VERSION) e = fail(EPROTO, "image format version %u is not supported (this engine reads version %u)", im->h.version, IMG_VERSION);
			else if (h.len != sizeof im->h) e = fail(EBADMSG, "image header has the wrong size");
		}
	}
	if (!e && (im->h.nthreads < 1 || im->h.nthreads > 4096)) e = fail(EBADMSG, "image header: bad thread count %u", im->h.nthreads);
	if (!e) im->threads = calloc(im->h.nthreads, sizeof *im->threads);
	int have_core = 0, cap_v = 0, cap_f = 0;
	while (!e) {
		uint32_t type;
		if ((e = rec_peek(r, &type))) break;
		if (type == R_PAGES || type == R_FDDATA || type == R_PREVALID || type == R_END) break;
		if ((e = rec_hdr(r, &h))) break;
		if (type == R_CORE) {
			if (have_core) { e = fail(EBADMSG, "a second core record"); break; }
			if (h.len != sizeof im->c) { e = fail(EBADMSG, "core record has the wrong size"); break; }
			e = rec_body(r, &h, &im->c, sizeof im->c);
			struct img_core *c = &im->c;
			/* counts the restore uses to index its arrays: a forged record is refused here */
			if (!e && (c->auxv_len > sizeof c->auxv || c->auxv_len % 16 || c->nsig > SIGQ_MAX || c->ngroups > 32 || c->nrlim > 16))
				e = fail(EBADMSG, "bad core record");
			for (uint32_t i = 0; !e && i < c->nrlim; i++) if (c->rlim[i][0] > c->rlim[i][1]) e = fail(EBADMSG, "bad core record");
			c->cwd[sizeof c->cwd - 1] = 0;
			c->exe[sizeof c->exe - 1] = 0;
			have_core = 1;
		} else if (type == R_THREAD) {
			/* a thread's own state, then its XSTATE record */
			if (im->nthreads >= (int)im->h.nthreads) { e = fail(EBADMSG, "more thread records than the header's %u", im->h.nthreads); break; }
			if (h.len != sizeof(struct img_thread)) { e = fail(EBADMSG, "thread record has the wrong size"); break; }
			struct image_thread *it = &im->threads[im->nthreads];
			if ((e = rec_body(r, &h, &it->th, sizeof it->th))) break;
			if ((e = rec_hdr(r, &h))) break;
			if (h.type != R_XSTATE) { e = fail(EBADMSG, "thread record without its register state"); break; }
			if ((e = rec_body(r, &h, it->xs, sizeof it->xs))) break;
			it->xlen = h.len;
			im->nthreads++;
		} else if (type == R_SECCOMP) {
			if (im->nfilt == 8) { e = fail(EBADMSG, "too many seccomp filters"); break; }
			uint8_t *b = calloc(1, h.len + 4);
			e = rec_body(r, &h, b, h.len);
			memcpy(&im->nins[im->nfilt], b, 4);
			if (!e && (h.len < 4 || (uint64_t)im->nins[im->nfilt] * 8 + 4 != h.len)) e = fail(EBADMSG, "bad seccomp record");
			im->filters[im->nfilt++] = b;
		} else if (type == R_VMA) {
			if (im->nvma == cap_v) { cap_v = cap_v ? cap_v * 2 : 64; im->vmas = realloc(im->vmas, cap_v * sizeof *im->vmas); }
			struct img_vma *v = &im->vmas[im->nvma];
			memset(v, 0, sizeof *v);
			e = rec_body(r, &h, v, sizeof *v);
			if (!e && (h.len < VMA_FIXED || v->start >= v->end || v->start % PAGE || v->end % PAGE || v->end > TASK_TOP || v->kind < K_ANON || v->kind > K_LAST))
				e = fail(EBADMSG, "bad memory region record");
			v->path[sizeof v->path - 1] = 0;
			im->nvma++;
		} else if (type == R_FD) {
			if (im->nfd == cap_f) { cap_f = cap_f ? cap_f * 2 : 16; im->fds = realloc(im->fds, cap_f * sizeof *im->fds); }
			struct img_fd *f = &im->fds[im->nfd];
			memset(f, 0, sizeof *f);
			e = rec_body(r, &h, f, sizeof *f);
			if (!e && (h.len < FD_FIXED || f->fd < 0 || f->fd > (1 << 20) || f->kind < F_FILE || f->kind > F_LAST || f->dup_of >= f->fd ||
				   f->reopen_of >= (1 << 20) || f->peer >= (1 << 20) || (im->nfd && f->fd <= im->fds[im->nfd - 1].fd)))
				e = fail(EBADMSG, "bad fd record");
			f->path[sizeof f->path - 1] = 0;
			im->nfd++;
		} else if (type == R_EPOLL) {
			if (h.len != sizeof(struct img_epoll)) { e = fail(EBADMSG, "bad epoll record"); break; }
			if (im->nepoll % 64 == 0) im->epolls = realloc(im->epolls, (im->nepoll + 64) * sizeof *im->epolls);
			e = rec_body(r, &h, &im->epolls[im->nepoll++], sizeof *im->epolls);
		} else if (type == R_INOTIFY) {
			if (im->nwatch % 16 == 0) im->watches = realloc(im->watches, (im->nwatch + 16) * sizeof *im->watches);
			struct img_inotify *w = &im->watches[im->nwatch++];
			memset(w, 0, sizeof *w);
			e = rec_body(r, &h, w, sizeof *w);
			if (!e && (h.len < INOTIFY_FIXED || w->wd <= 0)) e = fail(EBADMSG, "bad inotify record");
			w->path[sizeof w->path - 1] = 0;
		} else if (type == R_TIMER) {
			if (h.len != sizeof(struct img_timer) || im->ntimer == MAX_TIMERS) { e = fail(EBADMSG, "bad timer record"); break; }
			if (!im->timers) im->timers = calloc(MAX_TIMERS, sizeof *im->timers);
			e = rec_body(r, &h, &im->timers[im->ntimer++], sizeof *im->timers);
		} else if (type == R_SIGINFO) {
			/* a pending signal: for the process (-1) or a thread of the header's count */
			struct img_siginfo q;
			int sig = 0;
			if (h.len != sizeof q || !have_core || im->nsig >= (int)im->c.nsig) { e = fail(EBADMSG, "bad signal record"); break; }
			if ((e = rec_body(r, &h, &q, sizeof q))) break;
			memcpy(&sig, q.info, sizeof sig);
			if (q.thread < -1 || q.thread >= (int)im->h.nthreads || sig < 1 || sig > 64 || sig == SIGKILL) {
				e = fail(EBADMSG, "bad signal record");
				break;
			}
			if (!im->sigs) im->sigs = calloc(im->c.nsig, sizeof *im->sigs);
			if (!im->sigs) { e = fail(ENOMEM, "no memory for %u signal records", im->c.nsig); break; }
			im->sigs[im->nsig++] = q;
		} else e = fail(EBADMSG, "unexpected record type %u in image metadata", type);
	}
	if (!e && (!have_core || im->nthreads != (int)im->h.nthreads)) e = fail(EBADMSG, "image lacks its core or thread state");
	if (!e && im->nsig != (int)im->c.nsig) e = fail(EBADMSG, "image has %d of its %u signal records", im->nsig, im->c.nsig);
	if (e) { free_image(im); return e; }
	*out = im;
	return 0;
}

/* reads the END record whose header is h and checks the counts of everything before it */
int rec_end(struct imgr *r, const struct rechdr *h)
{
	struct img_end end;
	if (h->len != sizeof end) return fail(EBADMSG, "bad end record");
	if (r->ra) return rahead_end(r);	/* read and checked ahead */
	uint32_t nrec = r->nrec;
	uint64_t bytes = r->bytes;
	int e = rec_body(r, h, &end, sizeof end);
	if (e) return e;
	r->ended = 1;	/* read (drain_image stops here), whether its counts agree or not */
	if (end.nrec != nrec || end.bytes != bytes || end.pages != r->pages)
		return fail(EBADMSG, "image incomplete: %u records/%llu bytes, trailer says %u/%llu", nrec, (unsigned long long)bytes, end.nrec,
			    (unsigned long long)end.bytes);
	return 0;
}

/* Reads the rest of an image whose restore failed at a record boundary, up to and including its
 * END record, so that a connection carrying it can go on (the bytes are dropped, not checked). */
int drain_image(struct imgr *r)
{
	static uint8_t scratch[1 << 16];
	if (r->ended) return 0;	/* END was read already (by the read-ahead, pipeline.c, or rec_end) */
	long keep = g_fault_after;
	g_fault_after = -1;
	for (;;) {
		struct rechdr h;
		int e = rec_hdr(r, &h);
		if (e) { g_fault_after = keep; return e; }
		uint64_t left = h.len + 4;
		while (left && !e) {
			size_t n = left < sizeof scratch ? left : sizeof scratch;
			e = r_all(r, scratch, n);
			left -= n;
		}
		if (e) { g_fault_after = keep; return e; }
		if (h.type == R_END) return 0;
	}
}
