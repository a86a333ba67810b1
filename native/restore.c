/* Restore: checks an image against this host (validate_image), spawns a fresh stub with the
 * wanted pid (spawn_stub) or takes the hollow original, and turns it into the image by injected
 * syscalls (restore_into), following docs/ppm.md "How it works". Per-thread state is set by
 * restore_thread and restore_thread_regs; the other threads are recreated by threads.c. */
#include "threads.h"

int guest_ids;

/* Everything that can be checked before any process is touched. Prints REASON lines. */
int validate_image(struct image *im, int print)
{
	struct compat host;
	host_compat(&host);
	int n = compat_check(&im->h.c, &host, print);
	struct stat sb;
	if (stat(im->c.exe, &sb) || sb.st_size != (off_t)im->c.exe_size || sb.st_mtim.tv_sec != im->c.exe_mtime_s || sb.st_mtim.tv_nsec != im->c.exe_mtime_ns) {
		n++;
		if (print) ctlf("REASON file-mismatch executable %s is missing or differs from the one in the image", im->c.exe);
	}
	for (int i = 0; i < im->nvma; i++) {
		struct img_vma *v = &im->vmas[i];
		if (v->kind != K_FILE_PRIV && v->kind != K_FILE_SHARED) continue;
		if (stat(v->path, &sb) || (v->kind == K_FILE_PRIV && (sb.st_size != (off_t)v->fsize || sb.st_mtim.tv_sec != v->mtime_s || sb.st_mtim.tv_nsec != v->mtime_ns))) {
			n++;
			if (print) ctlf("REASON file-mismatch mapped file %s is missing or differs from the one in the image", v->path);
		}
	}
	if (im->nthreads > MAX_THREADS) {
		n++;
		if (print) ctlf("REASON threads image has %d threads (at most %d are restored)", im->nthreads, MAX_THREADS);
	}
	return n + validate_fds(im, print);
}

static int overlaps(uint64_t a, uint64_t al, uint64_t b, uint64_t bl) { return a < b + bl && b < a + al; }

/* an address range free in the image and in the target's current layout */
static uint64_t pick_free(struct image *im, struct vma *cur, int ncur, uint64_t len, uint64_t avoid, uint64_t avoid_len)
{
	for (uint64_t a = 0x100000000000UL; a < 0x700000000000UL; a += 0x10000000000UL) {
		int bad = overlaps(a, len, avoid, avoid_len);
		for (int i = 0; i < im->nvma && !bad; i++) bad = overlaps(a, len, im->vmas[i].start, im->vmas[i].end - im->vmas[i].start);
		for (int i = 0; i < ncur && !bad; i++) bad = overlaps(a, len, cur[i].start, cur[i].end - cur[i].start);
		if (im->c.vvar && overlaps(a, len, im->c.vvar, 0x100000)) bad = 1;
		if (im->c.vdso && overlaps(a, len, im->c.vdso - 0x100000, 0x200000)) bad = 1;
		if (!bad) return a;
	}
	return 0;
}

/* sigaltstack(scr, NULL), injected with the stack pointer in the scratch area: the kernel refuses to
 * change the alternate stack of a thread that runs on it (EPERM), and a hollow original caught in
 * a handler on its alternate stack has its stack pointer there (the call itself uses no stack) */
static int set_altstack(struct tracee *t, uint64_t scr, long *rv)
{
	uint64_t sp = t->regs0.rsp;
	t->regs0.rsp = scr + SCRATCH_LEN - 64;
	int e = inject(t, SYS_sigaltstack, scr, 0, 0, 0, 0, 0, rv);
	t->regs0.rsp = sp;
	return e;
}

/* A thread's own state but its registers, scheduling and signal mask: alternate stack, name, rseq,
 * robust futex list, clear_child_tid. t is that thread, stopped, in the restored memory. */
int restore_thread(struct tracee *t, const struct image_thread *it, uint64_t scr)
{
	const struct img_thread *th = &it->th;
	int e = 0, pol = th->policy & ~SCHED_RESET_ON_FORK;
	if ((pol != SCHED_OTHER && pol != SCHED_BATCH && pol != SCHED_IDLE) || th->nice < -20 || th->nice > 19)
		return fail(EBADMSG, "thread %d: bad scheduling (policy %d, nice %d)", th->tid, th->policy, th->nice);
	if (!(th->ss_flags & SS_DISABLE) && th->ss_size) {
		struct { uint64_t sp; int32_t flags, pad; uint64_t size; } ss = { th->ss_sp, th->ss_flags & ~SS_ONSTACK, 0, th->ss_size };
		long rv;
		e = mem_write(t, scr, &ss, sizeof ss);
		if (!e) e = set_altstack(t, scr, &rv);
		if (!e && rv) e = fail((int)-rv, "injected SYS_sigaltstack failed: %s", strerror((int)-rv));
	}
	if (!e) e = mem_write(t, scr, th->comm, sizeof th->comm);
	if (!e) e = INJ(t, NULL, SYS_prctl, PR_SET_NAME, scr, 0, 0, 0, 0);
	if (!e && th->rseq_ptr) e = INJ(t, NULL, NR_RSEQ, th->rseq_ptr, th->rseq_len, 0, th->rseq_sig, 0, 0);
	if (!e && th->robust_ptr) e = INJ(t, NULL, SYS_set_robust_list, th->robust_ptr, th->robust_len, 0, 0, 0, 0);
	if (!e) e = INJ(t, NULL, SYS_set_tid_address, th->clear_tid, 0, 0, 0, 0, 0);
	return e;
}

/* A thread's registers (with the restart rule for an interrupted syscall), XSTATE, and its
 * scheduling policy and nice value (set by this helper, last, so that the restore itself does not
 * run at SCHED_IDLE or nice 19); the last things done to it: no injection may follow. */
int restore_thread_regs(struct tracee *t, const struct image_thread *it, int eintr_policy)
{
	struct sched_param sp = { 0 };
	if (sched_setscheduler(t->pid, it->th.policy, &sp) || setpriority(PRIO_PROCESS, t->pid, it->th.nice))
		return fail(errno, "scheduling of %d: %s", t->pid, strerror(errno));
	/* the mask after the injected calls, whose traps unblock SIGTRAP */
	if (ptrace(PTRACE_SETSIGMASK, t->pid, 8, &it->th.sigmask)) return fail(errno, "PTRACE_SETSIGMASK: %s", strerror(errno));
	struct user_regs_struct regs = it->th.regs;
	if (eintr_policy && (long)regs.orig_rax >= 0 && (long)regs.rax == -516) regs.rax = -EINTR;
	fix_restart(&regs, 0);
	if (ptrace(PTRACE_SETREGS, t->pid, 0, &regs)) return fail(errno, "PTRACE_SETREGS: %s", strerror(errno));
	static uint8_t xs[XSTATE_MAX];
	uint32_t host_len = host_xsave_len();
	if (host_len > XSTATE_MAX) return fail(ENOTSUP, "XSAVE area of %u bytes is too large", host_len);
	memset(xs, 0, sizeof xs);
	memcpy(xs, it->xs, it->xlen < host_len ? it->xlen : host_len);
	struct iovec iov = { xs, host_len > it->xlen ? host_len : it->xlen };
	if (ptrace(PTRACE_SETREGSET, t->pid, NT_X86_XSTATE, &iov)) return fail(errno, "PTRACE_SETREGSET NT_X86_XSTATE: %s", strerror(errno));
	return 0;
}

/* Turns the stopped tracee (a fresh stub or a hollow original) into the image read from r.
 * On failure the tracee is left in an undefined state: the caller kills or re-hollows it. Its
 * callers have the page records read ahead by a thread (pipeline.c) while it sets the process up
 * and fills it. */
/* Is v a read-only shared mapping of a memfd sealed against writes (F_SEAL_WRITE)? */
static int sealed_ro(const struct image *im, const struct img_vma *v)
{
	if (v->prot & PROT_WRITE) return 0;
	for (int j = 0; j < im->nfd; j++)
		if (im->fds[j].fd == v->fd && im->fds[j].kind == F_MEMFD) return (im->fds[j].u.memfd.seals & F_SEAL_WRITE) != 0;
	return 0;
}

/* Resource limits are set by the process itself (an injected prlimit64 on itself, through the
 * scratch area at scr): setting another user's process's limits, even reading them with prlimit,
 * needs CAP_SYS_RESOURCE. */
static int limit_inject(struct tracee *t, int r, uint64_t soft, uint64_t hard, uint64_t scr, long *rv)
{
	uint64_t l[2] = { soft, hard };
	int e = mem_write(t, scr, l, sizeof l);
	return e ? e : inject(t, SYS_prlimit64, 0, r, scr, 0, 0, 0, rv);
}

/* A hollow original coming home keeps its own limits until the end of the restore: the soft ones
 * its restore's calls could run into, RLIMIT_SIGPENDING (POSIX timers, the queued signals) and
 * RLIMIT_NOFILE (descriptors by number), go up to the hard ones meanwhile. (A stub has this
 * helper's.) */
static int limits_lift(struct tracee *t, uint64_t scr)
{
	uint64_t cur[16][2];
	int n = read_limits(t->pid, cur), e = 0;
	if (n < 0) return n;
	static const int lift[] = { RLIMIT_SIGPENDING, RLIMIT_NOFILE };
	for (int i = 0; i < 2 && !e; i++) {
		int r = lift[i];
		long rv;
		if (r < n && cur[r][0] < cur[r][1]) e = limit_inject(t, r, cur[r][1], cur[r][1], scr, &rv);
	}
	return e;
}

/* The image's resource limits, soft and hard, where they differ from the process's. A hard limit
 * above the process's that it may not raise (no CAP_SYS_RESOURCE: it has its credentials by now;
 * RLIMIT_NOFILE above this host's fs.nr_open) stays where it is, the soft one no higher (STAT
 * rlimits_kept: how many). */
static int limits_set(struct tracee *t, const struct img_core *c, uint64_t scr)
{
	uint64_t cur[16][2];
	int n = read_limits(t->pid, cur), kept = 0, e = 0;
	if (n < 0) return n;
	for (uint32_t r = 0; r < c->nrlim && (int)r < n && !e; r++) {
		uint64_t soft = c->rlim[r][0], hard = c->rlim[r][1];
		if (soft == cur[r][0] && hard == cur[r][1]) continue;
		long rv;
		e = limit_inject(t, r, soft, hard, scr, &rv);
		if (!e && rv == -EPERM && hard > cur[r][1]) {
			hard = cur[r][1];
			if (soft > hard) soft = hard;
			e = limit_inject(t, r, soft, hard, scr, &rv);
			kept++;
		}
		if (!e && rv < 0) e = fail((int)-rv, "resource limit %u (%llu, hard %llu) cannot be set: %s", r, (unsigned long long)soft, (unsigned long long)hard, strerror((int)-rv));
	}
	if (kept) ctlf("STAT rlimits_kept=%d", kept);
	return e;
}

int restore_into(struct tracee *t, struct image *im, struct imgr *r, int hollow, int eintr_policy)
{
	struct img_core *c = &im->c;
	uint64_t vvar, vclock, vdso;
	int e = find_vdso(t, &vvar, &vclock, &vdso);
	if (e) return e;
	struct vma *cur;
	int ncur = parse_maps(t->pid, &cur);
	if (ncur < 0) return ncur;
	/* the scratch area, and after it the area of the batches of injected calls (batch.c) */
	uint64_t scr = pick_free(im, cur, ncur, SCRATCH_LEN + BATCH_AREA, 0, 0);
	if (!scr) { free(cur); return fail(ENOMEM, "no free address for the scratch area"); }
	long rv;
	e = INJ(t, &rv, SYS_mmap, scr, SCRATCH_LEN + BATCH_AREA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (!e && (uint64_t)rv != scr) e = fail(EEXIST, "scratch area landed at %#lx", rv);
	static struct batch bt;
	if (!e) e = batch_init(&bt, t, scr + SCRATCH_LEN);
	if (!e && hollow) e = limits_lift(t, scr);
	/* 3. tear down */
	for (int i = 0; i < ncur && !e; i++)
		if (!is_special(cur[i].path)) e = BQ(&bt, 0, SYS_munmap, cur[i].start, cur[i].end - cur[i].start, 0, 0, 0, 0);
	if (!e) e = batch_run(&bt);
	trace("torn-down");
	/* 4. move the vDSO group as a unit */
	if (!e && vdso != c->vdso) {
		struct { uint64_t from, to, len; } g[3];
		int ng = 0;
		for (int i = 0; i < ncur; i++) {
			uint64_t to = 0;
			if (!strcmp(cur[i].path, "[vvar]")) to = c->vvar;
			else if (!strcmp(cur[i].path, "[vvar_vclock]")) to = c->vclock;
			else if (!strcmp(cur[i].path, "[vdso]")) to = c->vdso;
			else continue;
			if (!to) { e = fail(ENOTSUP, "image has no %s", cur[i].path); break; }
			g[ng].from = cur[i].start; g[ng].to = to; g[ng].len = cur[i].end - cur[i].start; ng++;
		}
		if (!e && ng == 0) e = fail(ENOTSUP, "target has no vDSO group");
		if (e) ng = 0;
		uint64_t lo = ng ? g[0].from : 0, hi = !ng ? 0 : g[ng - 1].from + g[ng - 1].len;
		if (!e && ((vvar && vvar - vdso != c->vvar - c->vdso) || (vclock && vclock - vdso != c->vclock - c->vdso)))
			e = fail(ENOTSUP, "the vDSO group layout differs from the image's");
		uint64_t tmp = e ? 0 : pick_free(im, cur, ncur, hi - lo, scr, SCRATCH_LEN + BATCH_AREA);
		if (!e && !tmp) e = fail(ENOMEM, "no free address to move the vDSO through");
		for (int i = 0; i < ng && !e; i++) e = INJ(t, NULL, SYS_mremap, g[i].from, g[i].len, g[i].len, MREMAP_MAYMOVE | MREMAP_FIXED, tmp + (g[i].from - lo), 0);
		t->sc_ip = t->sc_ip - vdso + tmp + (vdso - lo);
		for (int i = 0; i < ng && !e; i++) e = INJ(t, NULL, SYS_mremap, tmp + (g[i].from - lo), g[i].len, g[i].len, MREMAP_MAYMOVE | MREMAP_FIXED, g[i].to, 0);
		t->sc_ip = t->sc_ip - (tmp + (vdso - lo)) + c->vdso;
	}
	free(cur);
	/* 5. mm fields, auxv and exe link, before any file is mapped. A hollow original coming home
	 * has them already, except brk: an injected brk() sets that one without CAP_SYS_RESOURCE,
	 * which a non-root original lacks. */
	int mm_same = 0;
	if (hollow && !e) {
		struct img_core cur;
		memset(&cur, 0, sizeof cur);
		if (read_core_proc(t->pid, &cur) == 0) {
			mm_same = !strcmp(cur.exe, c->exe) && cur.auxv_len == c->auxv_len && !memcmp(cur.auxv, c->auxv, c->auxv_len);
			for (int i = 0; i < 11; i++) if (i != 5 && cur.mm[i] != c->mm[i]) mm_same = 0;
		}
		clear_err();
	}
	if (!e && mm_same) {
		long nb;
		e = INJ(t, &nb, SYS_brk, c->mm[5], 0, 0, 0, 0, 0);
		if (!e && (uint64_t)nb != c->mm[5]) e = fail(ENOMEM, "brk(%#lx) gave %#lx", c->mm[5], nb);
	} else if (!e) {
		long exefd = -1;
		e = put_str(t, scr, c->exe);
		if (!e) e = INJ(t, &exefd, SYS_openat, AT_FDCWD, scr, O_RDONLY | O_CLOEXEC, 0, 0, 0);
		struct prctl_mm_map_ mm = { c->mm[0], c->mm[1], c->mm[2], c->mm[3], c->mm[4], c->mm[5], c->mm[6], c->mm[7], c->mm[8], c->mm[9], c->mm[10],
					    scr + 1024, c->auxv_len, (uint32_t)exefd };
		if (!e) e = mem_write(t, scr, &mm, sizeof mm);
		if (!e) e = mem_write(t, scr + 1024, c->auxv, c->auxv_len);
		if (!e) e = INJ(t, NULL, SYS_prctl, PR_SET_MM, PR_SET_MM_MAP_, scr, sizeof mm, 0, 0);
		if (exefd >= 0) INJ(t, NULL, SYS_close, exefd, 0, 0, 0, 0, 0);
	}
	trace("mm");
	/* 6. descriptors, before the memory: a memfd may be mapped */
	struct fdrestore fr = { .pidfd = -1 };
	if (!e) e = restore_fds(t, im, scr, &fr);
	trace("fds");
	/* 7. memory regions, writable for now (a file's: opened, mapped, closed) */
	for (int i = 0; i < im->nvma && !e; i++) {
		struct img_vma *v = &im->vmas[i];
		uint64_t len = v->end - v->start;
		if (v->kind == K_FILE_PRIV || v->kind == K_FILE_SHARED) {
			int wr = v->kind == K_FILE_SHARED && (v->prot & PROT_WRITE);
			uint64_t path = batch_data(&bt, v->path, strlen(v->path) + 1, &e);
			if (e) break;
			int prot = v->kind == K_FILE_SHARED ? (int)v->prot : PROT_READ | PROT_WRITE;
			e = BQ(&bt, B_SAVE, SYS_openat, AT_FDCWD, path, (wr ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0, 0, 0);
			if (!e) e = BQ(&bt, B_ARG(4), SYS_mmap, v->start, len, prot, (v->kind == K_FILE_SHARED ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED, 0, v->pgoff * PAGE);
			if (!e) e = BQ(&bt, B_ARG(0) | B_ANY | B_CLEANUP, SYS_close, 0, 0, 0, 0, 0, 0);
		} else if (v->kind == K_MEMFD && sealed_ro(im, v)) {
			/* a memfd sealed against writes: its mapping cannot be made writable (the kernel cleared
			 * VM_MAYWRITE), and one through the process's O_RDWR descriptor could, which would make
			 * the seal fail (EBUSY): mapped through a read-only reopen of the descriptor */
			char fdp[32];
			snprintf(fdp, sizeof fdp, "/proc/self/fd/%d", v->fd);
			uint64_t path = batch_data(&bt, fdp, strlen(fdp) + 1, &e);
			if (e) break;
			e = BQ(&bt, B_SAVE, SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0, 0, 0);
			if (!e) e = BQ(&bt, B_ARG(4), SYS_mmap, v->start, len, v->prot, MAP_SHARED | MAP_FIXED, 0, v->pgoff * PAGE);
			if (!e) e = BQ(&bt, B_ARG(0) | B_ANY | B_CLEANUP, SYS_close, 0, 0, 0, 0, 0, 0);
		} else if (v->kind == K_MEMFD) {
			e = BQ(&bt, 0, SYS_mmap, v->start, len, v->prot, MAP_SHARED | MAP_FIXED, v->fd, v->pgoff * PAGE);
		} else {
			int fl = (v->kind == K_SHMEM ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_FIXED | (v->kind == K_STACK ? MAP_GROWSDOWN : 0);
			e = BQ(&bt, 0, SYS_mmap, v->start, len, PROT_READ | PROT_WRITE, fl, -1, 0);
		}
	}
	if (!e) e = batch_run(&bt);
	trace("vmas-mapped");
	/* 8. page data (fill.c), and the data of descriptors */
	double tf = now_ms();
	struct fill fl = { .t = t, .uffd = -1 };
	if (!e) e = fill_start(&fl, t, im);
	/* the buffer's page data (at +16) page aligned: UFFDIO_COPY copies whole pages from it */
	uint8_t *map = mmap(NULL, CHUNK + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *buf = map == MAP_FAILED ? NULL : map + PAGE - 16;
	if (!buf && !e) e = fail(ENOMEM, "page buffer: %s", strerror(errno));
	while (!e) {
		struct rechdr h;
		if ((e = rec_hdr(r, &h))) break;
		if (h.type == R_END) { e = rec_end(r, &h); break; }
		if (h.type == R_FDDATA && h.len >= sizeof(struct img_fddata)) {
			const uint8_t *body;
			if ((e = rec_body_ref(r, &h, buf, CHUNK + 16, &body))) break;
			struct img_fddata dd;
			memcpy(&dd, body, sizeof dd);
			e = fd_data(&fr, im, &dd, body + sizeof dd, h.len - sizeof dd);
			continue;
		}
		int valid = h.type == R_PREVALID;	/* pre-copy: staged pages that are the process's */
		if ((h.type != R_PAGES || h.len < 16 + PAGE) && (!valid || h.len != 16)) { e = fail(EBADMSG, "unexpected record type %u among page data", h.type); break; }
		const uint8_t *body;
		if ((e = rec_body_ref(r, &h, buf, CHUNK + 16, &body))) break;
		uint64_t addr, len;
		memcpy(&addr, body, 8);
		memcpy(&len, body + 8, 8);
		int ok = (valid || len == h.len - 16) && len && len % PAGE == 0 && addr % PAGE == 0 && addr + len > addr;
		for (int i = 0; ok && i < im->nvma; i++) {
			struct img_vma *v = &im->vmas[i];
			if (addr >= v->start && addr + len <= v->end) {
				ok = valid ? (v->kind == K_ANON || v->kind == K_STACK) * 2 : v->kind != K_FILE_SHARED && v->kind != K_MEMFD ? 2 : 0;
				break;
			}
		}
		if (ok != 2) { e = fail(EBADMSG, "page data at %#lx+%#lx outside the image's regions", addr, len); break; }
		if (valid) { e = stage_apply(r, &fl, addr, len); continue; }
		e = fill_write(&fl, addr, body + 16, len);
		r->pages += len / PAGE;
	}
	if (map != MAP_FAILED) munmap(map, CHUNK + PAGE);
	stage_free(r);
	int e2 = fill_end(&fl, !e);
	if (!e) e = e2;
	if (!e) ctlf("STAT fill_ms=%.3f", now_ms() - tf);
	trace("filled");
	/* 9. final protections */
	for (int i = 0; i < im->nvma && !e; i++) {
		struct img_vma *v = &im->vmas[i];
		if (v->kind != K_FILE_SHARED && v->kind != K_MEMFD && v->prot != (PROT_READ | PROT_WRITE))
			e = BQ(&bt, 0, SYS_mprotect, v->start, v->end - v->start, v->prot, 0, 0, 0);
	}
	/* 10. signals: set where the image's action is not the default or the process's is not
	 * (the stub inherits this helper's ignored signals; a hollow original has its own) */
	uint64_t nondef = 0;
	if (!e) e = sig_nondefault(t->pid, &nondef, NULL);
	for (int s = 1; s <= 64 && !e; s++) {
		if (s == SIGKILL || s == SIGSTOP) continue;
		const struct ksigaction *a = &c->act[s];
		if (s != SIGCHLD && !(nondef >> (s - 1) & 1) && !a->handler && !a->flags && !a->mask) continue;
		uint64_t at = batch_data(&bt, &c->act[s], sizeof c->act[s], &e);
		if (!e) e = BQ(&bt, 0, SYS_rt_sigaction, s, at, 0, 8, 0, 0);
	}
	if (!e) e = batch_run(&bt);
	/* the thread's own state: mask, alternate stack, name, rseq */
	if (!e) e = restore_thread(t, &im->threads[0], scr);
	const struct img_thread *th0 = &im->threads[0].th;
	if (!e && hollow && ((th0->ss_flags & SS_DISABLE) || !th0->ss_size)) {
		/* a hollow original coming home keeps the alternate stack it had when it left: one the image
		 * has none of is turned off (set_altstack: also when the original was left on it) */
		struct { uint64_t sp; int32_t flags, pad; uint64_t size; } off = { 0, SS_DISABLE, 0, 0 };
		long rv;
		e = mem_write(t, scr, &off, sizeof off);
		if (!e) e = set_altstack(t, scr, &rv);
	}
	/* 11. attributes */
	uint64_t cwd = e ? 0 : batch_data(&bt, c->cwd, strlen(c->cwd) + 1, &e);
	if (!e) e = BQ(&bt, 0, SYS_chdir, cwd, 0, 0, 0, 0, 0);
	if (!e) e = BQ(&bt, 0, SYS_umask, c->umask, 0, 0, 0, 0, 0);
	if (!e) e = BQ(&bt, 0, SYS_personality, c->personality, 0, 0, 0, 0, 0);
	if (!e) e = batch_run(&bt);
	/* seccomp filters (oldest first) unless the hollow original still carries them */
	int have = 0;
	if (hollow) {
		char fn[64], st[4096], v[32];
		snprintf(fn, sizeof fn, "/proc/%d/status", t->pid);
		if (read_file(fn, st, sizeof st) > 0 && !status_field(st, "Seccomp_filters", v, sizeof v)) have = atoi(v);
	}
	if (!e && c->nnp) e = INJ(t, NULL, SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0);
	for (int i = have; i < im->nfilt && !e; i++) {
		uint64_t prog[2] = { im->nins[i], scr + 64 };
		if (im->nins[i] * 8 + 64 > SCRATCH_LEN) { e = fail(ENOTSUP, "seccomp filter too large"); break; }
		e = mem_write(t, scr + 64, im->filters[i] + 4, im->nins[i] * 8);
		if (!e) e = mem_write(t, scr, prog, sizeof prog);
		if (!e) e = INJ(t, NULL, NR_SECCOMP, 1 /* SECCOMP_SET_MODE_FILTER */, 0, scr, 0, 0, 0);
	}
	/* a guest's family calls are caught (family.c); installed while it may still do so */
	if (!e && g_family && !hollow) e = family_install(t, scr);
	/* credentials last: dropping them earlier would block PR_SET_MM_MAP. A hollow original has
	 * its own, which it may not be allowed to set again. Guests' ids are mapped back, then (for a
	 * guest) out again (ppm.h GUEST_ID_BASE). */
	for (int i = 0; i < 4; i++) if (c->uid[i] >= GUEST_ID_BASE && c->uid[i] != (uint32_t)-1) c->uid[i] -= GUEST_ID_BASE;
	if (guest_ids) { c->uid[0] += GUEST_ID_BASE; c->uid[2] += GUEST_ID_BASE; }
	int creds_same = 0;
	if (hollow && !e) {
		struct img_core cur;
		memset(&cur, 0, sizeof cur);
		if (read_core_proc(t->pid, &cur) == 0)
			creds_same = !memcmp(cur.uid, c->uid, sizeof c->uid) && !memcmp(cur.gid, c->gid, sizeof c->gid) && cur.ngroups == c->ngroups &&
				     !memcmp(cur.groups, c->groups, c->ngroups * 4);
		clear_err();
	}
	trace("creds-seccomp");
	/* the other threads, made now: they inherit the seccomp filters and no_new_privs, and the
	 * process is still privileged enough to choose their tids (clone3 set_tid) */
	if (!e) e = threads_create(t, im, scr);
	if (!e && !creds_same && (guest_ids || c->uid[0] || c->uid[1] || c->uid[2] || c->gid[0] || c->gid[1] || c->gid[2] || c->ngroups)) {
		/* credentials are per thread in the kernel (glibc's setxid broadcast): each thread's */
		e = mem_write(t, scr, c->groups, c->ngroups * 4);
		for (int i = -1; i < t->nthr && !e; i++) {
			struct tracee *tt = i < 0 ? t : &t->thr[i];
			e = INJ(tt, NULL, SYS_setgroups, c->ngroups, scr, 0, 0, 0, 0);
			if (!e) e = INJ(tt, NULL, SYS_setresgid, c->gid[0], c->gid[1], c->gid[2], 0, 0, 0);
			if (!e) e = INJ(tt, NULL, SYS_setresuid, c->uid[0], c->uid[1], c->uid[2], 0, 0, 0);
		}
	}
	/* timers last, so that they do not run during the restore: timerfds (and memfd seals and
	 * socket shutdowns, after the data), POSIX timers (a hollow original's are deleted first),
	 * interval timers */
	if (!e) e = restore_fds_late(t, im, scr, &fr);
	if (!e && hollow) e = timers_clear(t, scr);
	if (!e) e = timers_restore(t, im, scr);
	for (int w = 0; w < 3 && !e; w++) {
		if (!c->itimer[w][2] && !c->itimer[w][3]) continue;
		e = mem_write(t, scr, c->itimer[w], sizeof c->itimer[w]);
		if (!e) e = INJ(t, NULL, SYS_setitimer, w, scr, 0, 0, 0, 0);
	}
	fdrestore_done(&fr);
	/* the signals it had not taken, queued again by its threads themselves (sigq.c); then its
	 * resource limits */
	if (!e) e = sigq_restore(t, im, scr);
	if (!e) e = limits_set(t, c, scr);
	trace("attrs");
	/* 12. scratch away; an ignored SIGTRAP (reset by the traps of the calls above) set again
	 * before, both by calls without a trap */
	if (!e && c->act[SIGTRAP].handler == (uint64_t)SIG_IGN) e = trap_act(t, &c->act[SIGTRAP], NULL, scr, SCRATCH_LEN + BATCH_AREA);
	else if (!e) e = INJ(t, NULL, SYS_munmap, scr, SCRATCH_LEN + BATCH_AREA, 0, 0, 0, 0);
	/* 13. registers and XSTATE; the other threads' too, and they are let go */
	if (!e) e = restore_thread_regs(t, &im->threads[0], eintr_policy);
	if (!e) e = threads_finish(t, im, eintr_policy);
	return e;
}

/* A restored process runs: its other threads, then its main thread, are let go. The signals
 * pending at its dump are queued already (sigq_restore) but SIGTRAPs, sent now: to stopped
 * threads, which take them once detached */
int restored_run(struct tracee *t, struct image *im)
{
	sigq_after(t, im);
	/* what the other threads' stops took out during the restore goes with the main thread's
	 * (a hollow original's caller sends them to the process: signals sent to the home pid) */
	for (int i = 0; i < t->nthr; i++)
		for (int k = 0; k < t->thr[i].npend && t->npend < TRACEE_PEND; k++) t->pend[t->npend++] = t->thr[i].pend[k];
	threads_run(t);
	if (ptrace(PTRACE_DETACH, t->pid, 0, 0)) return fail(errno, "PTRACE_DETACH: %s", strerror(errno));
	return 0;
}

/* A guest's pid namespace (restore --guest): this helper's children from now on are made in a
 * new pid namespace, where the guest gets its home pid (spawn_stub). Its init (pid 1) is a tiny
 * reaper, not the guest: pid 1 ignores the signals it has no handler for, and the namespace ends
 * with it. The reaper reaps what is left to it and leaves when the guest (whose id there it reads
 * from a pipe) has ended, or at once when the pipe ends without one. Everything this helper and
 * the daemon do (ptrace, waitpid, kill, /proc) uses the guest's host pid. Returns 0, or -1 when
 * no namespace could be made (the guest then runs in the host's, as before, and a STAT line
 * `pidns=0 reason=<step>:<errno>` says so). */
static int reaper_w = -1;
int guest_pidns(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC)) { ctlf("STAT pidns=0 reason=pipe:%s", errname(errno)); return -1; }
	if (unshare(CLONE_NEWPID)) {
		ctlf("STAT pidns=0 reason=unshare:%s", errname(errno));
		close(p[0]); close(p[1]);
		return -1;
	}
	pid_t r = fork();
	if (r < 0) {
		/* the namespace is made but has no init: no child can be made in it any more */
		ctlf("STAT pidns=0 reason=fork:%s", errname(errno));
		close(p[0]); close(p[1]);
		return -1;
	}
	if (r == 0) {
		int nul = open("/dev/null", O_RDWR);
		for (int fd = 0; fd < 3; fd++) if (nul >= 0 && fd != p[0]) dup2(nul, fd);
		int in = p[0] > 2 ? p[0] : dup(p[0]);
		for (int fd = 3; fd < in; fd++) close(fd);
		syscall(SYS_close_range, in + 1, ~0U, 0);
		signal(SIGCHLD, SIG_IGN);	/* orphans it inherits are reaped by the kernel */
		for (int s = 1; s < 32; s++) if (s != SIGKILL && s != SIGSTOP && s != SIGCHLD) signal(s, SIG_IGN);
		int id = 0;
		ssize_t n;
		while ((n = read(in, &id, sizeof id)) < 0 && errno == EINTR);
		if (n != sizeof id || id <= 0) _exit(0);
		int pfd = syscall(NR_PIDFD_OPEN, id, 0);
		if (pfd < 0) _exit(0);
		struct pollfd q = { pfd, POLLIN, 0 };
		while (poll(&q, 1, -1) < 0 && errno == EINTR);
		_exit(0);
	}
	close(p[0]);
	reaper_w = p[1];
	return 0;
}

/* tells the reaper which pid to outlive (id in the namespace, once the stub is the guest's), or
 * that there is none (0); nothing without a namespace */
void reaper_tell(pid_t id)
{
	if (reaper_w < 0) return;
	if (id > 0 && write(reaper_w, &id, sizeof id) != sizeof id) { /* it then leaves at once */ }
	close(reaper_w);
	reaper_w = -1;
}

/* fresh stub with the wanted pid (if free), traced and stopped after execve */

int spawn_stub(struct tracee *t, pid_t want, int *kept)
{
	char stub[PATH_MAX];
	ssize_t l = readlink("/proc/self/exe", stub, sizeof stub - 32);
	if (l < 0) return fail(errno, "readlink /proc/self/exe");
	stub[l] = 0;
	strcpy(strrchr(stub, '/') + 1, "hpc-ppm-stub");
	if (access(stub, X_OK)) return fail(ENOENT, "restore stub %s missing (run npm run build)", stub);
	pid_t tid = want;
	long pid = -1;
	*kept = 0;
	for (int attempt = 0; want > 0 && attempt < 200; attempt++) {
		struct clone_args_ ca = { 0 };
		ca.exit_signal = SIGCHLD;
		ca.set_tid = (uint64_t)(uintptr_t)&tid;
		ca.set_tid_size = 1;
		pid = syscall(NR_CLONE3, &ca, 88);
		if (pid >= 0 || errno != EEXIST) break;
		/* a zombie original may not be reaped yet: wait for that, not for a live holder */
		unsigned long long f[4];
		if (stat_fields(want, f, 4) == 0 && f[3] != 'Z' && f[3] != 'X') break;
		usleep(5000);
	}
	if (pid >= 0 && want > 0) *kept = 1;
	if (pid < 0) pid = fork();
	if (pid < 0) { reaper_tell(0); return fail(errno, "fork: %s", strerror(errno)); }
	if (pid == 0) {
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		syscall(SYS_close_range, 3, ~0U, 0);
		char *argv[] = { "hpc-ppm-stub", NULL }, *envp[] = { NULL };
		execve(stub, argv, envp);
		_exit(127);
	}
	memset(t, 0, sizeof *t);
	t->pid = pid;
	t->vpid = ns_inner(pid);
	t->memfd = -1;
	int st, e = twait(t, &st);
	if (e) return e;
	if (WSTOPSIG(st) != SIGTRAP) { kill(pid, SIGKILL); return fail(EIO, "restore stub did not stop after exec"); }
	if (ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL | PTRACE_O_SUSPEND_SECCOMP)) {
		kill(pid, SIGKILL);
		return fail(errno, "PTRACE_SETOPTIONS: %s", strerror(errno));
	}
	ptrace(PTRACE_GETREGS, pid, 0, &t->regs0);
	return open_mem(t);
}

int setup_timens(int64_t off_mono, int64_t off_boot)
{
	if (unshare(CLONE_NEWTIME)) return fail(errno, "unshare(CLONE_NEWTIME): %s", strerror(errno));
	int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
	if (fd < 0) return fail(errno, "open timens_offsets: %s", strerror(errno));
	char b[128];
	int64_t ms = off_mono / 1000000000LL, mn = off_mono % 1000000000LL;
	if (mn < 0) { mn += 1000000000LL; ms--; }
	int64_t bs = off_boot / 1000000000LL, bn = off_boot % 1000000000LL;
	if (bn < 0) { bn += 1000000000LL; bs--; }
	int n = snprintf(b, sizeof b, "monotonic %lld %lld\nboottime %lld %lld\n", (long long)ms, (long long)mn, (long long)bs, (long long)bn);
	if (write(fd, b, n) != n) { int e = errno; close(fd); return fail(e, "setting time namespace offsets: %s", strerror(e)); }
	close(fd);
	return 0;
}

/* A stub made ahead of its image (a guest's, ppm.c) joins the time namespace this helper has just
 * made for its children (setup_timens), which it was made before: by injected calls, before
 * anything of the image is mapped. setns changes a single-threaded caller's time namespace at once
 * (and its vDSO's clocks with it). The path is written over the stub's own arguments on its stack
 * (all of its memory is torn down later). */
int stub_join_timens(struct tracee *t)
{
	uint64_t vvar, vclock, vdso;
	int e = find_vdso(t, &vvar, &vclock, &vdso);	/* (where the calls are made) */
	if (e) return e;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/ns/time_for_children", getpid());
	uint64_t at = t->regs0.rsp;
	long fd = -1;
	if (!(e = mem_write(t, at, path, strlen(path) + 1))) e = INJ(t, &fd, SYS_openat, AT_FDCWD, at, O_RDONLY | O_CLOEXEC, 0, 0, 0);
	if (!e) {
		e = INJ(t, NULL, SYS_setns, fd, CLONE_NEWTIME, 0, 0, 0, 0);
		int e2 = INJ(t, NULL, SYS_close, fd, 0, 0, 0, 0, 0);
		if (!e) e = e2;
	}
	/* the namespace it is in now is this helper's children's (the path named the right process) */
	struct stat want, got;
	char fn[64];
	snprintf(fn, sizeof fn, "/proc/%d/ns/time", t->pid);
	if (!e && (stat("/proc/self/ns/time_for_children", &want) || stat(fn, &got) || want.st_ino != got.st_ino || want.st_dev != got.st_dev))
		e = fail(EIO, "the stub is not in the time namespace made for it");
	return e;
}

/* the time namespace offsets a restore with options o needs; 0 when none is needed */
int timens_for(struct image *im, struct restore_opts *o, int64_t *off_mono, int64_t *off_boot)
{
	struct compat host;
	host_compat(&host);
	int same_boot = !strcmp(host.boot_id, im->h.c.boot_id);
	int mode = o->clock;
	if (mode == 0) mode = same_boot ? 1 : 2;
	if (mode == 1) {
		if (!same_boot) return 0;	/* no common clock: real means the host's clock */
		*off_mono = im->h.mono_off_ns;
		*off_boot = im->h.boot_off_ns;
		return im->h.mono_off_ns || im->h.boot_off_ns;
	}
	if (mode == 2) {
		*off_mono = im->h.mono_ns - clock_ns(CLOCK_MONOTONIC);
		*off_boot = im->h.boot_ns - clock_ns(CLOCK_BOOTTIME);
		return 1;
	}
	*off_mono = o->mono_off;
	*off_boot = o->mono_off;
	return 1;
}
