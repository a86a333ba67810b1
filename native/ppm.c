/* hpc-ppm-helper: ptrace-based checkpoint/restore engine for x86-64 processes and their threads.
 *
 * This file: the commands and main. The modules are listed in ppm.h.
 *
 * Protocol (see docs/ppm.md):
 *   fd 3  image stream (dump/deputy: written; restore: read)
 *   fd 4  control lines from the helper (falls back to stdout when fd 4 is not open)
 *   fd 5  command lines to a deputy
 *   fd 0-2 are handed to a freshly restored process.
 * Commands: check PID [--family] [--relay] | dump PID [--leave-running] [--target INFO]
 *           [--precopy [--rounds N]] [--relay] [--wait] | restore [opts] | deputy PID [--target INFO] [--family]
 *           [--precopy [--rounds N]] [--relay] [--wait] | hostinfo | info | rawpipe BYTES
 *   --wait: a dump or deputy started ahead of its move checks the process, says CHECKED, reads it,
 *           waits for GO
 *   --pid-hint (restore --guest --keep): the pid its offer said; its pid namespace and stub are made
 *           while the image comes (stub_ahead); an image of another pid gets a stub made again
 *   --confirm: the deputy keeps the dumped original frozen (DUMPED) until HOLLOW or RELEASE; a dump
 *           (with --wait) keeps the dumped process frozen until KILL, RELEASE or SAVE (frozen.c)
 *   --precopy (precopy.c): memory copied in rounds while the process runs, frozen for the last one
 *   --family (family.c): check and deputy allow children; restore catches the family calls
 *   --relay (relay.c): pipes and stream sockets whose other end is elsewhere are relayed
 * Lines out: REASON code text | STAT k=v... | PID n | CHECKED | DUMPED n | RELEASED n | HOLLOW | SIGNAL n code pid uid value | FD n path|- |
 *            IMAGE-IN path | EXIT n | KILLED n | RESTORED n | FAMILY id call | RELAYFD fd dir kind |
 *            RELAY fd dir path [path] | PULLED fd n | OK | ERR ERRNO text
 */
#include "threads.h"

static int cmd_check(pid_t pid)
{
	int n = check_pid(pid, 1);
	if (n) { ctlf("ERR EPERM process %d cannot move (%d reason%s)", pid, n, n > 1 ? "s" : ""); return 3; }
	ctlf("OK");
	return 0;
}

/* The start of dump and deputy: refuse a process that cannot move, seize it and write its image
 * to fd 3. Returns 0 with the process frozen under `t` (a pre-copy still tracked: precopy_done),
 * or the command's exit status (the process is left running as it was, the pre-copy ended). */
static struct precopy pc;

/* Ends the pre-copy tracking of the dump (if any): before the original runs again; after it is
 * killed or hollowed, where it costs nothing (unprotecting every page of a big process does). */
void precopy_done(void)
{
	if (g_pc) precopy_end(g_pc);
	g_pc = NULL;
}

/* deputy --wait (and dump --wait): the helper is started ahead of its move, while the caller offers
 * the process (or its image) to another node. It checks the process at once (CHECKED, or the REASON lines and ERR EPERM), then
 * stops it and reads all of it but its pages (without pre-copy), and waits for one line on fd 5:
 * "GO" or "GO INFO" (INFO: the target's compatibility record, as --target). Any other line, or
 * the end of fd 5: it stops there, the process let go unchanged, no image written (ERR
 * ECANCELED). */
static int g_wait, g_cancelled;

static int wait_go(const char **target)
{
	static char line[4096];
	if (!cmd_line(line, sizeof line)) {
		if (!strcmp(line, "GO")) return 0;
		if (!strncmp(line, "GO ", 3) && line[3]) { *target = line + 3; return 0; }
	}
	g_cancelled = 1;
	ctlf("ERR ECANCELED the move did not go ahead");
	return 4;
}

/* --wait without pre-copy: how long the process, stopped and read up to its pages, waits
 * for GO (an offer's round trip takes a few ms); past it, it is let go and runs on until GO, then
 * it is stopped and read again: a target slow to answer never holds it. HPC_PPM_GO_WAIT_MS (tests). */
static int go_wait_ms(void)
{
	const char *env = getenv("HPC_PPM_GO_WAIT_MS");
	return env && *env ? atoi(env) : 20;
}

#define GO_LATE 1000	/* go_late: no GO within go_wait_ms() */

static int g_went;	/* GO came (a failure after it is reported at once) */

/* dump_image's go for a dump or deputy started ahead, once the process has been read up to its
 * pages: it waits stopped, as it was (registers, masks, SIGTRAP's action: should this helper die
 * meanwhile it runs on unharmed) */
static int go_late(struct tracee *t, const char **target)
{
	tracee_back(t);
	struct pollfd pf = { 5, POLLIN, 0 };
	int r;
	while ((r = poll(&pf, 1, go_wait_ms())) < 0 && errno == EINTR) ;
	if (r == 0) return GO_LATE;
	int n = wait_go(target);
	if (!n) { g_went = 1; trace("go"); ctlf("STAT go_read_ahead=1"); }
	return n;
}

/* A failure, reported; `before_go`: started ahead, the process could not be stopped or read
 * before GO (it ended, or was stopped meanwhile), so nothing is said or written before the answer,
 * then it is what a dump that fails before its first byte does (an empty image with --copy), or
 * a cancel */
static int failed(int before_go, const char **target)
{
	int n;
	if (before_go && (n = wait_go(target))) return n;
	if (before_go) trace("go");
	return report_err();
}

int seize_and_dump(pid_t pid, const char *target, struct tracee *t, struct dumpres *res, double *t0)
{
	trace("dump-start");
	int n = check_pid(pid, 1);
	if (n) {
		g_cancelled = g_wait;	/* started ahead: nothing goes into fd 3 (the caller withdraws its offer) */
		cancel_empty_image();	/* (else the empty image, before the caller hears of it) */
		ctlf("ERR EPERM process %d cannot move (%d reason%s)", pid, n, n > 1 ? "s" : "");
		return 3;
	}
	/* started ahead without pre-copy: the process is stopped and read up to its pages while the
	 * offer goes back and forth, and dump_image waits for the go before it writes (go_late; on a
	 * cancel the process is let go as it was); pre-copy's rounds write at once: it waits here */
	int ahead = g_wait && !g_precopy;
	if (g_wait) {
		trace("checked");
		ctlf("CHECKED");
		if (!ahead && (n = wait_go(&target))) return n;
		if (!ahead) trace("go");
	}
	if (g_precopy) {
		/* --precopy: rounds while it runs (precopy.c); on failure the tracking ends here, on
		 * success the caller ends it (precopy_done) */
		int e = precopy_start(&pc, pid, 3);
		if (!e) { g_pc = &pc; e = precopy_rounds(&pc); }
		if (!e && (n = check_pid(pid, 1))) e = fail(EPERM, "process %d cannot move any more (%d reason%s)", pid, n, n > 1 ? "s" : "");
		if (e) { precopy_done(); return report_err(); }
	}
	for (;;) {
		*t0 = now_ms();
		ctlf("STAT freeze_at=%.3f", clock_ns(CLOCK_REALTIME) / 1e6);	/* wall clock: a restore's running_at on this host minus this is the downtime */
		int e = seize(t, pid, SEIZE_OPTS);
		if (e) { precopy_done(); if (!t->dead) ptrace(PTRACE_DETACH, pid, 0, 0); return failed(ahead, &target); }
		if (!(e = threads_freeze(t))) {
			g_seized = 1;
			trace("seized");
			e = dump_image(t, 3, target, res, ahead ? go_late : NULL);
		}
		if (e == GO_LATE) {
			/* the answer is late: it runs on until GO, then it is read again */
			release_live(t);
			g_seized = 0;	/* (it runs again: not stopped for its dump until seized again) */
			if (t->memfd >= 0) close(t->memfd);
			relay_forget();
			trace("go-late");
			ctlf("STAT go_late=1");
			ahead = 0;
			if ((n = wait_go(&target))) return n;
			trace("go");
			/* it ran meanwhile: checked again */
			if ((n = check_pid(pid, 1))) { fail(EPERM, "process %d cannot move any more (%d reason%s)", pid, n, n > 1 ? "s" : ""); return report_err(); }
			continue;
		}
		if (!e) return 0;
		precopy_done();
		release_live(t);
		return g_cancelled ? e : failed(ahead && !g_went, &target);	/* (a cancel said ERR ECANCELED) */
	}
}

/* A raw image (--copy: the stream goes into a connection) whose dump fails before its first byte
 * is ended by a lone END record, an empty image: the reader knows that nothing follows and the
 * connection can go on (a dump that fails later leaves a broken stream: the caller closes it). */
void cancel_empty_image(void)
{
	if (g_cancelled || (g_copy_fd < 0 && g_keep_fd < 0) || g_streamed) return;
	char keep[sizeof g_err];
	int ke = g_errno;
	memcpy(keep, g_err, sizeof keep);
	struct imgw w = { 3, 0, 0, 0, -1, NULL, NULL };
	struct img_end end = { 0, 0, 0, 0 };
	rec_put(&w, R_END, &end, sizeof end, NULL, 0);
	memcpy(g_err, keep, sizeof keep);
	g_errno = ke;
}

static int cmd_dump(pid_t pid, int mode /* 0 kill, 1 leave running */, const char *target)
{
	struct tracee t;
	struct dumpres res;
	double t0;
	int e = seize_and_dump(pid, target, &t, &res, &t0);
	if (e) { cancel_empty_image(); return e; }
	free(res.vmas);
	if (g_confirm) {
		/* the frozen process is the copy kept until the target runs it (frozen.c) */
		ctlf("STAT freeze_ms=%.3f", now_ms() - t0);
		return dump_frozen(&t);
	}
	if (mode == 1) { precopy_done(); release_live(&t); }
	else { kill_reap(pid); precopy_done(); }
	ctlf("STAT freeze_ms=%.3f", now_ms() - t0);
	ctlf("OK");
	return 0;
}

/* A streamed restore can start while the dump of the original is still running: the original
 * holds the pid until it is removed at the end of the dump. While the holder is stopped by its
 * dumper (tracing stop) or a zombie, read the stream ahead into memory (so that the dump can
 * finish) and wait for the pid, up to 30 s. A holder that runs on (--leave-running, a deputy)
 * means a new pid at once. */
static void wait_for_pid(struct imgr *r, pid_t pid)
{
	double t0 = now_ms();
	int eof = 0;
	char st;
	while ((st = proc_state(pid)) == 'Z' || st == 'X' || (st && being_dumped(pid))) {
		if (now_ms() - t0 > 30000) break;
		struct pollfd pf = { r->fd, POLLIN, 0 };
		if (eof || poll(&pf, 1, 2) <= 0) { if (eof) usleep(2000); continue; }
		if (r->pre_cap - r->pre_len < CHUNK) {
			r->pre_cap = r->pre_cap ? r->pre_cap * 2 : 4 * CHUNK;
			r->pre = realloc(r->pre, r->pre_cap);
			if (!r->pre) { r->pre_len = r->pre_cap = 0; return; }
		}
		ssize_t n = read(r->fd, r->pre + r->pre_len, r->pre_cap - r->pre_len);
		if (n > 0) r->pre_len += n;
		else if (n == 0) eof = 1;
		else if (errno != EAGAIN && errno != EINTR) eof = 1;
	}
}

/* --hold: waits for the caller's GO line on fd 5 (the move is committed). Any other line, the end
 * of fd 5 or its absence means the process must not run: returns 0. */
static int await_go(void)
{
	char line[64];
	while (!cmd_line(line, sizeof line)) {
		/* RELAYED (before GO): the caller has opened the relays' ends (relay.c) */
		if (!strcmp(line, "RELAYED")) { relay_release(); continue; }
		return !strcmp(line, "GO");
	}
	return 0;
}

/* A guest's stub made ahead (restore --guest --keep --pid-hint PID): its pid namespace and its stub
 * (pid PID there) are made while the image is on its way, not after its metadata. The reader of the
 * page records is made before them (no thread can be made after a pid namespace) and waits. The
 * stub keeps the stdio of keep_prepare and the reaper is not told its pid (spawn_stub) until the
 * metadata has said the pid: an image of another pid (a process in a pid namespace of its own at
 * home) gets a stub made again, in the same namespace. One that needs a time namespace has the
 * stub join it (stub_join_timens). Returns 0 with *made (the stub) and *pidns (the namespace)
 * set as far as they could be made (without a namespace the stub is made after the metadata, as
 * without a hint), or a failure reported. */
/* Before a stub is made: the keeper's pipes, then a guest's pid namespace (restore.c guest_pidns:
 * its home pid in it), made after keep_prepare, which closes what the helper does not need;
 * *pidns: the namespace was made. 0, or a failure reported. */
static int stub_prepare(struct restore_opts *o, struct keep *k, int *pidns)
{
	if (o->keep_ms && keep_prepare(k)) return report_err();
	trace("keep-prepared");
	*pidns = guest_ids && guest_pidns() == 0;
	trace("pidns");
	return 0;
}

/* A failure once a stub may have been made ahead: it goes (the stub made after it goes with the helper) */
static int stub_failed(struct tracee *t, int ahead)
{
	if (ahead) kill_reap(t->pid);
	return report_err();
}

static int stub_ahead(struct restore_opts *o, struct keep *k, struct tracee *t, int *made, int *pidns, int *kept)
{
	*made = 0;
	rahead_make();
	int e = stub_prepare(o, k, pidns);
	if (e || !*pidns) return e;
	if (spawn_stub(t, o->pid_hint, kept)) return report_err();
	trace("stub");
	if (!*kept) {
		/* the pid could not be had (above this host's pid_max, say): the stub is made after the
		 * metadata, as without a hint (it gets another pid, STAT pid_kept=0) */
		ctlf("STAT stub_ahead=0 reason=pid-not-kept");
		kill_reap(t->pid);
		return 0;
	}
	*made = 1;
	return 0;
}

static int cmd_restore(struct restore_opts *o)
{
	double t0 = now_ms();
	trace("restore-start");
	struct imgr r = { .fd = 3 };
	struct image *im;
	struct keep k;
	struct tracee t;
	/* ahead: a stub made ahead (stub_ahead); prepared: keep_prepare and the pid namespace done */
	int kept = 0, ahead = 0, prepared = 0, pidns = 0, e;
	if (o->pid_hint > 0 && guest_ids && o->keep_ms && o->stdio_from <= 0) {
		if ((e = stub_ahead(o, &k, &t, &ahead, &pidns, &kept))) return e;
		prepared = 1;
	}
	e = read_meta(&r, &im);
	if (e) return stub_failed(&t, ahead);
	trace("meta");
	if (ahead && im->h.pid != o->pid_hint) {
		ctlf("STAT stub_ahead=0 reason=pid:%d", im->h.pid);
		kill_reap(t.pid);
		ahead = 0;
	}
	if (validate_image(im, 1)) { fail(ENOTSUP, "this host cannot restore the image faithfully"); return stub_failed(&t, ahead); }
	int64_t om = 0, ob = 0;
	int timens = timens_for(im, o, &om, &ob);
	if (o->stdio_from > 0) {
		/* the restored process gets the same stdio objects as the (hollow) original */
		int pfd = syscall(NR_PIDFD_OPEN, o->stdio_from, 0);
		if (pfd < 0) { fail(errno, "pidfd_open(%d): %s", o->stdio_from, strerror(errno)); return report_err(); }
		for (int fd = 0; fd <= 2; fd++) {
			int d = syscall(NR_PIDFD_GETFD, pfd, fd, 0);
			if (d < 0 && errno != EBADF) { fail(errno, "pidfd_getfd(%d, %d): %s", o->stdio_from, fd, strerror(errno)); close(pfd); return report_err(); }
			if (d < 0) { if (fd != fileno(ctl)) close(fd); continue; }
			dup2(d, fd);
			close(d);
		}
		close(pfd);
	}
	if (o->keep_pid && !o->pid_now && !pidns) wait_for_pid(&r, im->h.pid);
	/* the page records read ahead by a thread (pipeline.c), made before the namespaces below */
	rahead_start(&r);
	trace("rahead");
	if (timens && (e = setup_timens(om, ob))) return stub_failed(&t, ahead);
	if (ahead && timens && stub_join_timens(&t)) {
		/* (the stub cannot join it: one made now is made in it) */
		ctlf("STAT stub_ahead=0 reason=timens:%s", errname(g_errno));
		clear_err();
		kill_reap(t.pid);
		ahead = 0;
	}
	if (!ahead) {
		if (!prepared && (e = stub_prepare(o, &k, &pidns))) return e;
		e = spawn_stub(&t, o->keep_pid || pidns ? im->h.pid : 0, &kept);
		if (e) { if (o->keep_ms) keep_spawned(); return report_err(); }
		trace("stub");
	}
	if (o->keep_ms) keep_spawned();
	reaper_tell(t.vpid);	/* (the stub is the guest's: the namespace ends with it) */
	if (o->require_pid && !kept) { kill_reap(t.pid); fail(EEXIST, "pid %d is taken", im->h.pid); return report_err(); }
	t.keep_tids = o->require_pid ? 2 : o->keep_pid || pidns;	/* the other threads' tids, as the pid */
	if (pidns) ctlf("STAT pidns=1 nspid=%d", t.vpid);
	e = restore_into(&t, im, &r, 0, o->eintr);
	trace("restored");
	rahead_stop(&r, 0);	/* ended with END, or given up with the failed restore (the helper ends) */
	trace("rahead-stopped");
	if (!e && o->fault_end) e = fail(ECONNABORTED, "injected fault: restore broken at the end");
	if (e) { kill_reap(t.pid); return report_err(); }
	ctlf("STAT inject_ms=%.3f batches=%ld batched=%ld", g_inject_ms, t.nbatch, t.nbatched);
	ctlf("STAT restore_ms=%.3f injections=%ld pid_kept=%d mono_offset_ns=%lld image_bytes=%llu", now_ms() - t0, t.ninject, kept, (long long)om, (unsigned long long)r.bytes);
	/* the relays' pipes are made while fd 3 is still taken (none of them may land there: a keeper
	 * closes fd 3 later) */
	if (relay_start()) { kill_reap(t.pid); return report_err(); }
	trace("relays");
	close(3);	/* all of the image is read: a socket it came on goes back to the caller alone */
	if (o->keep_ms) {
		int st = keep_run(&k, &t, im, o->hold, o->keep_ms);
		free_image(im);
		return st;
	}
	if (o->hold) {
		/* restored but held (traced, stopped) until the caller commits the move */
		ctlf("PID %d", t.pid);
		if (!await_go()) { kill_reap(t.pid); free_image(im); ctlf("KILLED %d", SIGKILL); return 0; }
	}
	if (restored_run(&t, im)) { kill_reap(t.pid); return report_err(); }
	ctlf("STAT running_at=%.3f", clock_ns(CLOCK_REALTIME) / 1e6);
	if (!o->hold) ctlf("PID %d", t.pid);
	free_image(im);
	if (!o->wait) { ctlf("OK"); return 0; }
	if (g_family) family_supervise(t.pid);
	int st;
	while (waitpid(t.pid, &st, 0) < 0 && errno == EINTR);
	if (WIFEXITED(st)) ctlf("EXIT %d", WEXITSTATUS(st));
	else ctlf("KILLED %d", WTERMSIG(st));
	return 0;
}

static int cmd_info(void)
{
	struct imgr r = { .fd = 3 };
	struct image *im;
	if (read_meta(&r, &im)) return report_err();
	char cl[256];
	compat_line(&im->h.c, cl, sizeof cl);
	ctlf("INFO version=%u pid=%d comm=%s exe=%s threads=%d vmas=%d fds=%d filters=%d timers=%d kernel=%s compat=%s", im->h.version,
	     im->h.pid, im->threads[0].th.comm, im->c.exe, im->nthreads, im->nvma, im->nfd, im->nfilt, im->ntimer, im->h.c.release, cl);
	uint8_t *buf = malloc(CHUNK + 16);
	for (;;) {
		struct rechdr h;
		if (rec_hdr(&r, &h)) { free(buf); return report_err(); }
		if (h.type == R_END) {
			if (rec_end(&r, &h)) { free(buf); return report_err(); }
			break;
		}
		if ((h.type != R_PAGES && h.type != R_FDDATA && h.type != R_PREVALID) || h.len < 16 || rec_body(&r, &h, buf, CHUNK + 16)) { fail(EBADMSG, "bad page record"); free(buf); return report_err(); }
		if (h.type == R_PAGES) r.pages += (h.len - 16) / PAGE;
	}
	free(buf);
	ctlf("STAT pages=%llu bytes=%llu", (unsigned long long)r.pages, (unsigned long long)r.bytes);
	int n = validate_image(im, 1);
	ctlf(n ? "ERR ENOTSUP cannot be restored on this host" : "OK");
	free_image(im);
	return n ? 3 : 0;
}

/* Raw copy of BYTES through a pipe, for the benchmark: the writer sends BYTES of its own
 * (written, resident) memory, the reader receives them into fresh memory of the same size, as a
 * receiving process would; with hot=1 both sides reuse one 1 MiB buffer instead (cache-hot bound). */
static int cmd_rawpipe(uint64_t bytes, int hot)
{
	int p[2];
	if (pipe(p)) return fail(errno, "pipe"), report_err();
	fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
	uint64_t span = hot ? CHUNK : (bytes + PAGE - 1) / PAGE * PAGE;
	uint8_t *src = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *dst = hot ? src : mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (src == MAP_FAILED || dst == MAP_FAILED) return fail(ENOMEM, "mmap"), report_err();
	for (uint64_t i = 0; i < span; i += 8) *(uint64_t *)(src + i) = i * 0x9e3779b97f4a7c15ULL;
	double t0 = now_ms();
	pid_t c = fork();
	if (c == 0) {
		close(p[0]);
		for (uint64_t off = 0; off < bytes;) {
			uint64_t n = bytes - off < CHUNK ? bytes - off : CHUNK;
			ssize_t w = write(p[1], src + (hot ? 0 : off), n);
			if (w <= 0) _exit(1);
			off += w;
		}
		_exit(0);
	}
	close(p[1]);
	uint64_t got = 0;
	for (;;) {
		uint64_t n = bytes - got < CHUNK ? bytes - got : CHUNK;
		if (n == 0) break;
		ssize_t r = read(p[0], dst + (hot ? 0 : got), n);
		if (r <= 0) break;
		got += r;
	}
	int st;
	waitpid(c, &st, 0);
	double ms = now_ms() - t0;
	ctlf("STAT raw_bytes=%llu raw_ms=%.3f", (unsigned long long)got, ms);
	ctlf("OK");
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: hpc-ppm-helper check PID [--family] [--relay]\n"
		"       hpc-ppm-helper dump PID [--leave-running] [--target HOSTINFO] [--precopy [--rounds N]] [--relay] [--copy] [--stall-ms MS] [--wait [--confirm]]\n"
		"                              (image on fd 3; --copy: also on fd 6; --wait: CHECKED, then GO [HOSTINFO] on fd 5)\n"
		"       hpc-ppm-helper deputy PID [--target HOSTINFO] [--family] [--precopy [--rounds N]] [--relay] [--copy] [--stall-ms MS] [--wait] [--confirm]\n"
		"                              (image on fd 3, --copy: also on fd 6; commands on fd 5; --wait: CHECKED, then GO [HOSTINFO] on fd 5;\n"
		"                               --confirm: DUMPED, then HOLLOW or RELEASE on fd 5)\n"
		"       hpc-ppm-helper restore [--new-pid|--require-pid|--pid-now] [--no-wait] [--eintr] [--stdio-from PID] [--family] [--hold]\n"
		"                              [--keep LEASE_MS]  (keeper: the process outlives its daemon) [--guest [--pid-hint PID]]\n"
		"                              [--clock auto|real|continue|OFFSET_NS] [--stall-ms MS] [--test-fault early|end]\n"
		"                              (image on fd 3: a pipe, file or socket)\n"
		"       hpc-ppm-helper info    (image on fd 3)\n"
		"       hpc-ppm-helper hostinfo | rawpipe BYTES [--hot] | unread PID FD\n"
		"       hpc-ppm-helper standby   (then RUN PID FD3:INO|- FD6:INO|- COMMAND ARGS... on fd 5)\n"
		"control lines go to fd 4 (or stdout)\n");
}

static int parse_pid(const char *s, pid_t *pid)
{
	char *e;
	long v = strtol(s, &e, 10);
	if (!*s || *e || v <= 0 || v > INT_MAX) return -1;
	*pid = v;
	return 0;
}

/* fd `to` becomes a duplicate of descriptor `fd` of process pid (pidfd_getfd) */
static int take_fd(pid_t pid, int fd, int to)
{
	if (fd < 0) return fail(EBADF, "bad descriptor number");
	int got = fd_of(pid, fd);
	if (got < 0) return fail(errno, "descriptor %d of %d: %s", fd, pid, strerror(errno));
	if (got != to) { dup2(got, to); close(got); }
	else fcntl(to, F_SETFD, 0);	/* (pidfd_getfd's descriptor is close-on-exec) */
	return 0;
}

/* take_fd for a RUN line's "FD:INODE": the descriptor must still be the object the daemon named
 * (a connection closed meanwhile could have left its number to another one) */
static int take_named_fd(pid_t pid, const char *spec, int to)
{
	char *end;
	long fd = strtol(spec, &end, 10);
	if (end == spec || *end != ':' || fd < 0) return fail(EINVAL, "bad descriptor %s", spec);
	unsigned long long ino = strtoull(end + 1, NULL, 10);
	if (take_fd(pid, (int)fd, to)) return -1;
	struct stat st;
	if (fstat(to, &st) || (unsigned long long)st.st_ino != ino) {
		close(to);
		return fail(EBADF, "descriptor %ld of %d is no longer the one named (closed before it was taken)", fd, pid);
	}
	return 0;
}

static int run(int argc, char **argv);

/* points this process's command line (/proc/self/cmdline, what ps shows) at argv; -1 if that
 * is not allowed, the old one kept. PR_SET_MM_MAP with its other fields as they are: unlike the
 * single-field PR_SET_MM calls it needs no CAP_SYS_RESOURCE. */
static int set_cmdline(char **argv)
{
	static char buf[8192];
	size_t len = 0;
	for (int i = 0; argv[i]; i++) {
		size_t l = strlen(argv[i]) + 1;
		if (len + l > sizeof buf) return -1;
		memcpy(buf + len, argv[i], l);
		len += l;
	}
	unsigned long long f[52];
	if (stat_fields(getpid(), f, 52)) return -1;
	struct prctl_mm_map_ mm = { f[26], f[27], f[45], f[46], f[47], (uint64_t)syscall(SYS_brk, 0), f[28], (uint64_t)buf, (uint64_t)buf + len, f[50], f[51], 0, 0, (uint32_t)-1 };
	return prctl(PR_SET_MM, PR_SET_MM_MAP_, &mm, sizeof mm, 0) ? -1 : 0;
}

/* standby: a helper started ahead of the command it will run, so that no process is started on
 * a move's path (the daemon's spawn holds its event loop for milliseconds). It waits for one line
 * on fd 5: "RUN PID FD3 FD6 COMMAND ARGS..." (FD3, FD6: descriptors of process PID to take as its
 * fds 3 and 6 with pidfd_getfd, as NUMBER:INODE, or -), then runs that command (in this process;
 * see below). The end of fd 5 (the daemon is gone): it exits, 0. A restore runs without fd 5, as
 * when spawned. */
static int cmd_standby(void)
{
	static char line[8192];
	static char *av[64];
	if (cmd_line(line, sizeof line)) return 0;	/* (a line too long comes back empty: a bad RUN line) */
	int ac = 0;
	av[ac++] = "hpc-ppm-helper";
	for (char *save = NULL, *t = strtok_r(line, " ", &save); t && ac < 63; t = strtok_r(NULL, " ", &save)) av[ac++] = t;
	av[ac] = NULL;
	pid_t from;
	if (ac < 6 || strcmp(av[1], "RUN") || parse_pid(av[2], &from)) { fprintf(stderr, "hpc-ppm-helper: standby: bad RUN line\n"); return 2; }
	if (strcmp(av[3], "-") && take_named_fd(from, av[3], 3)) return report_err();
	if (strcmp(av[4], "-") && take_named_fd(from, av[4], 6)) return report_err();
	if (!strcmp(av[5], "restore")) close(5);	/* as a restore spawned by the daemon: no fd 5 */
	/* the command proper, with its arguments as what ps shows (and what tests and admins look
	 * for), as for a helper spawned with them: run here, the command line pointed at them; where
	 * that is not allowed, by executing the same program again with them (1-2 ms more) */
	static char exe[PATH_MAX];
	ssize_t el = readlink("/proc/self/exe", exe, sizeof exe - 1);
	av[4] = el > 0 ? (exe[el] = 0, exe) : "hpc-ppm-helper";
	const char *how = getenv("HPC_PPM_STANDBY");	/* exec: the old way, to compare */
	if (!(how && !strcmp(how, "exec")) && set_cmdline(av + 4) == 0) {
		ctlf("STAT standby=in-place");
		return run(ac - 4, av + 4);
	}
	ctlf("STAT standby=exec");
	execv(el > 0 ? exe : "/proc/self/exe", av + 4);	/* (by its name: comm is the file's name) */
	fail(errno, "exec: %s", strerror(errno));
	return report_err();
}

int main(int argc, char **argv)
{
	crc_init();
	signal(SIGPIPE, SIG_IGN);
	const char *inj = getenv("HPC_PPM_INJECT");
	g_inject_two_stops = inj && !strcmp(inj, "two-stops");
	const char *fill = getenv("HPC_PPM_FILL");
	g_fill_pwrite = fill && !strcmp(fill, "pwrite");
	ctl = fcntl(4, F_GETFD) >= 0 ? fdopen(4, "w") : stdout;
	if (!ctl) ctl = stdout;
	if (argc == 2 && !strcmp(argv[1], "standby")) return cmd_standby();
	return run(argc, argv);
}

/* the command of argv (a standby's comes with its RUN line) */
static int run(int argc, char **argv)
{
	if (argc < 2) { usage(); return 2; }
	const char *cmd = argv[1];
	pid_t pid = 0;
	if (!strcmp(cmd, "hostinfo")) {
		struct compat c;
		char b[256];
		host_compat(&c);
		compat_line(&c, b, sizeof b);
		ctlf("HOSTINFO %s", b);
		ctlf("OK");
		return 0;
	}
	if (!strcmp(cmd, "check") || !strcmp(cmd, "dump") || !strcmp(cmd, "deputy")) {
		if (argc < 3 || parse_pid(argv[2], &pid)) { usage(); return 2; }
		int leave = 0;
		const char *target = NULL;
		for (int i = 3; i < argc; i++) {
			if (!strcmp(argv[i], "--leave-running") && !strcmp(cmd, "dump")) leave = 1;
			else if (!strcmp(argv[i], "--target") && i + 1 < argc && strcmp(cmd, "check")) target = argv[++i];
			else if (!strcmp(argv[i], "--family") && strcmp(cmd, "dump")) g_family = 1;
			else if (!strcmp(argv[i], "--relay")) g_relay = 1;
			else if (!strcmp(argv[i], "--copy") && strcmp(cmd, "check")) g_copy_fd = 6;
			else if (!strcmp(argv[i], "--stall-ms") && i + 1 < argc) g_stall_ms = atoi(argv[++i]);
			else if (!strcmp(argv[i], "--precopy") && strcmp(cmd, "check")) g_precopy = 1;
			else if (!strcmp(argv[i], "--wait") && (!strcmp(cmd, "dump") || !strcmp(cmd, "deputy"))) g_wait = 1;
			else if (!strcmp(argv[i], "--confirm") && strcmp(cmd, "check")) g_confirm = 1;
			else if (!strcmp(argv[i], "--rounds") && i + 1 < argc && strcmp(cmd, "check")) {
				char *x;
				long v = strtol(argv[++i], &x, 10);
				if (*x || v < 2 || v > 100) { usage(); return 2; }
				g_precopy_rounds = v;
			}
			else { usage(); return 2; }
		}
		if (strcmp(cmd, "check") && fcntl(3, F_GETFD) < 0) { fprintf(stderr, "hpc-ppm-helper: fd 3 (image) is not open\n"); return 2; }
		if (g_copy_fd >= 0 && fcntl(g_copy_fd, F_GETFD) < 0) { fprintf(stderr, "hpc-ppm-helper: fd 6 (copy) is not open\n"); return 2; }
		if (g_confirm && (leave || (!strcmp(cmd, "dump") && !g_wait))) { usage(); return 2; }
		if (g_confirm && !strcmp(cmd, "dump")) { g_keep_fd = g_copy_fd; g_copy_fd = -1; }	/* the copy: written only if asked (frozen.c) */
		if (g_copy_fd >= 0 || g_keep_fd >= 0 || g_confirm) abort_when_orphaned();
		if (!strcmp(cmd, "check")) return cmd_check(pid);
		if (!strcmp(cmd, "dump")) return cmd_dump(pid, leave, target);
		return cmd_deputy(pid, target);
	}
	if (!strcmp(cmd, "restore")) {
		struct restore_opts o = { 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
		for (int i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "--new-pid")) o.keep_pid = 0;
			else if (!strcmp(argv[i], "--require-pid")) o.require_pid = 1;
			else if (!strcmp(argv[i], "--no-wait")) o.wait = 0;
			else if (!strcmp(argv[i], "--eintr")) o.eintr = 1;
			else if (!strcmp(argv[i], "--family")) g_family = 1;
			else if (!strcmp(argv[i], "--hold")) o.hold = 1;
			else if (!strcmp(argv[i], "--pid-now")) o.pid_now = 1;
			else if (!strcmp(argv[i], "--pid-hint") && i + 1 < argc) {
				char *x;
				long v = strtol(argv[++i], &x, 10);
				if (*x || v < 1 || v > 0x3fffffff) { usage(); return 2; }
				o.pid_hint = v;
			}
			else if (!strcmp(argv[i], "--stall-ms") && i + 1 < argc) g_stall_ms = atoi(argv[++i]);
			else if (!strcmp(argv[i], "--test-fault") && i + 1 < argc) {
				const char *v = argv[++i];
				if (!strcmp(v, "early")) g_fault_after = 4096;
				else if (!strcmp(v, "end")) o.fault_end = 1;
				else { usage(); return 2; }
			}
			else if (!strcmp(argv[i], "--guest")) guest_ids = 1;
			else if (!strcmp(argv[i], "--keep") && i + 1 < argc) {
				char *e;
				o.keep_ms = strtol(argv[++i], &e, 10);
				if (*e || o.keep_ms <= 0) { usage(); return 2; }
			}
			else if (!strcmp(argv[i], "--stdio-from") && i + 1 < argc) { if (parse_pid(argv[++i], &o.stdio_from)) { usage(); return 2; } }
			else if (!strcmp(argv[i], "--clock") && i + 1 < argc) {
				const char *v = argv[++i];
				char *e;
				if (!strcmp(v, "auto")) o.clock = 0;
				else if (!strcmp(v, "real")) o.clock = 1;
				else if (!strcmp(v, "continue")) o.clock = 2;
				else { o.clock = 3; o.mono_off = strtoll(v, &e, 10); if (*e || !*v) { usage(); return 2; } }
			} else { usage(); return 2; }
		}
		if (fcntl(3, F_GETFD) < 0) { fprintf(stderr, "hpc-ppm-helper: fd 3 (image) is not open\n"); return 2; }
		return cmd_restore(&o);
	}
	if (!strcmp(cmd, "info")) return cmd_info();
	if (!strcmp(cmd, "unread") && argc == 4 && !parse_pid(argv[2], &pid) && isdigit((unsigned char)argv[3][0])) return cmd_unread(pid, atoi(argv[3])) ? report_err() : 0;
	if (!strcmp(cmd, "rawpipe") && (argc == 3 || (argc == 4 && !strcmp(argv[3], "--hot")))) return cmd_rawpipe(strtoull(argv[2], NULL, 10), argc == 4);
	usage();
	return 2;
}
