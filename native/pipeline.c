/* The image stream in two stages, so that a move's CPU work overlaps its I/O (docs/ppm.md
 * "Pipelined streams"):
 * - reading (rahead_*): a thread reads whole records (header, body, CRC checked) from the stream
 *   into a few page-aligned slots while the restore writes the pages of the records before into
 *   the process; it stops after the END record, so that a connection carrying the image goes on
 *   with whatever follows it. The restore's callers start it (before any namespace is unshared)
 *   and stop it;
 * - writing (wahead_*): the dump reads the process's pages into a slot and checksums them while a
 *   thread writes the slots before into the stream, and another into the copy (--copy).
 * Records keep their order; the first error of either side is the stream's. The thread does
 * nothing but I/O: every ptrace request stays in the thread that traces. */
#include "ppm.h"
#include <pthread.h>

#define SLOTS 6	/* 6 MiB in flight at most */

static uint8_t *slot_map(void)
{
	/* the body's page data (after its 16-byte address/length) page aligned, as UFFDIO_COPY wants it */
	uint8_t *m = mmap(NULL, CHUNK + 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return m == MAP_FAILED ? NULL : m + PAGE - 16;
}

static void slot_unmap(uint8_t *s)
{
	if (s) munmap(s - (PAGE - 16), CHUNK + 2 * PAGE);
}

static void slots_unmap(uint8_t **slot)
{
	for (int k = 0; k < SLOTS; k++) slot_unmap(slot[k]);
}

/* every slot mapped (0), or none (-ENOMEM) */
static int slots_map(uint8_t **slot)
{
	for (int i = 0; i < SLOTS; i++)
		if (!(slot[i] = slot_map())) { slots_unmap(slot); return -ENOMEM; }
	return 0;
}

/* HPC_PPM_PIPE=off: one thread, as before (to compare) */
static int pipe_off(void)
{
	const char *env = getenv("HPC_PPM_PIPE");
	return env && !strcmp(env, "off");
}

/* ---------- reading ---------- */

/* A record read ahead goes into a big slot (a run of pages, up to CHUNK) or, when its body is at
 * most SMALL bytes, into one of RSMALL small ones: the records of a small process (its metadata,
 * runs of a few pages) are read off the stream at once, not one per big slot, while the restore
 * sets the process up (the sender is not held up by a restore that has not reached its pages). */
#define SMALL (64 << 10)
#define RSMALL 58
#define NREC (SLOTS + RSMALL)	/* records in flight at most */
#define SSTRIDE (SMALL + 2 * PAGE)

struct rahead {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *slot[SLOTS];
	uint8_t *small;		/* RSMALL small slots, SSTRIDE apart */
	uint8_t *free_big[SLOTS], *free_small[RSMALL];
	int nbig, nsmall;	/* free slots of each kind */
	struct rechdr hdr[NREC];
	uint8_t *buf[NREC];	/* each record's slot */
	unsigned head, tail;	/* records [head, tail) are read and not yet taken */
	int err;		/* the reader's error (after its records), 0 */
	char msg[512];		/* and its message: the caller may clear its own meanwhile (clear_err) */
	int done;		/* the reader has ended (END read, or err) */
	int end_err;		/* rec_end's result for the END record */
	int taken;		/* the record at head is with the caller (its slot is head's) */
	int stop;		/* the caller is gone: stop at the next record */
	int go;			/* the stream is the reader's (a reader made ahead waits for it) */
	struct imgr *r;
};

static int is_small(struct rahead *a, const uint8_t *p)
{
	return p >= a->small && p < a->small + (size_t)RSMALL * SSTRIDE;
}

/* a slot is free again (a->mu held) */
static void slot_free(struct rahead *a, uint8_t *p)
{
	if (is_small(a, p)) a->free_small[a->nsmall++] = p;
	else a->free_big[a->nbig++] = p;
}

/* records before h are done with: their slots are free again (a->mu held) */
static void release_to(struct rahead *a, unsigned h)
{
	for (; a->head != h; a->head++) slot_free(a, a->buf[a->head % NREC]);
	pthread_cond_broadcast(&a->cv);
}

static void *reader(void *arg)
{
	struct rahead *a = arg;
	pthread_mutex_lock(&a->mu);
	while (!a->go && !a->stop) pthread_cond_wait(&a->cv, &a->mu);
	pthread_mutex_unlock(&a->mu);
	for (;;) {
		pthread_mutex_lock(&a->mu);
		/* one record (and its slot) stays with the caller */
		while (!a->stop && a->tail - a->head >= NREC - 1) pthread_cond_wait(&a->cv, &a->mu);
		int stop = a->stop;
		pthread_mutex_unlock(&a->mu);
		if (stop) break;
		struct rechdr h;
		uint8_t *p = NULL;
		int e = rec_hdr(a->r, &h), end = 0;
		if (!e && h.type == R_END) { a->end_err = rec_end(a->r, &h); end = 1; }
		else if (!e) {
			int sm = h.len <= SMALL;
			pthread_mutex_lock(&a->mu);
			while (!a->stop && (sm ? a->nsmall : a->nbig) == 0) pthread_cond_wait(&a->cv, &a->mu);
			if (!a->stop) p = sm ? a->free_small[--a->nsmall] : a->free_big[--a->nbig];
			pthread_mutex_unlock(&a->mu);
			if (!p) break;
			e = rec_body(a->r, &h, p, sm ? SMALL : CHUNK + 16);
		}
		if (!e && h.type == R_PAGES && h.len >= 16) a->r->pages += (h.len - 16) / PAGE;	/* for END's count (the restore counts these on its r) */
		char msg[sizeof a->msg] = "";
		if (e || a->end_err) err_copy(msg, sizeof msg);
		pthread_mutex_lock(&a->mu);
		if (e || a->end_err) memcpy(a->msg, msg, sizeof msg);
		if (e) {
			a->err = e;
			if (p) slot_free(a, p);
		} else if (!end) { a->hdr[a->tail % NREC] = h; a->buf[a->tail % NREC] = p; a->tail++; }
		if (e || end) a->done = 1;
		pthread_cond_broadcast(&a->cv);
		pthread_mutex_unlock(&a->mu);
		if (e || end) break;
	}
	return NULL;
}

static void rahead_free(struct rahead *a)
{
	slots_unmap(a->slot);
	if (a->small) munmap(a->small - (PAGE - 16), (size_t)RSMALL * SSTRIDE);
	free(a);
}

static struct rahead *made;	/* a reader made ahead (rahead_make), waiting for its stream */

static struct rahead *rahead_new(void)
{
	struct rahead *a = calloc(1, sizeof *a);
	if (!a) return NULL;
	if (slots_map(a->slot)) { free(a); return NULL; }
	/* (address space only: a small slot's pages are made when a record is read into them) */
	uint8_t *m = mmap(NULL, (size_t)RSMALL * SSTRIDE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) { rahead_free(a); return NULL; }
	a->small = m + PAGE - 16;	/* as a big slot: the page data after its 16-byte address/length page aligned */
	for (int i = 0; i < SLOTS; i++) a->free_big[a->nbig++] = a->slot[i];
	for (int i = RSMALL - 1; i >= 0; i--) a->free_small[a->nsmall++] = a->small + (size_t)i * SSTRIDE;
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	if (!(a->r = malloc(sizeof *a->r))) { rahead_free(a); return NULL; }
	if (pthread_create(&a->th, NULL, reader, a)) {
		pthread_cond_destroy(&a->cv);
		pthread_mutex_destroy(&a->mu);
		free(a->r);
		rahead_free(a);
		return NULL;
	}
	return a;
}

/* Makes the reader thread of the next rahead_start now, idle until then: a restore that makes its
 * namespaces before it has read its metadata (a guest's stub made ahead, ppm.c) has no thread made
 * after them. 0, or -1 (rahead_start then makes one, or reads in the caller's thread). */
int rahead_make(void)
{
	if (pipe_off() || made) return made ? 0 : -1;
	made = rahead_new();
	return made ? 0 : -1;
}

/* Starts reading r's records ahead (from its next one); 0, or -errno without a message (r is then
 * read as before, in the caller's thread). HPC_PPM_PIPE=off: never (to compare). A thread cannot
 * be made once this helper has unshared a pid or time namespace for its children: a restore
 * starts it before that (ppm.c cmd_restore), or has made it ahead (rahead_make). */
int rahead_start(struct imgr *r)
{
	if (pipe_off()) return -ENOTSUP;
	struct rahead *a = made;
	made = NULL;
	if (!a) a = rahead_new();
	if (!a) return -ENOMEM;
	/* the reader owns the stream's state from here: the caller's r only points at it */
	pthread_mutex_lock(&a->mu);
	*a->r = *r;
	a->go = 1;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	r->peeked = 0;	/* a record peeked at is the reader's first */
	r->ra = a;
	return 0;
}

/* The next record (rec_hdr with read-ahead): its header; its body is rahead_body's until the next call. */
int rahead_next(struct imgr *r, struct rechdr *h)
{
	struct rahead *a = r->ra;
	pthread_mutex_lock(&a->mu);
	if (a->taken) { release_to(a, a->head + 1); a->taken = 0; }
	while (a->head == a->tail && !a->done) pthread_cond_wait(&a->cv, &a->mu);
	int e = 0;
	if (a->head != a->tail) { *h = a->hdr[a->head % NREC]; a->taken = 1; }
	else if (a->err) {
		e = a->err;
		/* (the first failure is the one reported: the reader's, unless the caller has its own) */
		if (a->msg[0]) fail(-e, "%s", a->msg);
		else fail(-e, "reading the image: %s", strerror(-e));
	}
	else { h->type = R_END; h->magic = REC_MAGIC; h->len = sizeof(struct img_end); }
	pthread_mutex_unlock(&a->mu);
	return e;
}

/* The body of the record rahead_next gave (checked; CHUNK + 16 bytes at most). */
const uint8_t *rahead_body(struct imgr *r)
{
	struct rahead *a = r->ra;
	return a->taken ? a->buf[a->head % NREC] : NULL;
}

/* rec_end with read-ahead: the END record was read and checked by the reader */
int rahead_end(struct imgr *r)
{
	struct rahead *a = r->ra;
	if (a->end_err) { if (a->msg[0]) fail(-a->end_err, "%s", a->msg); else fail(-a->end_err, "reading the image: %s", strerror(-a->end_err)); }
	return a->end_err;
}

/* Ends the read-ahead. drain: the stream is read up to and including its END record first (a
 * restore that failed, whose connection goes on); otherwise a reader still running is left to end
 * with the helper (its stream is given up). r takes the stream's state back. */
void rahead_stop(struct imgr *r, int drain)
{
	struct rahead *a = r->ra;
	if (!a) return;
	r->ra = NULL;
	pthread_mutex_lock(&a->mu);
	a->taken = 0;
	release_to(a, a->tail);	/* records read ahead and not taken are dropped */
	a->stop = !drain;
	pthread_cond_broadcast(&a->cv);
	int gone = a->done;
	pthread_mutex_unlock(&a->mu);
	if (drain || gone) {
		if (drain) {
			/* keep taking until the reader has read END (or failed) */
			pthread_mutex_lock(&a->mu);
			while (!a->done) {
				release_to(a, a->tail);
				pthread_cond_wait(&a->cv, &a->mu);
			}
			pthread_mutex_unlock(&a->mu);
		}
		pthread_join(a->th, NULL);
		*r = *a->r;
		r->ra = NULL;
		free(a->r);
		pthread_cond_destroy(&a->cv);
		pthread_mutex_destroy(&a->mu);
		rahead_free(a);
		return;
	}
	/* still reading (blocked on the stream): it ends with the process; its memory with it */
	pthread_detach(a->th);
}

/* ---------- writing ---------- */

/* a slot holds one whole record as it goes out: header, body, CRC */
#define WBODY sizeof(struct rechdr)

struct wahead;
struct wout {			/* one writer thread: the stream, or the copy */
	pthread_t th;
	int fd;
	unsigned head;		/* records [head, tail) are not yet written to fd */
	struct wahead *a;
};

struct wahead {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *slot[SLOTS];
	size_t len[SLOTS];
	unsigned tail;		/* records before it are queued */
	struct wout out[2];	/* the stream's writer, the copy's (--copy) */
	int nout;
	int err;		/* a writer's error: nothing more is written */
	int stop;
	sigset_t mask;		/* the caller's signal mask before */
};

/* the oldest record a writer still needs: slots before it are free */
static unsigned low(struct wahead *a)
{
	unsigned h = a->out[0].head;
	if (a->nout > 1 && a->tail - a->out[1].head > a->tail - h) h = a->out[1].head;
	return h;
}

static void *writer(void *arg)
{
	struct wout *o = arg;
	struct wahead *a = o->a;
	/* made with the caller's mask, which blocks SIGUSR2 (wahead_start): this thread takes it */
	sigset_t u;
	sigemptyset(&u);
	sigaddset(&u, SIGUSR2);
	pthread_sigmask(SIG_UNBLOCK, &u, NULL);
	pthread_mutex_lock(&a->mu);
	for (;;) {
		while (!a->stop && !a->err && o->head == a->tail) pthread_cond_wait(&a->cv, &a->mu);
		if (a->err || o->head == a->tail) break;	/* failed, or stopped with all written */
		unsigned i = o->head % SLOTS;
		pthread_mutex_unlock(&a->mu);
		struct iovec v = { a->slot[i], a->len[i] };
		int e = w_vec(o->fd, &v, 1);
		pthread_mutex_lock(&a->mu);
		if (e) { if (!a->err) a->err = e; pthread_cond_broadcast(&a->cv); break; }
		o->head++;
		pthread_cond_broadcast(&a->cv);
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

/* Starts writing w's records in a thread (from its next one); 0, or -errno without a message (w is
 * then written as before, in the caller's thread). HPC_PPM_PIPE=off: never. */
int wahead_start(struct imgw *w)
{
	if (pipe_off()) return -ENOTSUP;
	struct wahead *a = calloc(1, sizeof *a);
	if (!a) return -ENOMEM;
	if (slots_map(a->slot)) { free(a); return -ENOMEM; }
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	a->out[0].fd = w->fd;
	a->out[1].fd = w->copy;
	a->nout = w->copy >= 0 ? 2 : 1;
	/* SIGUSR2 (the daemon is gone, image.c abort_when_orphaned) goes to the writer, the thread
	 * that blocks on the stream; the caller sees the writer's error */
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &s, &a->mask);
	int pe = 0, made = 0;
	for (; made < a->nout && !pe; made++) {
		a->out[made].a = a;
		pe = pthread_create(&a->out[made].th, NULL, writer, &a->out[made]);
	}
	if (pe && made > 1) {	/* the stream's writer runs: it is ended, having written nothing */
		pthread_mutex_lock(&a->mu);
		a->stop = 1;
		pthread_cond_broadcast(&a->cv);
		pthread_mutex_unlock(&a->mu);
		pthread_join(a->out[0].th, NULL);
	}
	if (pe) {
		pthread_sigmask(SIG_SETMASK, &a->mask, NULL);
		slots_unmap(a->slot);
		free(a);
		return -pe;
	}
	w->wa = a;
	return 0;
}

/* waits for a free slot; 0, or the writer's error (or the daemon's end) */
static int wait_slot(struct wahead *a)
{
	while (!a->err && a->tail - low(a) >= SLOTS) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
		pthread_cond_timedwait(&a->cv, &a->mu, &ts);
		if (g_orphaned && !a->err) a->err = fail(ECONNABORTED, "the daemon that asked for the image is gone");
	}
	return a->err;
}

/* Room for the body of the next record (WAHEAD_MAX bytes at most): the caller fills it and calls
 * wahead_put. NULL with *e the writer's error (its message is set). */
uint8_t *wahead_body(struct imgw *w, int *e)
{
	struct wahead *a = w->wa;
	pthread_mutex_lock(&a->mu);
	*e = wait_slot(a);
	uint8_t *p = *e ? NULL : a->slot[a->tail % SLOTS] + WBODY;
	pthread_mutex_unlock(&a->mu);
	return p;
}

/* Waits until every record queued is written: 0, or the writer's error. */
int wahead_sync(struct imgw *w)
{
	struct wahead *a = w->wa;
	pthread_mutex_lock(&a->mu);
	while (!a->err && low(a) != a->tail) pthread_cond_wait(&a->cv, &a->mu);
	int e = a->err;
	pthread_mutex_unlock(&a->mu);
	return e;
}

/* Queues the record whose body (len bytes) is in the slot wahead_body gave, with its header and
 * CRC; the counts of w as rec_put keeps them. */
int wahead_put(struct imgw *w, uint32_t type, size_t len)
{
	struct wahead *a = w->wa;
	uint8_t *s = a->slot[a->tail % SLOTS];
	struct rechdr h = { type, REC_MAGIC, len };
	memcpy(s, &h, sizeof h);
	uint32_t crc = crc32c(crc32c(0, &h, sizeof h), s + WBODY, len);
	memcpy(s + WBODY + len, &crc, 4);
	pthread_mutex_lock(&a->mu);
	int e = a->err;
	if (!e) {
		a->len[a->tail % SLOTS] = WBODY + len + 4;
		a->tail++;
		pthread_cond_broadcast(&a->cv);
	}
	pthread_mutex_unlock(&a->mu);
	if (e) return e;
	w->nrec++;
	w->bytes += WBODY + len + 4;
	return 0;
}

/* Ends the writing: every record queued is written first (or the writer failed). 0, or the
 * writer's error. */
int wahead_stop(struct imgw *w)
{
	struct wahead *a = w->wa;
	if (!a) return 0;
	w->wa = NULL;
	pthread_mutex_lock(&a->mu);
	a->stop = 1;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
	for (int k = 0; k < a->nout; k++) pthread_join(a->out[k].th, NULL);
	int e = a->err;
	pthread_sigmask(SIG_SETMASK, &a->mask, NULL);
	slots_unmap(a->slot);
	pthread_cond_destroy(&a->cv);
	pthread_mutex_destroy(&a->mu);
	free(a);
	return e;
}
