/* Dump: the state of each thread (dump_thread), the process-wide state, the memory regions and
 * their pages, written as one image stream (dump_image). The tracee is seized and stopped by the
 * caller and is left stopped with its registers untouched: a failed dump harms nothing. */
#include "threads.h"

int dump_pages_run(struct imgw *w, struct tracee *t, uint8_t *buf, uint64_t addr, uint64_t len, uint32_t prot)
{
	int e = 0;
	if (gsend_takes(w, prot, len)) return gsend_run(w, t, addr, len);	/* written by the process */
	/* with a writer thread (pipeline.c) the pages are read straight into its next slot */
	uint8_t *p = w->wa ? wahead_body(w, &e) : buf;
	if (!p) return e;
	if ((e = mem_read(t, addr, p + 16, len))) return e;
	uint64_t hdr[2] = { addr, len };
	memcpy(p, hdr, 16);
	w->pages += len / PAGE;
	return w->wa ? wahead_put(w, R_PAGES, 16 + len) : rec_put(w, R_PAGES, buf, 16 + len, NULL, 0);
}

uint64_t g_valid_pages;	/* pages of PREVALID ranges (pre-copy) */
uint64_t g_zero_pages;	/* pages left out as the shared zero page */

/* the pagemap entry of one page of this process, after reading it (0 when it cannot be read) */
static uint64_t own_entry(volatile uint8_t *p)
{
	(void)*p;
	uint64_t en = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && pread(fd, &en, 8, (uint64_t)(uintptr_t)p / PAGE * 8) != 8) en = 0;
	if (fd >= 0) close(fd);
	return en;
}

/* The page frames of the kernel's zero page and, where THP is used, of its huge zero page
 * (from this process's own reads of untouched memory). A page of private anonymous memory the
 * process has only read maps one of them: it is left out of the image (the restore leaves it
 * absent, and it reads as zeros again) rather than sent and made a page of its own. Unknown (no
 * frame numbers in pagemap without CAP_SYS_ADMIN): nothing is left out. */
#define HUGE (2UL << 20)
static uint64_t zpfn, hzpfn;
static int zero_known = -1;
#define PM_PFN(en) ((en) & ((1ULL << 55) - 1))
#define PM_EXCL (1ULL << 56)
static void zero_frames(void)
{
	zero_known = 0;
	/* the small zero page: a one-page region never gets a huge one */
	uint8_t *m = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) return;
	uint64_t en = own_entry(m);
	munmap(m, PAGE);
	if ((en >> 63 & 1) && !(en & PM_EXCL) && PM_PFN(en)) { zpfn = PM_PFN(en); zero_known = 1; }
	if (!zero_known) return;
	/* the huge zero page (where THP is on): a read of an untouched, advised, aligned span; a frame
	 * that is not the process's own and starts 512 of them in a row. This process's use of it
	 * keeps it for as long as it lives. */
	uint8_t *r = mmap(NULL, 2 * HUGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED) return;
	uint8_t *h = (uint8_t *)(((uintptr_t)r + HUGE - 1) & ~(HUGE - 1));
	if (!madvise(h, HUGE, MADV_HUGEPAGE)) {
		en = own_entry(h);
		if ((en >> 63 & 1) && !(en & PM_EXCL) && PM_PFN(en) != zpfn && !(PM_PFN(en) % (HUGE / PAGE))) hzpfn = PM_PFN(en);
	}
	munmap(r, 2 * HUGE);
}

static int zero_page(uint64_t en)
{
	if (zero_known < 0) zero_frames();
	if (!zero_known || !(en >> 63 & 1) || (en & PM_EXCL)) return 0;
	uint64_t f = PM_PFN(en);
	return f == zpfn || (hzpfn && f >= hzpfn && f < hzpfn + HUGE / PAGE);
}

/* The pages of region v: R_PAGES records of the pages that exist. In a pre-copy dump, the pages of
 * a tracked region that were not written since the last round are R_PREVALID ranges instead (their
 * data went out in the rounds). */
int dump_vma_pages(struct imgw *w, struct tracee *t, int pmfd, const struct img_vma *v, uint8_t *buf)
{
	if (v->kind == K_FILE_SHARED || v->kind == K_MEMFD) return 0;	/* the data is in the file */
	uint64_t np = (v->end - v->start) / PAGE, run_start = 0, run_len = 0, va_start = 0, va_len = 0;
	uint64_t pm[4096];
	struct page_region_ *wr = NULL;
	long nwr = 0, iw = 0;
	int pre = precopy_written(g_pc, v, &wr, &nwr), e = 0;
	if (pre < 0) return pre;
	for (uint64_t i = 0; i < np && !e; i += 4096) {
		uint64_t cnt = np - i < 4096 ? np - i : 4096;
		int all = v->kind == K_SHMEM || v->kind == K_FULL;
		if (!all) {
			ssize_t r = pread(pmfd, pm, cnt * 8, (v->start / PAGE + i) * 8);
			if (r != (ssize_t)(cnt * 8)) { e = fail(EIO, "reading pagemap at %#lx", v->start + i * PAGE); break; }
		}
		for (uint64_t k = 0; k < cnt && !e; k++) {
			int want;
			if (all) want = 1;
			else {
				uint64_t en = pm[k];
				int present = (en >> 63) & 1, swapped = (en >> 62) & 1, filepage = (en >> 61) & 1;
				want = swapped || (present && (v->kind != K_FILE_PRIV || !filepage));
				if (want && v->kind != K_FILE_PRIV && zero_page(en)) { want = 0; g_zero_pages++; }
			}
			if (!want) continue;
			uint64_t a = v->start + (i + k) * PAGE;
			int valid = 0;
			if (pre) {
				while (iw < nwr && wr[iw].end <= a) iw++;
				valid = !(iw < nwr && wr[iw].start <= a);
			}
			if (valid) {
				if (va_len && va_start + va_len == a) { va_len += PAGE; continue; }
				if (va_len) { uint64_t r2[2] = { va_start, va_len }; e = rec_put(w, R_PREVALID, r2, 16, NULL, 0); g_valid_pages += va_len / PAGE; }
				va_start = a; va_len = PAGE;
			} else {
				if (run_len && run_start + run_len == a && run_len < CHUNK) { run_len += PAGE; continue; }
				if (run_len) e = dump_pages_run(w, t, buf, run_start, run_len, v->prot);
				run_start = a; run_len = PAGE;
			}
		}
	}
	if (!e && run_len) e = dump_pages_run(w, t, buf, run_start, run_len, v->prot);
	if (!e && va_len) { uint64_t r2[2] = { va_start, va_len }; e = rec_put(w, R_PREVALID, r2, 16, NULL, 0); g_valid_pages += va_len / PAGE; }
	free(wr);
	return e;
}

/* The state a thread has of its own: registers (fs_base/gs_base: its TLS), XSTATE, signal mask,
 * rseq, alternate signal stack, name, robust futex list, clear_child_tid, scheduling policy and
 * nice value. t is that thread, seized and stopped; scratch a page of the process's memory for
 * injected calls. */
int dump_thread(struct tracee *t, uint64_t scratch, struct img_thread *th, uint8_t *xs, uint32_t *xlen)
{
	memset(th, 0, sizeof *th);
	th->tid = ns_inner(t->pid);	/* a guest's home tid, as it sees it in its pid namespace */
	th->regs = t->regs0;
	struct iovec xiov = { xs, XSTATE_MAX };
	if (ptrace(PTRACE_GETREGSET, t->pid, NT_X86_XSTATE, &xiov)) return fail(errno, "PTRACE_GETREGSET NT_X86_XSTATE: %s", strerror(errno));
	*xlen = xiov.iov_len;
	th->sigmask = t->mask0;	/* (as it was before any injected call: their traps unblock SIGTRAP) */
	struct { uint64_t ptr; uint32_t size, sig, flags, pad; } rs = { 0 };
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, t->pid, sizeof rs, &rs) > 0 && rs.ptr) { th->rseq_ptr = rs.ptr; th->rseq_len = rs.size; th->rseq_sig = rs.sig; }
	int e = INJ(t, NULL, SYS_sigaltstack, 0, scratch, 0, 0, 0, 0);
	if (!e) {
		struct { uint64_t sp; int32_t flags, pad; uint64_t size; } ss;
		e = mem_read(t, scratch, &ss, sizeof ss);
		th->ss_sp = ss.sp; th->ss_flags = ss.flags; th->ss_size = ss.size;
	}
	if (!e) e = read_comm(t->pid, t->pid, th->comm);
	if (!e && syscall(SYS_get_robust_list, t->pid, &th->robust_ptr, &th->robust_len)) e = fail(errno, "get_robust_list(%d): %s", t->pid, strerror(errno));
	if (!e) e = INJ(t, NULL, SYS_prctl, PR_GET_TID_ADDRESS, scratch, 0, 0, 0, 0);
	if (!e) e = mem_read(t, scratch, &th->clear_tid, sizeof th->clear_tid);
	if (!e) {
		errno = 0;
		th->policy = sched_getscheduler(t->pid);
		th->nice = getpriority(PRIO_PROCESS, t->pid);
		if (th->policy < 0 || errno) e = fail(errno ? errno : ESRCH, "scheduling of %d: %s", t->pid, strerror(errno));
	}
	return e;
}

/* The process-wide state that needs injected calls: signal handlers, itimers, brk. */
static int dump_core_injected(struct tracee *t, uint64_t scratch, struct img_core *c)
{
	/* only the signals with a handler or ignored are asked (an injected call each): a default
	 * one's action is all zeros (its flags and mask do nothing), except SIGCHLD's flags
	 * (SA_NOCLDSTOP, SA_NOCLDWAIT), always asked */
	uint64_t nondef = t->nondef0;	/* (as before the first trap: sig_save) */
	int e = 0;
	for (int s = 1; s <= 64 && !e; s++) {
		if (s == SIGKILL || s == SIGSTOP) continue;
		if (s != SIGCHLD && !(nondef >> (s - 1) & 1)) { memset(&c->act[s], 0, sizeof c->act[s]); continue; }
		if (s == SIGTRAP && t->trap_saved) { c->act[s] = t->trap_act0; continue; }
		e = INJ(t, NULL, SYS_rt_sigaction, s, 0, scratch, 8, 0, 0);
		if (!e) e = mem_read(t, scratch, &c->act[s], sizeof c->act[s]);
	}
	for (int w = 0; w < 3 && !e; w++) {
		e = INJ(t, NULL, SYS_getitimer, w, scratch, 0, 0, 0, 0);
		if (!e) e = mem_read(t, scratch, c->itimer[w], sizeof c->itimer[w]);
	}
	long brk = 0;
	if (!e) e = INJ(t, &brk, SYS_brk, 0, 0, 0, 0, 0, 0);
	c->mm[5] = brk;
	return e;
}

static struct img_timer timers[MAX_TIMERS];
static int ntimers;

/* seccomp filters, newest first (they are per-thread in the kernel; the main thread's are taken) */
struct sock_filter_ { uint16_t code; uint8_t jt, jf; uint32_t k; };
static struct sock_filter_ filt[8][4096];
static uint32_t nins[8];

static int dump_seccomp(pid_t pid, struct img_core *c)
{
	for (int i = 0; i < 9; i++) {
		long r = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, i, NULL);
		if (r < 0) { if (errno == ENOENT) break; if (errno == EINVAL && i == 0) break; return fail(errno, "PTRACE_SECCOMP_GET_FILTER: %s", strerror(errno)); }
		if (r > 4096) return fail(ENOTSUP, "seccomp filter too large (%ld instructions)", r);
		uint32_t k = c->nfilters;
		if (k == 8) return fail(ENOTSUP, "more than 8 seccomp filters");
		nins[k] = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, i, filt[k]);
		if (!family_filter(filt[k], nins[k])) c->nfilters = k + 1;	/* a guest's family filter stays behind */
	}
	return 0;
}

/* the memory regions of the image, from /proc/PID/maps (the vDSO group is not one of them) */
int dump_vmas(pid_t pid, struct fdtab *tab, struct img_vma **out)
{
	struct vma *m;
	int nm = parse_maps(pid, &m);
	if (nm < 0) return nm;
	struct img_vma *vm = calloc(nm, sizeof *vm);
	int nv = 0;
	for (int i = 0; i < nm; i++) {
		if (is_special(m[i].path)) continue;
		struct img_vma *v = &vm[nv++];
		v->start = m[i].start; v->end = m[i].end; v->pgoff = m[i].pgoff; v->prot = m[i].prot;
		const char *p = m[i].path;
		if (!p[0] || !strcmp(p, "[heap]") || !strncmp(p, "[anon", 5)) v->kind = m[i].shared ? K_SHMEM : K_ANON;
		else if (!strcmp(p, "[stack]")) v->kind = K_STACK;
		else if (ends_with(p, " (deleted)") || p[0] != '/') v->kind = m[i].shared ? K_SHMEM : K_FULL;
		else {
			struct stat sb;
			if (stat(p, &sb) || sb.st_ino != m[i].ino) v->kind = m[i].shared ? K_SHMEM : K_FULL; /* replaced file: keep the data */
			else {
				v->kind = m[i].shared ? K_FILE_SHARED : K_FILE_PRIV;
				v->fsize = sb.st_size; v->mtime_s = sb.st_mtim.tv_sec; v->mtime_ns = sb.st_mtim.tv_nsec;
			}
		}
		if (v->kind == K_SHMEM && !strncmp(p, "/memfd:", 7)) {
			/* a memfd the process still holds: mapped from it again */
			for (int k = 0; k < tab->n; k++)
				if (tab->v[k].kind == F_MEMFD && tab->v[k].dup_of < 0 && tab->v[k].st.st_ino == m[i].ino) { v->kind = K_MEMFD; v->fd = tab->v[k].fd; break; }
		}
		if (v->kind == K_FILE_SHARED || v->kind == K_FILE_PRIV) { snprintf(v->path, sizeof v->path, "%s", p); v->pathlen = strlen(p) + 1; }
		else if (!strcmp(p, "[heap]") || !strcmp(p, "[stack]")) { snprintf(v->path, sizeof v->path, "%s", p); v->pathlen = strlen(p) + 1; }
	}
	free(m);
	*out = vm;
	return nv;
}

/* Dumps the seized, stopped tracee into the image. Leaves the tracee stopped (regs untouched). */
int dump_image(struct tracee *t, int imgfd, const char *target, struct dumpres *res, int (*go)(struct tracee *t, const char **target))
{
	pid_t pid = t->pid;
	struct img_core *c = &res->core;
	memset(c, 0, sizeof *c);
	g_valid_pages = g_zero_pages = 0;	/* this dump's (a helper may make two: frozen.c) */
	static struct img_thread th;
	static uint8_t xs[XSTATE_MAX];
	uint32_t xlen = 0;
	struct image_thread *others = NULL;	/* the other threads (threads.c) */
	uint64_t xfeat = 0;
	int e = dump_seccomp(pid, c);
	if (!e) e = find_vdso(t, &c->vvar, &c->vclock, &c->vdso);
	if (e) return e;
	trace("vdso");
	/* injected calls write into a scratch page that is removed again (the signal dispositions,
	 * and SIGTRAP's action where their traps would reset it, read first) */
	long scratch;
	if ((e = sig_save(t))) return e;
	e = INJ(t, &scratch, SYS_mmap, 0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (e) return e;
	e = dump_thread(t, scratch, &th, xs, &xlen);
	if (!e) e = threads_dump(t, scratch, &others, &xfeat);
	if (!e) e = dump_core_injected(t, scratch, c);
	if (!e) e = timers_dump(t, scratch, timers, &ntimers);
	int e2 = INJ(t, NULL, SYS_munmap, scratch, PAGE, 0, 0, 0, 0);
	if (e || e2) { free(others); return e ? e : e2; }
	trace("injected");
	if ((e = read_core_proc(pid, c))) return e;
	trace("core");

	struct img_header h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, IMG_MAGIC, 8);
	h.version = IMG_VERSION;
	h.hdr_size = sizeof h;
	h.nthreads = 1 + t->nthr;
	host_compat(&h.c);
	h.c.xsave_len = xlen;
	memcpy(&h.c.xcr0, xs + 464, 8);	/* XSTATE_BV of the XSAVE header: the features in use */
	h.c.xcr0 |= xfeat;
	h.pid = ns_inner(pid);	/* a guest's home pid (restore.c guest_pidns) */
	read_timens(pid, &h.mono_off_ns, &h.boot_off_ns);
	h.mono_ns = clock_ns(CLOCK_MONOTONIC) + h.mono_off_ns;
	h.boot_ns = clock_ns(CLOCK_BOOTTIME) + h.boot_off_ns;
	struct fdtab tab;
	if ((e = fdtab_read(pid, &tab))) { free(others); return e; }
	struct img_fd *fds = NULL;
	int nfd = dump_fds(&tab, &fds);
	if (nfd < 0) { fdtab_free(&tab); free(others); return nfd; }
	struct img_vma *vm;
	int nv = dump_vmas(pid, &tab, &vm);
	if (nv < 0) { fdtab_free(&tab); free(fds); free(others); return nv; }

	trace("fds-vmas");
	/* deputy --wait: all of the process but its pages and buffers has been read while the offer
	 * went back and forth; nothing is written before the caller says go (naming the target) */
	if (go && (e = go(t, &target))) { free(vm); free(fds); fdtab_free(&tab); free(others); return e; }
	/* the signals it has not taken, read last (also those that came while it waited for go) */
	int nsig = sigq_read(t);
	if (nsig < 0) { free(vm); free(fds); fdtab_free(&tab); free(others); return nsig; }
	c->nsig = nsig;
	if (target) {
		struct compat tc;
		if (!(e = compat_parse(target, &tc)) && compat_check(&h.c, &tc, 1)) e = fail(ENOTSUP, "the target host cannot run this process faithfully");
		if (e) { free(vm); free(fds); fdtab_free(&tab); free(others); return e; }
	}
	struct stat isb;
	if (fstat(imgfd, &isb) == 0 && S_ISFIFO(isb.st_mode)) fcntl(imgfd, F_SETPIPE_SZ, 1 << 20);
	struct imgw w = { imgfd, 0, 0, 0, g_copy_fd, NULL, NULL };
	if (g_pc) w = g_pc->w;	/* after the pre-copy rounds, in the same stream (and its copy) */
	e = rec_put(&w, R_HEADER, &h, sizeof h, NULL, 0);
	if (!e) e = rec_put(&w, R_CORE, c, sizeof *c, NULL, 0);
	if (!e) e = rec_put(&w, R_THREAD, &th, sizeof th, NULL, 0);
	if (!e) e = rec_put(&w, R_XSTATE, xs, xlen, NULL, 0);
	for (int i = 0; i < t->nthr && !e; i++) {
		e = rec_put(&w, R_THREAD, &others[i].th, sizeof others[i].th, NULL, 0);
		if (!e) e = rec_put(&w, R_XSTATE, others[i].xs, others[i].xlen, NULL, 0);
	}
	free(others);
	for (int i = 0; i < nsig && !e; i++) e = rec_put(&w, R_SIGINFO, &t->sigs[i], sizeof t->sigs[i], NULL, 0);
	for (int i = c->nfilters - 1; i >= 0 && !e; i--) e = rec_put(&w, R_SECCOMP, &nins[i], 4, filt[i], nins[i] * 8);
	for (int i = 0; i < nv && !e; i++) e = rec_put(&w, R_VMA, &vm[i], VMA_FIXED + vm[i].pathlen, NULL, 0);
	for (int i = 0; i < nfd && !e; i++) e = rec_put(&w, R_FD, &fds[i], FD_FIXED + fds[i].pathlen, NULL, 0);
	if (!e) e = anon_dump_meta(&w, &tab, fds, nfd);
	for (int i = 0; i < ntimers && !e; i++) e = rec_put(&w, R_TIMER, &timers[i], sizeof timers[i], NULL, 0);
	if (!e) {
		char fn[64];
		snprintf(fn, sizeof fn, "/proc/%d/pagemap", pid);
		int pmfd = open(fn, O_RDONLY | O_CLOEXEC);
		if (pmfd < 0) e = fail(errno, "open %s: %s", fn, strerror(errno));
		uint8_t *pbuf = malloc(CHUNK + 16);
		double tp = now_ms();
		/* the page data written by a thread while the next pages are read (pipeline.c), or by
		 * the process itself into a socket (gsend.c) */
		if (!e && !g_pc) e = gsend_open(&w, t, imgfd);
		wahead_start(&w);
		trace("pages");
		for (int i = 0; i < nv && !e; i++) e = dump_vma_pages(&w, t, pmfd, &vm[i], pbuf);
		int ge = gsend_close(&w, t);
		if (!e) e = ge;
		if (!e) ctlf("STAT pages_ms=%.3f", now_ms() - tp);
		free(pbuf);
		if (pmfd >= 0) close(pmfd);
	}
	/* what descriptors hold: buffered bytes of pipes and sockets, memfd contents */
	if (!e) e = queues_dump_data(&w, &tab, fds, nfd);
	if (!e) e = memfd_dump_data(&w, &tab, fds, nfd);
	free(fds);
	fdtab_free(&tab);	/* the helper keeps nothing of the process */
	if (!e) {
		struct img_end end = { w.nrec, 0, w.bytes, w.pages };
		e = rec_put(&w, R_END, &end, sizeof end, NULL, 0);
	}
	/* what was queued is written, also after a failure (as without the thread) */
	trace("end-queued");
	int we = wahead_stop(&w);
	trace("end-written");
	if (!e) e = we;
	if (e) { free(vm); return e; }
	res->nvma = nv;
	res->vmas = vm;
	ctlf("STAT bytes=%llu pages=%llu zero_pages=%llu vmas=%d threads=%d injections=%ld signals=%d", (unsigned long long)w.bytes, (unsigned long long)w.pages, (unsigned long long)g_zero_pages, nv, 1 + t->nthr, t->ninject, nsig);
	if (g_pc) ctlf("STAT final_pages=%llu valid_pages=%llu", (unsigned long long)w.pages, (unsigned long long)g_valid_pages);
	return 0;
}
