/* The tracee and the injected code (our "parasite"): seizing a task, running syscalls inside it
 * at a `syscall` instruction of its vDSO, reading and writing its memory, and letting it go.
 * Every injection runs to its syscall-exit stop; asynchronous signals that show up are recorded
 * (t->pend) and re-sent later; a synchronous fault aborts the operation (docs/ppm.md). */
#include "threads.h"

int twait(struct tracee *t, int *st)
{
	for (;;) {
		pid_t r = waitpid(t->pid, st, __WALL);
		if (r < 0) {
			if (errno == EINTR) continue;
			return fail(errno, "waitpid(%d): %s", t->pid, strerror(errno));
		}
		if (WIFEXITED(*st) || WIFSIGNALED(*st)) {
			t->dead = 1;
			if (WIFEXITED(*st)) return fail(ESRCH, "process %d exited (status %d) while being worked on", t->pid, WEXITSTATUS(*st));
			return fail(ESRCH, "process %d was killed by signal %d while being worked on", t->pid, WTERMSIG(*st));
		}
		return 0;
	}
}

/* at a signal-delivery-stop of t for sig, suppressed by the caller: the signal kept with its
 * siginfo (si: read at the stop already; NULL: read here), for sigq.c to send it again or put it
 * into the image. A standard signal already kept is one the kernel would have merged; every
 * real-time instance is kept, TRACEE_PEND at most. */
void tracee_pending(struct tracee *t, int sig, const siginfo_t *si)
{
	if (sig < 32)
		for (int i = t->pend_imaged; i < t->npend; i++) if (t->pend[i].si_signo == sig) return;
	if (t->npend == TRACEE_PEND) return;
	if (si && si->si_signo == sig) t->pend[t->npend] = *si;
	else stop_siginfo(t->pid, sig, &t->pend[t->npend]);
	t->npend++;
}

static int is_sync_fault(int sig, const siginfo_t *si)
{
	return (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP || sig == SIGSYS) && si->si_code > 0;
}

/* HPC_PPM_INJECT=two-stops: every injected call stops at its entry and exit (the old way, to compare) */
int g_inject_two_stops;

/* Lets the injected call of nr go on (req: PTRACE_SINGLESTEP or PTRACE_SYSCALL) to its next stop of
 * its own: a syscall stop, or the single step's trap once the call has returned. Asynchronous
 * signals on the way are recorded (re-sent later); a synchronous one aborts. */
static int run_call(struct tracee *t, int req, long nr)
{
	const char *how = req == PTRACE_SINGLESTEP ? "PTRACE_SINGLESTEP" : "PTRACE_SYSCALL";
	if (ptrace(req, t->pid, 0, 0)) return fail(errno, "%s: %s", how, strerror(errno));
	for (;;) {
		int st, e = twait(t, &st);
		if (e) return e;
		int sig = WSTOPSIG(st), ev = st >> 16;
		if (sig == (SIGTRAP | 0x80)) return 0;
		if (ev == PTRACE_EVENT_CLONE) {
			/* an injected clone3 (threads.c): the new thread's tid as this helper sees it */
			unsigned long msg = 0;
			if (ptrace(PTRACE_GETEVENTMSG, t->pid, 0, &msg) == 0) t->event_pid = (pid_t)msg;
		}
		if (ev == 0) {
			siginfo_t si;
			memset(&si, 0, sizeof si);
			ptrace(PTRACE_GETSIGINFO, t->pid, 0, &si);
			if (req == PTRACE_SINGLESTEP && sig == SIGTRAP && si.si_code > 0) return 0;	/* the step's trap */
			if (is_sync_fault(sig, &si))
				return fail(EFAULT, "synchronous signal %d (code %d, addr %p) during injected syscall %ld: aborted", sig, si.si_code, si.si_addr, nr);
			tracee_pending(t, sig, &si);
		}
		if (ptrace(req, t->pid, 0, 0)) return fail(errno, "%s: %s", how, strerror(errno));
	}
}

double g_inject_ms;	/* time spent in injected calls (STAT inject_ms) */

int inject(struct tracee *t, long nr, long a1, long a2, long a3, long a4, long a5, long a6, long *ret)
{
	double t0 = now_ms();
	struct user_regs_struct r = t->regs0;
	r.rip = t->sc_ip;
	r.rax = nr;
	r.orig_rax = -1;
	r.rdi = a1; r.rsi = a2; r.rdx = a3; r.r10 = a4; r.r8 = a5; r.r9 = a6;
	if (ptrace(PTRACE_SETREGS, t->pid, 0, &r)) return fail(errno, "PTRACE_SETREGS: %s", strerror(errno));
	/* One stop per call: the syscall instruction single-stepped (the trap comes once it has
	 * returned), instead of a stop at its entry and another at its exit. Calls that make a task
	 * (the new one would start with the trap flag) keep the two stops. */
	int step = nr != NR_CLONE3 && nr != SYS_clone && nr != SYS_fork && nr != SYS_vfork && !g_inject_two_stops;
	int e = run_call(t, step ? PTRACE_SINGLESTEP : PTRACE_SYSCALL, nr);
	if (!e && !step) e = run_call(t, PTRACE_SYSCALL, nr);
	if (e) return e;
	if (ptrace(PTRACE_GETREGS, t->pid, 0, &r)) return fail(errno, "PTRACE_GETREGS: %s", strerror(errno));
	if (step && r.rip != t->sc_ip + 2) return fail(EIO, "injected syscall %ld stopped at %#llx, not after its syscall instruction", nr, r.rip);
	t->ninject++;
	g_inject_ms += now_ms() - t0;
	*ret = r.rax;
	return 0;
}

int inject_v(struct tracee *t, long *ret, long nr, const char *name, long a[6])
{
	long rv;
	int e = inject(t, nr, a[0], a[1], a[2], a[3], a[4], a[5], &rv);
	if (e) return e;
	if (ret) *ret = rv;
	if (rv < 0 && rv > -4096) return fail(-rv, "injected %s failed: %s", name, strerror(-rv));
	return 0;
}

int mem_write(struct tracee *t, uint64_t addr, const void *p, size_t n)
{
	while (n) {
		ssize_t r = pwrite(t->memfd, p, n, addr);
		if (r <= 0) {
			if (r < 0 && errno == EINTR) continue;
			return fail(r < 0 ? errno : EIO, "writing process memory at %#lx: %s", addr, r < 0 ? strerror(errno) : "short write");
		}
		p = (const char *)p + r; addr += r; n -= r;
	}
	return 0;
}

int mem_read(struct tracee *t, uint64_t addr, void *p, size_t n)
{
	while (n) {
		ssize_t r = pread(t->memfd, p, n, addr);
		if (r <= 0) {
			if (r < 0 && errno == EINTR) continue;
			return fail(r < 0 ? errno : EIO, "reading process memory at %#lx: %s", addr, r < 0 ? strerror(errno) : "short read");
		}
		p = (char *)p + r; addr += r; n -= r;
	}
	return 0;
}

int open_mem(struct tracee *t)
{
	char fn[64];
	snprintf(fn, sizeof fn, "/proc/%d/mem", t->pid);
	t->memfd = open(fn, O_RDWR | O_CLOEXEC);
	if (t->memfd < 0) return fail(errno, "open %s: %s", fn, strerror(errno));
	return 0;
}

/* finds the vDSO in the tracee and a `syscall` instruction in it */
int find_vdso(struct tracee *t, uint64_t *vvar, uint64_t *vclock, uint64_t *vdso)
{
	struct vma *v;
	int n = parse_maps(t->pid, &v);
	if (n < 0) return n;
	*vvar = *vclock = *vdso = 0;
	uint64_t vlen = 0;
	for (int i = 0; i < n; i++) {
		if (!strcmp(v[i].path, "[vvar]")) *vvar = v[i].start;
		if (!strcmp(v[i].path, "[vvar_vclock]")) *vclock = v[i].start;
		if (!strcmp(v[i].path, "[vdso]")) { *vdso = v[i].start; vlen = v[i].end - v[i].start; }
	}
	free(v);
	if (!*vdso) return fail(ENOTSUP, "process %d has no vDSO", t->pid);
	uint8_t *buf = malloc(vlen);
	int e = mem_read(t, *vdso, buf, vlen);
	if (!e) {
		e = fail(ENOTSUP, "no syscall instruction in the vDSO");
		for (uint64_t i = 0; i + 1 < vlen; i++)
			if (buf[i] == 0x0f && buf[i + 1] == 0x05) { t->sc_ip = *vdso + i; clear_err(); e = 0; break; }
	}
	free(buf);
	return e;
}

void fix_restart(struct user_regs_struct *r, int live)
{
	if ((long)r->orig_rax >= 0) {
		long rv = (long)r->rax;
		if (rv == -512 || rv == -513 || rv == -514) { r->rax = r->orig_rax; r->rip -= 2; }
		else if (rv == -516) { r->rax = live ? 219 : r->orig_rax; r->rip -= 2; }
	}
	r->orig_rax = -1;
}

/* puts the original back exactly as it was and lets it go */
void release_live(struct tracee *t)
{
	if (t->dead) return;
	tracee_back(t);
	threads_release(t);
	ptrace(PTRACE_DETACH, t->pid, 0, 0);
	sigq_resend(t, t->pid, 0);	/* to the thread whose stop took it out */
}

int seize(struct tracee *t, pid_t pid, long opts)
{
	memset(t, 0, sizeof *t);
	t->pid = pid;
	t->memfd = -1;
	if (ptrace(PTRACE_SEIZE, pid, 0, opts)) return fail(errno == EPERM ? EPERM : errno, "PTRACE_SEIZE %d: %s", pid, strerror(errno));
	if (ptrace(PTRACE_INTERRUPT, pid, 0, 0)) return fail(errno, "PTRACE_INTERRUPT: %s", strerror(errno));
	for (;;) {
		int st, e = twait(t, &st);
		if (e) return e;
		int sig = WSTOPSIG(st), ev = st >> 16;
		if (ev == PTRACE_EVENT_STOP) {
			if (sig != SIGTRAP) {
				ptrace(PTRACE_DETACH, pid, 0, 0);
				return fail(EAGAIN, "process %d is stopped (job control)", pid);
			}
			break;
		}
		if (ev == 0) tracee_pending(t, sig, NULL);
		if (ptrace(PTRACE_CONT, pid, 0, 0)) return fail(errno, "PTRACE_CONT: %s", strerror(errno));
	}
	if (ptrace(PTRACE_GETREGS, pid, 0, &t->regs0)) return fail(errno, "PTRACE_GETREGS: %s", strerror(errno));
	if (ptrace(PTRACE_GETSIGMASK, pid, 8, &t->mask0)) return fail(errno, "PTRACE_GETSIGMASK: %s", strerror(errno));
	return open_mem(t);
}

int trap_act(struct tracee *t, const struct ksigaction *set, struct ksigaction *get, uint64_t scr, size_t len)
{
	int two = g_inject_two_stops, e = 0;
	g_inject_two_stops = 1;
	long page = scr;
	if (!scr) { len = PAGE; e = INJ(t, &page, SYS_mmap, 0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); }
	int mapped = !e;
	if (!e && set) e = mem_write(t, page, set, sizeof *set);
	if (!e) e = INJ(t, NULL, SYS_rt_sigaction, SIGTRAP, set ? page : 0, get ? page : 0, 8, 0, 0);
	if (!e && get) e = mem_read(t, page, get, sizeof *get);
	if (mapped) { int e2 = INJ(t, NULL, SYS_munmap, page, len, 0, 0, 0, 0); if (!e) e = e2; }
	g_inject_two_stops = two;
	return e;
}

int sig_save(struct tracee *t)
{
	uint64_t ign = 0, tb = 1ULL << (SIGTRAP - 1);
	if (t->trap_saved) return 0;	/* read for this freeze already (dump --confirm's SAVE: its second dump) */
	int e = sig_nondefault(t->pid, &t->nondef0, &ign);
	int care = (ign & tb) || (t->mask0 & tb);
	for (int i = 0; i < t->nthr; i++) care |= (t->thr[i].mask0 & tb) != 0;
	if (e || !care) return e;
	if (!(e = trap_act(t, NULL, &t->trap_act0, 0, 0))) t->trap_saved = 1;
	return e;
}

void tracee_back(struct tracee *t)
{
	if (t->dead) return;
	if (t->trap_saved) trap_act(t, &t->trap_act0, NULL, 0, 0);
	for (int i = -1; i < t->nthr; i++) {
		struct tracee *tt = i < 0 ? t : &t->thr[i];
		if (tt->dead || !tt->regs0.cs) continue;	/* (cs 0: registers never read) */
		struct user_regs_struct r = tt->regs0;
		fix_restart(&r, 1);
		ptrace(PTRACE_SETREGS, tt->pid, 0, &r);
		ptrace(PTRACE_SETSIGMASK, tt->pid, 8, &tt->mask0);
	}
}

int put_str(struct tracee *t, uint64_t addr, const char *s)
{
	return mem_write(t, addr, s, strlen(s) + 1);
}

/* lets the task wait in pause() at the vDSO syscall instruction (a parked, hollow deputy) */
int park(struct tracee *t)
{
	struct user_regs_struct r = t->regs0;
	r.rip = t->sc_ip;
	r.rax = SYS_pause;
	r.orig_rax = -1;
	if (ptrace(PTRACE_SETREGS, t->pid, 0, &r)) return fail(errno, "PTRACE_SETREGS: %s", strerror(errno));
	if (ptrace(PTRACE_CONT, t->pid, 0, 0)) return fail(errno, "PTRACE_CONT: %s", strerror(errno));
	return 0;
}

/* stops a running (parked) tracee; signals that arrive meanwhile are reported as SIGNAL lines */
int interrupt_stop(struct tracee *t)
{
	if (ptrace(PTRACE_INTERRUPT, t->pid, 0, 0)) return fail(errno, "PTRACE_INTERRUPT: %s", strerror(errno));
	for (;;) {
		int st, e = twait(t, &st);
		if (e) return e;
		int sig = WSTOPSIG(st), ev = st >> 16;
		if (ev == PTRACE_EVENT_STOP) return 0;
		if (ev == 0) sigq_report_stop(t->pid, sig);
		if (ptrace(PTRACE_CONT, t->pid, 0, 0)) return fail(errno, "PTRACE_CONT: %s", strerror(errno));
	}
}

void kill_reap(pid_t pid)
{
	kill(pid, SIGKILL);
	/* its other threads, traced by us, are reaped by us too; the main thread's end comes last */
	for (;;) {
		int st;
		pid_t w = waitpid(-1, &st, __WALL);
		if (w < 0 && errno == EINTR) continue;
		if (w < 0 || (w == pid && (WIFEXITED(st) || WIFSIGNALED(st)))) break;
	}
}
