/* Signals a process has not taken yet, carried with their siginfo (docs/ppm.md "Pending signals").
 *
 * Dump (sigq_read): per thread, the main one first, the signals its stops took out of the kernel
 * while the helper stopped it (tracee_pending: their siginfo read at the stop), then its own queue
 * (PTRACE_PEEKSIGINFO); last the process's queue (PTRACE_PEEKSIGINFO_SHARED). Every queued
 * instance of a real-time signal is a record of its own, in queue order. Nothing is taken out of
 * the queues: a move that fails leaves them as they were.
 *
 * Restore (sigq_restore): each record is queued again by the process itself, injected into the
 * thread it was for (rt_tgsigqueueinfo) or the main thread (rt_sigqueueinfo for the process's):
 * the kernel lets a task queue any siginfo to itself (si_code of a kill, of the kernel, ...), so
 * sender, code and value arrive as they were sent. Those threads block every signal until their
 * masks are set last (restore_thread_regs), so that no injected call's stop takes one out again.
 * SIGTRAP is the exception: the single steps of the injected calls raise SIGTRAP themselves, so
 * queued SIGTRAPs are sent from the helper once the process runs (sigq_after).
 *
 * From the helper (sigq_send), as for the signals a released original had taken out at its
 * stops: the kernel keeps the whole siginfo only for codes below 0 (sigqueue, timers, AIO, ...)
 * but SI_TKILL; the others go by tgkill/kill, their sender the helper. */
#include "ppm.h"

static int add(struct tracee *t, int thread, const siginfo_t *si, int queued, int *cap)
{
	if (si->si_signo < 1 || si->si_signo > 64 || si->si_signo == SIGKILL || si->si_signo == SIGSTOP) return 0;
	if (t->nsig == SIGQ_MAX) return fail(ENOTSUP, "more than %d signals pending", SIGQ_MAX);
	if (t->nsig == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		t->sigs = realloc(t->sigs, *cap * sizeof *t->sigs);
		t->sig_queued = realloc(t->sig_queued, *cap);
		if (!t->sigs || !t->sig_queued) return fail(ENOMEM, "no memory for pending signals");
	}
	struct img_siginfo *q = &t->sigs[t->nsig];
	memset(q, 0, sizeof *q);
	q->thread = thread;
	memcpy(q->info, si, sizeof q->info);
	t->sig_queued[t->nsig++] = queued;
	return 0;
}

/* the queue of thread tid (shared: the process's), appended */
static int peek(struct tracee *t, pid_t tid, int thread, int shared, int *cap)
{
	static siginfo_t buf[32];
	for (uint64_t off = 0;;) {
		struct __ptrace_peeksiginfo_args a = { off, shared ? PTRACE_PEEKSIGINFO_SHARED : 0, 32 };
		long got = ptrace(PTRACE_PEEKSIGINFO, tid, &a, buf);
		if (got < 0) return fail(errno, "PTRACE_PEEKSIGINFO %d: %s", tid, strerror(errno));
		if (got == 0) return 0;
		for (long i = 0; i < got; i++) {
			int e = add(t, thread, &buf[i], 1, cap);
			if (e) return e;
		}
		off += got;
	}
}

int sigq_read(struct tracee *t)
{
	free(t->sigs);
	free(t->sig_queued);
	t->sigs = NULL;
	t->sig_queued = NULL;
	t->nsig = 0;
	int cap = 0, e = 0;
	for (int i = -1; i < t->nthr && !e; i++) {
		struct tracee *tt = i < 0 ? t : &t->thr[i];
		if (tt->dead) continue;
		for (int k = 0; k < tt->npend && !e; k++) e = add(t, i + 1, &tt->pend[k], 0, &cap);
		tt->pend_imaged = tt->npend;
		if (!e) e = peek(t, tt->pid, i + 1, 0, &cap);
	}
	if (!e) e = peek(t, t->pid, -1, 1, &cap);
	return e ? e : t->nsig;
}

int sigq_restore(struct tracee *t, const struct image *im, uint64_t scr)
{
	uint64_t all = ~0ULL;
	pid_t tgid = t->vpid ? t->vpid : t->pid;
	int e = 0;
	/* every thread that queues one blocks all first (PTRACE_SETSIGMASK leaves SIGKILL and
	 * SIGSTOP out by itself) */
	for (int i = 0; i < im->nsig && !e; i++) {
		int k = im->sigs[i].thread;
		struct tracee *tt = k <= 0 ? t : &t->thr[k - 1];
		if (ptrace(PTRACE_SETSIGMASK, tt->pid, 8, &all)) e = fail(errno, "PTRACE_SETSIGMASK %d: %s", tt->pid, strerror(errno));
	}
	for (int i = 0; i < im->nsig && !e; i++) {
		const struct img_siginfo *q = &im->sigs[i];
		siginfo_t si;
		memcpy(&si, q->info, sizeof si);
		if (si.si_signo == SIGTRAP) continue;
		if ((e = mem_write(t, scr, &si, sizeof si))) break;
		if (q->thread < 0) {
			e = INJ(t, NULL, SYS_rt_sigqueueinfo, tgid, si.si_signo, scr, 0, 0, 0);
		} else {
			struct tracee *tt = q->thread == 0 ? t : &t->thr[q->thread - 1];
			e = INJ(tt, NULL, SYS_rt_tgsigqueueinfo, tgid, tt->vpid ? tt->vpid : tt->pid, si.si_signo, scr, 0, 0);
		}
	}
	return e;
}

void sigq_send(pid_t tgid, pid_t tid, const siginfo_t *si)
{
	int sig = si->si_signo;
	if (si->si_code < 0 && si->si_code != SI_TKILL) {
		siginfo_t c = *si;
		long r = tid ? syscall(SYS_rt_tgsigqueueinfo, tgid, tid, sig, &c) : syscall(SYS_rt_sigqueueinfo, tgid, sig, &c);
		if (r == 0) return;
	}
	if (tid) syscall(SYS_tgkill, tgid, tid, sig);
	else kill(tgid, sig);
}

void sigq_after(struct tracee *t, const struct image *im)
{
	for (int i = 0; i < im->nsig; i++) {
		const struct img_siginfo *q = &im->sigs[i];
		siginfo_t si;
		memcpy(&si, q->info, sizeof si);
		if (si.si_signo != SIGTRAP) continue;
		pid_t tid = q->thread < 0 ? 0 : q->thread == 0 ? t->pid : q->thread - 1 < t->nthr ? t->thr[q->thread - 1].pid : 0;
		sigq_send(t->pid, tid, &si);
	}
}

void sigq_resend(struct tracee *t, pid_t tgid, int process)
{
	for (int i = 0; i < t->npend; i++) sigq_send(tgid, process ? 0 : t->pid, &t->pend[i]);
	t->npend = t->pend_imaged = 0;
}

int sigq_claim(struct tracee *t, const siginfo_t *si)
{
	for (int i = 0; i < t->nsig; i++) {
		if (t->sig_queued[i] != 1 || t->sigs[i].thread > 0) continue;
		if (memcmp(t->sigs[i].info, si, sizeof t->sigs[i].info)) continue;
		t->sig_queued[i] = 2;	/* claimed */
		return 1;
	}
	return 0;
}

void sigq_expect(struct tracee *t, const struct image *im)
{
	free(t->sigs);
	free(t->sig_queued);
	t->nsig = 0;
	t->sigs = malloc((im->nsig + 1) * sizeof *t->sigs);
	t->sig_queued = malloc(im->nsig + 1);
	if (!t->sigs || !t->sig_queued) return;
	for (int i = 0; i < im->nsig; i++) {
		if (im->sigs[i].thread > 0) continue;	/* (its threads are ended first) */
		t->sigs[t->nsig] = im->sigs[i];
		t->sig_queued[t->nsig++] = 1;
	}
}
