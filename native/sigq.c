/* Signals a process has not taken yet, carried with their siginfo (docs/ppm.md "Pending signals").
 *
 * Dump (sigq_read): per thread, the main one first, the signals its stops took out of the kernel
 * while the helper stopped it (tracee_pending: their siginfo read at the stop), then its own queue
 * (PTRACE_PEEKSIGINFO); last the process's queue (PTRACE_PEEKSIGINFO_SHARED). Every queued
 * instance of a real-time signal is a record of its own, in queue order. Nothing is taken out of
 * the queues: a move that fails leaves them as they were.
 *
 * A signal pending with no entry in its queue (RLIMIT_SIGPENDING used up) is seen in the status
 * bits (SigPnd, ShdPnd) and recorded as the kernel would hand it out.
 *
 * Restore (sigq_restore): each record is queued again by the process itself, injected into the
 * thread it was for (rt_tgsigqueueinfo) or the main thread (rt_sigqueueinfo for the process's):
 * the kernel lets a task queue any siginfo to itself (si_code of a kill, of the kernel, ...), so
 * sender, code and value arrive as they were sent. Its threads block every signal but SIGTRAP
 * until their masks are set last (restore_thread_regs), so that no injected call's stop takes one
 * out again. SIGTRAP (the injected calls' single steps raise it themselves) and SIGSTOP (it cannot
 * be blocked) are sent from the helper instead, once the threads are stopped for the last time
 * (sigq_after).
 *
 * From the helper (sigq_send), as for the signals a released original had taken out at its
 * stops: the kernel keeps the whole siginfo only for codes below 0 (sigqueue, timers, AIO, ...)
 * but SI_TKILL; the others go by tgkill/kill, their sender the helper. */
#include "ppm.h"

static int add(struct tracee *t, int thread, const siginfo_t *si, int queued, int *cap)
{
	if (si->si_signo < 1 || si->si_signo > 64 || si->si_signo == SIGKILL) return 0;
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

/* The queue of thread tid (shared: the process's), appended. A signal can be pending with no
 * entry in the queue (the owner's RLIMIT_SIGPENDING was used up: the kernel keeps the signal, not
 * its siginfo): its bit in the status (`bits`: SigPnd, ShdPnd) is then all there is, and it is
 * recorded as the kernel hands such a signal out (SI_USER, no sender). */
static int peek(struct tracee *t, pid_t tid, int thread, int shared, uint64_t bits, int *cap)
{
	static siginfo_t buf[32];
	int first = t->nsig;
	for (uint64_t off = 0;;) {
		struct __ptrace_peeksiginfo_args a = { off, shared ? PTRACE_PEEKSIGINFO_SHARED : 0, 32 };
		long got = ptrace(PTRACE_PEEKSIGINFO, tid, &a, buf);
		if (got < 0) return fail(errno, "PTRACE_PEEKSIGINFO %d: %s", tid, strerror(errno));
		if (got == 0) break;
		for (long i = 0; i < got; i++) {
			int e = add(t, thread, &buf[i], 1, cap);
			if (e) return e;
		}
		off += got;
	}
	for (int i = first; i < t->nsig; i++) {
		int sg;
		memcpy(&sg, t->sigs[i].info, sizeof sg);
		bits &= ~(1ULL << (sg - 1));
	}
	for (int sg = 1; sg <= 64; sg++) {
		if (!(bits >> (sg - 1) & 1)) continue;
		siginfo_t si;
		memset(&si, 0, sizeof si);
		si.si_signo = sg;
		si.si_code = SI_USER;
		int e = add(t, thread, &si, 1, cap);
		if (e) return e;
	}
	return 0;
}

int sigq_read(struct tracee *t)
{
	free(t->sigs);
	free(t->sig_queued);
	t->sigs = NULL;
	t->sig_queued = NULL;
	t->nsig = 0;
	int cap = 0, e = 0;
	uint64_t shared = 0;
	for (int i = -1; i < t->nthr && !e; i++) {
		struct tracee *tt = i < 0 ? t : &t->thr[i];
		if (tt->dead) continue;
		for (int k = 0; k < tt->npend && !e; k++) e = add(t, i + 1, &tt->pend[k], 0, &cap);
		tt->pend_imaged = tt->npend;
		static char st[8192];
		char v[64];
		uint64_t own = 0;
		if (!task_status(t->pid, tt->pid, st, sizeof st)) {
			if (!status_field(st, "SigPnd", v, sizeof v)) own = strtoull(v, NULL, 16);
			if (i < 0 && !status_field(st, "ShdPnd", v, sizeof v)) shared = strtoull(v, NULL, 16);
		}
		if (!e) e = peek(t, tt->pid, i + 1, 0, own, &cap);
	}
	if (!e) e = peek(t, t->pid, -1, 1, shared, &cap);
	return e ? e : t->nsig;
}

/* sent by the helper once the process is stopped for the last time, not queued by the process:
 * SIGTRAP (the injected calls' single steps raise it themselves), SIGSTOP (it cannot be blocked:
 * a stop would take it out at once) */
static int sent_after(int sig) { return sig == SIGTRAP || sig == SIGSTOP; }

int sigq_restore(struct tracee *t, const struct image *im, uint64_t scr)
{
	/* SIGTRAP not blocked: the trap that ends a single-stepped call would unblock it and reset a
	 * handler of the process's to the default (docs/ppm.md "SIGTRAP and the traps of injected
	 * calls"); no SIGTRAP is queued here */
	uint64_t all = ~0ULL & ~(1ULL << (SIGTRAP - 1));
	t->sig_restored = 0;
	if (im->nsig == 0) return 0;
	/* the ids as the process sees them (a hollow original may run in a pid namespace below this helper's) */
	pid_t tgid = t->vpid ? t->vpid : ns_inner(t->pid);
	int e = 0;
	/* its threads block all first (PTRACE_SETSIGMASK leaves SIGKILL and SIGSTOP out by itself) */
	for (int i = -1; i < t->nthr && !e; i++) {
		struct tracee *tt = i < 0 ? t : &t->thr[i];
		if (ptrace(PTRACE_SETSIGMASK, tt->pid, 8, &all)) e = fail(errno, "PTRACE_SETSIGMASK %d: %s", tt->pid, strerror(errno));
	}
	for (int i = 0; i < im->nsig && !e; i++) {
		const struct img_siginfo *q = &im->sigs[i];
		siginfo_t si;
		memcpy(&si, q->info, sizeof si);
		if (sent_after(si.si_signo)) continue;
		if ((e = mem_write(t, scr, &si, sizeof si))) break;
		if (q->thread < 0) {
			e = INJ(t, NULL, SYS_rt_sigqueueinfo, tgid, si.si_signo, scr, 0, 0, 0);
		} else {
			struct tracee *tt = q->thread == 0 ? t : &t->thr[q->thread - 1];
			pid_t tid = q->thread == 0 ? tgid : tt->vpid ? tt->vpid : ns_inner(tt->pid);
			e = INJ(tt, NULL, SYS_rt_tgsigqueueinfo, tgid, tid, si.si_signo, scr, 0, 0);
		}
		if (!e) t->sig_restored = i + 1;
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
		if (!sent_after(si.si_signo)) continue;
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
	for (int i = 0; i < t->sig_restored && i < im->nsig; i++) {
		int sig;
		memcpy(&sig, im->sigs[i].info, sizeof sig);
		if (im->sigs[i].thread > 0 || sent_after(sig)) continue;	/* (its threads are ended first) */
		t->sigs[t->nsig] = im->sigs[i];
		t->sig_queued[t->nsig++] = 1;
	}
}

void sigq_report(const siginfo_t *si)
{
	ctlf("SIGNAL %d %d %d %u %lld", si->si_signo, si->si_code, (int)si->si_pid, (unsigned)si->si_uid, (long long)(intptr_t)si->si_value.sival_ptr);
}

void stop_siginfo(pid_t tid, int sig, siginfo_t *si)
{
	memset(si, 0, sizeof *si);
	if (ptrace(PTRACE_GETSIGINFO, tid, 0, si) || si->si_signo != sig) {
		memset(si, 0, sizeof *si);
		si->si_signo = sig;
		si->si_code = SI_USER;
	}
}

void sigq_report_stop(pid_t tid, int sig)
{
	siginfo_t si;
	stop_siginfo(tid, sig, &si);
	sigq_report(&si);
}

int sigq_command(pid_t pid, const char *line)
{
	int sig, code, from;
	unsigned uid;
	long long value;
	if (sscanf(line, "SIGQUEUE %d %d %d %u %lld", &sig, &code, &from, &uid, &value) != 5) return -1;
	if (sig < 1 || sig > 64) return -1;
	siginfo_t si;
	memset(&si, 0, sizeof si);
	si.si_signo = sig;
	si.si_code = code;
	si.si_pid = from;
	si.si_uid = uid;
	si.si_value.sival_ptr = (void *)(intptr_t)value;
	sigq_send(pid, 0, &si);
	return 0;
}
