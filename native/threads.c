/* The threads of a process besides its main thread (docs/ppm.md, "Threads"): the reasons some
 * cannot move, freezing them all, dumping their state, ending them when the original is hollowed,
 * and recreating them in a restored process with clone3. Each thread's own state is dumped and
 * restored by dump_thread/restore_thread/restore_thread_regs, as for the main thread. */
#include "threads.h"
#include <sys/file.h>

#define KCMP_FILES_ 2
#define KCMP_FS_ 3
#define KCMP_SYSVSEM_ 6
#define PF_IO_WORKER_ 0x10ULL	/* task flags in /proc/TID/stat: a kernel io_uring worker */
#define FUTEX_TID_MASK_ 0x3fffffffu
#define ROBUST_LIST_LIMIT_ 2048	/* as the kernel: a longer (or looping) list is not walked further */

/* the tids of /proc/PID/task, main thread included; returns their number (or -errno) */
static int list_tasks(pid_t pid, pid_t **out)
{
	char fn[64];
	snprintf(fn, sizeof fn, "/proc/%d/task", pid);
	DIR *d = opendir(fn);
	if (!d) return fail(errno == ENOENT ? ESRCH : errno, "opendir %s: %s", fn, strerror(errno));
	int n = 0, cap = 16;
	pid_t *v = malloc(cap * sizeof *v);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!isdigit(de->d_name[0])) continue;
		if (n == cap) { cap *= 2; v = realloc(v, cap * sizeof *v); }
		v[n++] = atoi(de->d_name);
	}
	closedir(d);
	*out = v;
	return n;
}

static int same_field(const char *a, const char *b, const char *key)
{
	char va[512], vb[512];
	int ra = status_field(a, key, va, sizeof va), rb = status_field(b, key, vb, sizeof vb);
	return ra == rb && (ra || !strcmp(va, vb));
}

static int same_ns(pid_t pid, pid_t tid, const char *ns)
{
	char a[64], b[64];
	struct stat sa, sb;
	snprintf(a, sizeof a, "/proc/%d/task/%d/ns/%s", pid, pid, ns);
	snprintf(b, sizeof b, "/proc/%d/task/%d/ns/%s", pid, tid, ns);
	if (stat(a, &sa) || stat(b, &sb)) return 1;
	return sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

static const char *nss[] = { "mnt", "pid_for_children", "net", "user", "ipc", "uts", "cgroup", "time_for_children" };

/* the reasons thread tid cannot move, compared with the main thread (whose status is ms) */
static int thread_reasons(pid_t pid, pid_t tid, const char *ms, int print)
{
	static char ts[8192];
	int n = 0;
	if (task_status(pid, tid, ts, sizeof ts)) return 0;	/* gone */
	unsigned long long f[42];
	int sf = stat_fields(tid, f, 42);
	/* the kernel's io_uring workers (iou-sqp-*, iou-wrk-*) live in the thread group of a process
	 * using io_uring: they share nothing the way pthreads do and cannot be stopped or made again */
	if (sf == 0 && (f[9] & PF_IO_WORKER_)) {
		char comm[32] = "";
		status_field(ts, "Name", comm, sizeof comm);
		return reason(print, "io-uring", "thread %d (%s) is a kernel io_uring worker: the process uses io_uring", tid, comm);
	}
	if (sf == 0 && (f[41] == 1 || f[41] == 2 || f[41] == 6))
		n += reason(print, "realtime", "thread %d uses real-time scheduling (policy %llu)", tid, f[41]);
	char v[64];
	if (!status_field(ts, "TracerPid", v, sizeof v) && atoi(v) != 0) n += reason(print, "traced", "thread %d is traced by pid %d", tid, atoi(v));
	/* threads made with clone() flags other than pthread's, or that unshared since */
	if (syscall(SYS_kcmp, pid, tid, KCMP_FILES_, 0, 0) != 0) n += reason(print, "thread-unshared", "thread %d has a descriptor table of its own", tid);
	if (syscall(SYS_kcmp, pid, tid, KCMP_FS_, 0, 0) != 0) n += reason(print, "thread-unshared", "thread %d has a cwd/root/umask of its own", tid);
	if (syscall(SYS_kcmp, pid, tid, KCMP_SYSVSEM_, 0, 0) != 0) n += reason(print, "thread-unshared", "thread %d has a SysV semaphore undo list of its own", tid);
	if (!same_field(ms, ts, "Uid") || !same_field(ms, ts, "Gid") || !same_field(ms, ts, "Groups") || !same_field(ms, ts, "CapEff"))
		n += reason(print, "thread-creds", "thread %d has credentials of its own", tid);
	if (!same_field(ms, ts, "Seccomp") || !same_field(ms, ts, "Seccomp_filters") || !same_field(ms, ts, "NoNewPrivs"))
		n += reason(print, "thread-seccomp", "thread %d has seccomp filters or no_new_privs of its own", tid);
	for (unsigned k = 0; k < sizeof nss / sizeof *nss; k++)
		if (!same_ns(pid, tid, nss[k])) n += reason(print, "namespace", "thread %d is in a %s namespace of its own", tid, nss[k]);
	return n;
}

int threads_check(pid_t pid, int print)
{
	pid_t *tids;
	int nt = list_tasks(pid, &tids), n = 0;
	if (nt < 0) { clear_err(); return 0; }
	if (nt <= 1) { free(tids); return 0; }
	if (nt > MAX_THREADS) n += reason(print, "threads", "process has %d threads (at most %d can move)", nt, MAX_THREADS);
	if (proc_state(pid) == 'Z') {	/* nothing left of it to compare the others with */
		free(tids);
		return n + reason(print, "leader-exited", "its main thread has exited while %d other thread%s run%s on", nt - 1, nt > 2 ? "s" : "", nt > 2 ? "" : "s");
	}
	static char ms[8192];
	if (task_status(pid, pid, ms, sizeof ms)) { free(tids); return n; }
	for (int i = 0; i < nt && n < 32; i++) {
		if (tids[i] == pid) continue;
		/* a thread on its way out has already let go of its files, fs and semaphores: a
		 * difference counts only if it lasts while the thread does (up to 200 ms) */
		int k = thread_reasons(pid, tids[i], ms, 0);
		for (int tries = 0; k && tries < 40; tries++) {
			usleep(5000);
			k = thread_reasons(pid, tids[i], ms, 0);
		}
		if (k) n += thread_reasons(pid, tids[i], ms, print);
	}
	free(tids);
	return n;
}

static struct tracee *held(struct tracee *t, pid_t tid)
{
	for (int i = 0; i < t->nthr; i++) if (t->thr[i].pid == tid) return &t->thr[i];
	return NULL;
}

/* waits for a seized, interrupted thread to stop; signals that come first are kept for later.
 * A thread that exits meanwhile is marked dead (not an error). */
static int stop_wait(struct tracee *tt)
{
	for (;;) {
		int st;
		pid_t w = waitpid(tt->pid, &st, __WALL);
		if (w < 0) {
			if (errno == EINTR) continue;
			return fail(errno, "waitpid(%d): %s", tt->pid, strerror(errno));
		}
		if (WIFEXITED(st) || WIFSIGNALED(st)) { tt->dead = 1; return 0; }
		int sig = WSTOPSIG(st), ev = st >> 16;
		if (ev == PTRACE_EVENT_STOP) {
			if (sig != SIGTRAP) return fail(EAGAIN, "thread %d is stopped (job control)", tt->pid);
			break;
		}
		if (ev == 0) tracee_pending(tt, sig, NULL);
		if (ptrace(PTRACE_CONT, tt->pid, 0, 0)) return fail(errno, "PTRACE_CONT %d: %s", tt->pid, strerror(errno));
	}
	if (ptrace(PTRACE_GETREGS, tt->pid, 0, &tt->regs0)) return fail(errno, "PTRACE_GETREGS %d: %s", tt->pid, strerror(errno));
	if (ptrace(PTRACE_GETSIGMASK, tt->pid, 8, &tt->mask0)) return fail(errno, "PTRACE_GETSIGMASK %d: %s", tt->pid, strerror(errno));
	return 0;
}

/* Is task tid gone, dead, or on its way out (PF_EXITING in the flags of its stat)? */
static int exiting(pid_t tid)
{
	unsigned long long f[10];
	if (stat_fields(tid, f, 10)) return 1;
	return f[3] == 'Z' || f[3] == 'X' || (f[9] & 0x4);
}

/* Threads seen gone or exiting by a freeze (not held, not looked for again: an exiting thread may
 * stay listed a while). */
struct gone { pid_t tid[256]; int n; };

static int was_gone(const struct gone *g, pid_t tid)
{
	for (int i = 0; i < g->n; i++) if (g->tid[i] == tid) return 1;
	return 0;
}

/* seizes and stops the threads of /proc/PID/task that t does not hold yet; returns how many it
 * found (held now, or gone or exiting: either may have made a thread before it stopped) */
static int seize_new(struct tracee *t, struct gone *g)
{
	pid_t *tids;
	int nt = list_tasks(t->pid, &tids), first = t->nthr, e = 0, found = 0;
	if (nt < 0) return nt;
	for (int i = 0; i < nt && !e; i++) {
		pid_t tid = tids[i];
		if (tid == t->pid || held(t, tid) || was_gone(g, tid)) continue;
		found++;
		if (t->nthr >= MAX_THREADS) { e = fail(ENOTSUP, "more than %d threads", MAX_THREADS); break; }
		if (ptrace(PTRACE_SEIZE, tid, 0, SEIZE_OPTS)) {
			/* it has exited meanwhile (ESRCH), or it is exiting (the kernel refuses to attach to it) */
			if (errno == ESRCH || (errno == EPERM && exiting(tid))) { if (g->n < 256) g->tid[g->n++] = tid; continue; }
			e = fail(errno, "PTRACE_SEIZE thread %d: %s", tid, strerror(errno));
			break;
		}
		t->thr = realloc(t->thr, (t->nthr + 1) * sizeof *t->thr);
		struct tracee *tt = &t->thr[t->nthr++];
		memset(tt, 0, sizeof *tt);
		tt->pid = tid;
		tt->memfd = t->memfd;
		if (ptrace(PTRACE_INTERRUPT, tid, 0, 0)) e = fail(errno, "PTRACE_INTERRUPT thread %d: %s", tid, strerror(errno));
	}
	free(tids);
	/* all are interrupted first, then waited for: they stop about together. Each one seized is
	 * waited for even after an error, so that it can be let go as it was. */
	for (int i = first; i < t->nthr; i++) {
		int e2 = stop_wait(&t->thr[i]);
		if (!e) e = e2;
	}
	int k = first;
	for (int i = first; i < t->nthr; i++) {
		if (!t->thr[i].dead) t->thr[k++] = t->thr[i];
		else if (g->n < 256) g->tid[g->n++] = t->thr[i].pid;
	}
	t->nthr = k;
	return e ? e : found;
}

int threads_freeze(struct tracee *t)
{
	/* a thread running while others were seized may have made a new one, and so may one that
	 * exited before it stopped: scan again until a scan finds no thread it had not seen (everyone
	 * known is stopped or gone then, so nobody can make more) */
	struct gone g = { .n = 0 };
	for (int round = 0; round < 64; round++) {
		int found = seize_new(t, &g);
		if (found <= 0) return found;
	}
	return fail(EAGAIN, "threads of %d keep appearing", t->pid);
}

void threads_release(struct tracee *t)
{
	for (int i = 0; i < t->nthr; i++) {
		struct tracee *tt = &t->thr[i];
		if (tt->dead) continue;
		ptrace(PTRACE_DETACH, tt->pid, 0, 0);
		sigq_resend(tt, t->pid, 0);
	}
	free(t->thr);
	t->thr = NULL;
	t->nthr = 0;
}

int threads_dump(struct tracee *t, uint64_t scratch, struct image_thread **out, uint64_t *xfeatures)
{
	*out = NULL;
	*xfeatures = 0;
	if (!t->nthr) return 0;
	struct image_thread *its = calloc(t->nthr, sizeof *its);
	if (!its) return fail(ENOMEM, "no memory for %d threads", t->nthr);
	int e = 0;
	for (int i = 0; i < t->nthr && !e; i++) {
		struct tracee *tt = &t->thr[i];
		tt->sc_ip = t->sc_ip;
		tt->memfd = t->memfd;
		e = dump_thread(tt, scratch, &its[i].th, its[i].xs, &its[i].xlen);
		if (e) break;
		uint64_t xf;
		memcpy(&xf, its[i].xs + 464, 8);
		*xfeatures |= xf;
	}
	if (e) { free(its); return e; }
	*out = its;
	return 0;
}

int threads_exit(struct tracee *t, int *touched)
{
	/* the threads the dump stopped, or a failed restore made, plus any not held yet */
	struct gone g = { .n = 0 };
	int e = seize_new(t, &g);
	if (e < 0) return e;
	e = 0;
	for (int i = 0; i < t->nthr && !e; i++) {
		struct tracee *tt = &t->thr[i];
		if (tt->dead) continue;
		*touched = 1;
		uint64_t all = ~0ULL;
		if (ptrace(PTRACE_SETSIGMASK, tt->pid, 8, &all)) { e = fail(errno, "PTRACE_SETSIGMASK %d: %s", tt->pid, strerror(errno)); break; }
		/* an rseq area may not be read on the way out once the memory is gone */
		struct { uint64_t ptr; uint32_t size, sig, flags, pad; } rs = { 0 };
		tt->sc_ip = t->sc_ip;
		if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, tt->pid, sizeof rs, &rs) > 0 && rs.ptr)
			if ((e = INJ(tt, NULL, NR_RSEQ, rs.ptr, rs.size, 1 /* RSEQ_FLAG_UNREGISTER */, rs.sig, 0, 0))) break;
		struct user_regs_struct r = tt->regs0;
		r.rip = t->sc_ip; r.rax = SYS_exit; r.rdi = 0; r.orig_rax = -1;
		if (ptrace(PTRACE_SETREGS, tt->pid, 0, &r) || ptrace(PTRACE_CONT, tt->pid, 0, 0)) e = fail(errno, "ending thread %d: %s", tt->pid, strerror(errno));
		tt->dead = 2;	/* on its way out */
	}
	for (int i = 0; i < t->nthr; i++) {
		struct tracee *tt = &t->thr[i];
		if (tt->dead != 2) continue;
		for (;;) {
			int st;
			pid_t w = waitpid(tt->pid, &st, __WALL);
			if (w < 0 && errno == EINTR) continue;
			if (w < 0 || WIFEXITED(st) || WIFSIGNALED(st)) break;
			ptrace(PTRACE_CONT, tt->pid, 0, 0);
		}
		tt->dead = 1;
	}
	if (e) return e;
	free(t->thr);
	t->thr = NULL;
	t->nthr = 0;
	return 0;
}

/* ---------- restore ---------- */

/* a futex word that holds tid `from` (robust lock owner) gets `to`, its flag bits kept */
static void patch_word(struct tracee *t, uint64_t addr, pid_t from, pid_t to)
{
	uint32_t v;
	if (mem_read(t, addr, &v, 4) || (v & FUTEX_TID_MASK_) != (uint32_t)from) return;
	v = (v & ~FUTEX_TID_MASK_) | (uint32_t)to;
	mem_write(t, addr, &v, 4);
}

/* A thread restored under another tid: the words the kernel itself wrote the tid into get the
 * new one: the clear_child_tid word (glibc's struct pthread `tid`, which pthread_kill, pthread_
 * getname_np and mutex ownership checks use) when it holds the old tid, and the owner field of
 * each robust futex on its robust list. Other copies of the tid in memory are not known. */
static void patch_tid(struct tracee *t, const struct img_thread *th, pid_t now)
{
	uint32_t v;
	if (th->clear_tid && !mem_read(t, th->clear_tid, &v, 4) && v == (uint32_t)th->tid) {
		v = now;
		mem_write(t, th->clear_tid, &v, 4);
	}
	struct { uint64_t next; int64_t off; uint64_t pending; } head;
	if (th->robust_ptr && th->robust_len >= sizeof head && !mem_read(t, th->robust_ptr, &head, sizeof head)) {
		uint64_t e = head.next & ~1ULL;
		for (int k = 0; k < ROBUST_LIST_LIMIT_ && e && e != th->robust_ptr; k++) {
			patch_word(t, e + head.off, th->tid, now);
			if (mem_read(t, e, &e, 8)) break;
			e &= ~1ULL;
		}
		if (head.pending & ~1ULL) patch_word(t, (head.pending & ~1ULL) + head.off, th->tid, now);
	}
	clear_err();	/* a list the program left half-written is not an error of the restore */
}

#define CLONE_THREAD_FLAGS (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS)

/* clone3 injected into the main thread (stopped, with PTRACE_O_TRACECLONE): a new thread of the
 * process, with the tid `want` if it is free (0: any). Without CAP_SYS_ADMIN in the process (a
 * non-root original coming home) set_tid is refused; then ns_last_pid is set to want-1 by this
 * helper and a plain clone3 is checked for having got it. */
static int clone_thread(struct tracee *t, uint64_t scr, const struct img_thread *th, pid_t want, pid_t *got, pid_t *host)
{
	t->event_pid = 0;
	struct clone_args_ ca = { 0 };
	ca.flags = CLONE_THREAD_FLAGS | (th->clear_tid ? CLONE_CHILD_CLEARTID : 0);
	ca.child_tid = th->clear_tid;
	ca.tls = th->regs.fs_base;
	int32_t tidv = want;
	long rv = -EEXIST;
	int e = mem_write(t, scr + 128, &tidv, sizeof tidv);
	if (want) {
		ca.set_tid = scr + 128;
		ca.set_tid_size = 1;
		if (!e) e = mem_write(t, scr, &ca, sizeof ca);
		if (!e) e = inject(t, NR_CLONE3, scr, sizeof ca, 0, 0, 0, 0, &rv);
		if (e) return e;
		ca.set_tid = ca.set_tid_size = 0;
	}
	int lfd = -1;
	if (rv == -EPERM) {
		lfd = open("/proc/sys/kernel/ns_last_pid", O_RDWR | O_CLOEXEC);
		if (lfd >= 0) {
			flock(lfd, LOCK_EX);
			char b[16];
			int n = snprintf(b, sizeof b, "%d", want - 1);
			if (write(lfd, b, n) != n) { close(lfd); lfd = -1; }
		}
	}
	if (!want || rv == -EEXIST || rv == -EPERM || rv == -EINVAL) {
		e = mem_write(t, scr, &ca, sizeof ca);
		if (!e) e = inject(t, NR_CLONE3, scr, sizeof ca, 0, 0, 0, 0, &rv);
	}
	if (lfd >= 0) close(lfd);
	if (e) return e;
	if (rv < 0) return fail(-rv, "injected clone3 failed: %s", strerror(-rv));
	/* clone3 returns the tid in the process's own pid namespace (a guest's, restore.c
	 * guest_pidns); this helper waits for and traces it by the tid it sees (the event's) */
	*got = rv;
	*host = t->event_pid > 0 ? t->event_pid : rv;
	return 0;
}

int threads_create(struct tracee *t, struct image *im, uint64_t scr)
{
	int n = im->nthreads - 1, kept = 0, e = 0;
	if (n > 0) {
		if (ptrace(PTRACE_SETOPTIONS, t->pid, 0, SEIZE_OPTS | PTRACE_O_EXITKILL | PTRACE_O_TRACECLONE))
			return fail(errno, "PTRACE_SETOPTIONS: %s", strerror(errno));
		t->thr = calloc(n, sizeof *t->thr);
		if (!t->thr) return fail(ENOMEM, "no memory for %d threads", n);
	}
	for (int i = 1; i <= n && !e; i++) {
		const struct image_thread *it = &im->threads[i];
		pid_t want = t->keep_tids ? it->th.tid : 0, vgot = 0, got = 0;
		if ((e = clone_thread(t, scr, &it->th, want, &vgot, &got))) break;
		/* it stops before its first instruction (SIGSTOP, or PTRACE_EVENT_STOP under SEIZE) */
		struct tracee *tt = &t->thr[t->nthr++];
		memset(tt, 0, sizeof *tt);
		tt->pid = got;
		tt->vpid = vgot;
		tt->memfd = t->memfd;
		tt->sc_ip = t->sc_ip;
		for (;;) {
			int st;
			pid_t w = waitpid(got, &st, __WALL);
			if (w < 0 && errno == EINTR) continue;
			if (w < 0) { e = fail(errno, "waitpid(%d): %s", got, strerror(errno)); break; }
			if (WIFSTOPPED(st)) break;
			tt->dead = 1;
			e = fail(ESRCH, "new thread %d ended at once", got);
			break;
		}
		if (!e && ptrace(PTRACE_GETREGS, got, 0, &tt->regs0)) e = fail(errno, "PTRACE_GETREGS %d: %s", got, strerror(errno));
		if (!e && vgot == want) kept++;
		else if (!e && t->keep_tids == 2) e = fail(EEXIST, "tid %d is taken", want);
		if (!e) e = restore_thread(tt, it, scr);
	}
	if (n > 0 && !t->dead) ptrace(PTRACE_SETOPTIONS, t->pid, 0, SEIZE_OPTS | PTRACE_O_EXITKILL);
	if (e) return e;
	for (int i = 0; i <= n; i++) {
		/* the ids the process itself sees (in its own pid namespace) */
		struct tracee *ti = i ? &t->thr[i - 1] : t;
		pid_t now = ti->vpid ? ti->vpid : ti->pid;
		if (now != im->threads[i].th.tid) patch_tid(t, &im->threads[i].th, now);
	}
	ctlf("STAT threads=%d tids_kept=%d", im->nthreads, kept + ((t->vpid ? t->vpid : t->pid) == im->threads[0].th.tid));
	return 0;
}

int threads_finish(struct tracee *t, struct image *im, int eintr_policy)
{
	int e = 0;
	for (int i = 0; i < t->nthr && !e; i++) e = restore_thread_regs(&t->thr[i], &im->threads[i + 1], eintr_policy);
	return e;
}

void threads_run(struct tracee *t)
{
	int left = 0;
	for (int i = 0; i < t->nthr; i++) {
		struct tracee *tt = &t->thr[i];
		if (ptrace(PTRACE_DETACH, tt->pid, 0, 0)) {
			/* gone (killed meanwhile, the process with it): still ours to reap, or the main
			 * thread's end is never reported (it waits for the rest of its group); kept in
			 * the list for the caller's reaping (keep.c) */
			if (!tt->dead) t->thr[left++] = *tt;
			continue;
		}
	}
	t->nthr = left;
	if (!left) { free(t->thr); t->thr = NULL; }
}

