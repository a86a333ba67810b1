/* POSIX timers (timer_create). /proc/PID/timers gives each timer's id, signal and sigev value,
 * notification and clock; the remaining time and interval come from an injected timer_gettime.
 * The restore creates each timer with its id (prctl PR_TIMER_CREATE_RESTORE_IDS makes
 * timer_create take the id it is given) and arms it with the remaining time, at the end of the
 * restore: like itimers, a timer's remaining time is frozen while the process moves. Not carried:
 * the overrun count and the siginfo of a timer signal already pending (it is re-sent as a plain
 * signal, as every pending signal). A timer that signals one thread (SIGEV_THREAD_ID) signals the
 * same thread after the restore, by the tid it has then (img_timer.thread: its index among the
 * image's threads). Timers on the CPU clock of another process or thread, and SIGEV_THREAD
 * notification by the kernel, are refused. */
#include "ppm.h"

#define SIGEV_THREAD_ID_ 4

struct ptimer { int id, signo, notify, clockid, tid; uint64_t sival; };

/* the timers of pid; returns the count (max cap), -1 if there is no timers file */
static int read_timers(pid_t pid, struct ptimer *v, int cap)
{
	char fn[64];
	snprintf(fn, sizeof fn, "/proc/%d/timers", pid);
	char *s = read_file_alloc(fn);
	if (!s) return -1;
	int n = 0;
	for (char *p = strstr(s, "ID:"); p && n < cap; p = strstr(p + 3, "ID:")) {
		struct ptimer *t = &v[n];
		char mode[16], who[8];
		unsigned long long val;
		if (sscanf(p, "ID: %d signal: %d/%llx notify: %15[^/]/%7[^.].%d ClockID: %d", &t->id, &t->signo, &val, mode, who, &t->tid, &t->clockid) != 7) continue;
		t->sival = val;
		if (!strcmp(mode, "signal")) t->notify = SIGEV_SIGNAL;
		else if (!strcmp(mode, "none")) t->notify = SIGEV_NONE;
		else t->notify = SIGEV_THREAD;
		if (!strcmp(who, "tid")) t->notify |= SIGEV_THREAD_ID_;
		n++;
	}
	free(s);
	return n;
}

int timers_check(pid_t pid, int print)
{
	static struct ptimer v[MAX_TIMERS + 1];
	int k = read_timers(pid, v, MAX_TIMERS + 1), n = 0;
	if (k > MAX_TIMERS) return reason(print, "posix-timers", "process has more than %d POSIX timers", MAX_TIMERS);
	for (int i = 0; i < k; i++) {
		if (v[i].clockid < 0) n += reason(print, "posix-timers", "POSIX timer %d runs on the CPU clock of another process or thread", v[i].id);
		else if ((v[i].notify & ~SIGEV_THREAD_ID_) == SIGEV_THREAD) n += reason(print, "posix-timers", "POSIX timer %d notifies by SIGEV_THREAD in the kernel", v[i].id);
		else if ((v[i].notify & SIGEV_THREAD_ID_) && v[i].tid != pid) {
			char fn[64];
			snprintf(fn, sizeof fn, "/proc/%d/task/%d", pid, v[i].tid);
			if (access(fn, F_OK)) n += reason(print, "posix-timers", "POSIX timer %d signals thread %d, which has ended", v[i].id, v[i].tid);
		}
	}
	return n;
}

int timers_dump(struct tracee *t, uint64_t scratch, struct img_timer *out, int *n)
{
	static struct ptimer v[MAX_TIMERS];
	int k = read_timers(t->pid, v, MAX_TIMERS), e = 0;
	*n = 0;
	for (int i = 0; i < k && !e; i++) {
		struct img_timer *r = &out[i];
		memset(r, 0, sizeof *r);
		r->id = v[i].id; r->clockid = v[i].clockid; r->signo = v[i].signo; r->notify = v[i].notify; r->sival = v[i].sival;
		if ((v[i].notify & SIGEV_THREAD_ID_) && v[i].tid != t->pid) {
			/* the thread it signals, by its place among the image's threads (the main one first) */
			r->thread = -1;
			for (int k = 0; k < t->nthr; k++) if (t->thr[k].pid == v[i].tid) r->thread = k + 1;
			if (r->thread < 0) return fail(ENOTSUP, "POSIX timer %d signals thread %d, not one of the process's", v[i].id, v[i].tid);
		}
		int64_t its[4];	/* interval s, ns, value s, ns */
		e = INJ(t, NULL, SYS_timer_gettime, v[i].id, scratch, 0, 0, 0, 0);
		if (!e) e = mem_read(t, scratch, its, sizeof its);
		r->interval_ns = its[0] * 1000000000LL + its[1];
		r->value_ns = its[2] * 1000000000LL + its[3];
		(*n)++;
	}
	return e;
}

/* deletes every POSIX timer of the tracee (a hollow original: its timers must not fire, and the
 * ids must be free when it comes home) */
int timers_clear(struct tracee *t, uint64_t scr)
{
	(void)scr;
	static struct ptimer v[MAX_TIMERS];
	int k = read_timers(t->pid, v, MAX_TIMERS), e = 0;
	for (int i = 0; i < k && !e; i++) e = INJ(t, NULL, SYS_timer_delete, v[i].id, 0, 0, 0, 0, 0);
	return e;
}

int timers_restore(struct tracee *t, struct image *im, uint64_t scr)
{
	if (!im->ntimer) return 0;
	long rv;
	int e = 0, by_id = INJ(t, NULL, SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0, 0) == 0;
	clear_err();
	for (int i = 0; i < im->ntimer && !e; i++) {
		struct img_timer *p = &im->timers[i];
		struct { uint64_t value; int32_t signo, notify, tid; char pad[44]; } sev;
		memset(&sev, 0, sizeof sev);
		sev.value = p->sival;
		sev.signo = p->signo;
		sev.notify = p->notify;
		/* the thread to signal (the main one unless SIGEV_THREAD_ID names another), by the tid it has in its own pid namespace */
		if (p->thread < 0 || p->thread > t->nthr) { e = fail(EBADMSG, "POSIX timer %d signals thread %d of %d", p->id, p->thread, 1 + t->nthr); break; }
		const struct tracee *to = p->thread ? &t->thr[p->thread - 1] : t;
		sev.tid = to->vpid ? to->vpid : to->pid;
		int32_t id = p->id;
		e = mem_write(t, scr, &sev, sizeof sev);
		if (!e) e = mem_write(t, scr + 128, &id, sizeof id);
		if (!e) e = INJ(t, &rv, SYS_timer_create, p->clockid, scr, scr + 128, 0, 0, 0);
		if (!e) e = mem_read(t, scr + 128, &id, sizeof id);
		if (!e && id != p->id)
			e = fail(ENOTSUP, "POSIX timer %d came back as %d (this kernel cannot choose timer ids%s)", p->id, id, by_id ? "" : ": no PR_TIMER_CREATE_RESTORE_IDS");
		if (!e && (p->value_ns || p->interval_ns)) {
			int64_t its[4] = { p->interval_ns / 1000000000LL, p->interval_ns % 1000000000LL, p->value_ns / 1000000000LL, p->value_ns % 1000000000LL };
			e = mem_write(t, scr, its, sizeof its);
			if (!e && p->value_ns) e = INJ(t, NULL, SYS_timer_settime, p->id, 0, scr, 0, 0, 0);
		}
	}
	if (by_id) { int e2 = INJ(t, NULL, SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0, 0); if (!e) e = e2; }
	return e;
}
