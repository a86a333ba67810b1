/* Injected calls in batches: a restore makes many calls in the process that do not depend on one
 * another's results (unmapping what was there, mapping its regions, protections, signal actions).
 * One at a time, each costs the helper and the process two context switches (inject.c); in a
 * batch, a few instructions of code put into the process (below) make them one after the other
 * and stop once, at the end or at the first call that fails (docs/ppm.md "Injection").
 *
 * The batch area is a range of the process's memory (BATCH_AREA bytes, e.g. after the restore's
 * scratch area): its first page the code (read and execute only), then the table of calls, then
 * the strings and data they point at. Each table entry is nine words: the call number, its six
 * arguments, flags, and the result the code writes. Flags: B_ARG(i), argument i (0-5) is the
 * result of the last call flagged B_SAVE (a descriptor opened, then mapped and closed); B_ANY, a
 * failure of this call does not stop the batch; B_CLEANUP, this call is made (alone) also when a
 * call before it in its chain failed (the close of that descriptor). Without the code page (it could not be made
 * executable, or HPC_PPM_BATCH=off) each call is injected alone, with the same meaning. */
#include "threads.h"

/* the code, position independent: %r12 the table, %r13 the number of calls, %r15 the saved
 * result; stops with int3 after the last call or the first that fails (not B_ANY) */
__asm__(
	".pushsection .rodata\n"
	".globl hpc_batch_code\n"
	"hpc_batch_code:\n"
	"1:	movq 56(%r12), %rbx\n"
	"	movq (%r12), %rax\n"
	"	movq 8(%r12), %rdi\n"
	"	testq $1, %rbx\n"
	"	cmovnzq %r15, %rdi\n"
	"	movq 16(%r12), %rsi\n"
	"	testq $2, %rbx\n"
	"	cmovnzq %r15, %rsi\n"
	"	movq 24(%r12), %rdx\n"
	"	testq $4, %rbx\n"
	"	cmovnzq %r15, %rdx\n"
	"	movq 32(%r12), %r10\n"
	"	testq $8, %rbx\n"
	"	cmovnzq %r15, %r10\n"
	"	movq 40(%r12), %r8\n"
	"	testq $16, %rbx\n"
	"	cmovnzq %r15, %r8\n"
	"	movq 48(%r12), %r9\n"
	"	testq $32, %rbx\n"
	"	cmovnzq %r15, %r9\n"
	"	syscall\n"
	"	movq %rax, 64(%r12)\n"
	"	testq $64, %rbx\n"
	"	cmovnzq %rax, %r15\n"
	"	cmpq $-4095, %rax\n"
	"	jb 2f\n"
	"	testq $128, %rbx\n"
	"	jz 3f\n"
	"2:	addq $72, %r12\n"
	"	decq %r13\n"
	"	jnz 1b\n"
	"3:	int3\n"
	".globl hpc_batch_code_end\n"
	"hpc_batch_code_end:\n"
	".popsection\n");
extern const uint8_t hpc_batch_code[], hpc_batch_code_end[];

#define B_TABLE PAGE				/* the table's offset in the area */
#define B_DATA (B_TABLE + BATCH_MAX * 72)	/* strings and data after it */

/* Sets up a batch over the area at addr (mapped read-write in t, BATCH_AREA bytes): its code page
 * is written and made executable by an injected mprotect; when that fails (or HPC_PPM_BATCH=off)
 * the calls are injected one by one. */
int batch_init(struct batch *b, struct tracee *t, uint64_t addr)
{
	memset(b, 0, sizeof *b);
	b->t = t;
	b->area = addr;
	const char *env = getenv("HPC_PPM_BATCH");
	if (env && !strcmp(env, "off")) return 0;
	size_t len = hpc_batch_code_end - hpc_batch_code;
	int e = mem_write(t, addr, hpc_batch_code, len);
	long rv;
	if (!e) e = inject(t, SYS_mprotect, addr, PAGE, PROT_READ | PROT_EXEC, 0, 0, 0, &rv);
	if (e) return e;	/* (the process is gone, or a synchronous fault) */
	if (rv == 0) b->code = addr;
	return 0;
}

/* A copy of n bytes in the batch's data area, for a call to point at; a full area runs the batch
 * first. 0 with *e set when it cannot be written. */
uint64_t batch_data(struct batch *b, const void *p, size_t n, int *e)
{
	if (B_DATA + n > BATCH_AREA) { *e = fail(ENAMETOOLONG, "no room for %zu bytes in the batch area", n); return 0; }
	if (B_DATA + b->used + n > BATCH_AREA && (*e = batch_run(b))) return 0;
	uint64_t at = b->area + B_DATA + b->used;
	if ((*e = mem_write(b->t, at, p, n))) return 0;
	b->used += (n + 7) & ~7UL;
	return at;
}

static int run_queued(struct batch *b);

/* Queues a call; a full batch is run first. */
int batch_add(struct batch *b, unsigned flags, long nr, const char *name, const long a[6])
{
	if (b->n == BATCH_MAX) {
		/* (its data is written already: the data area is kept, not reused, see batch_run) */
		int e = run_queued(b);
		if (e) return e;
	}
	struct bcall *c = &b->c[b->n++];
	c->w[0] = nr;
	for (int i = 0; i < 6; i++) c->w[1 + i] = a[i];
	c->w[7] = flags;
	c->w[8] = -ENOSYS;	/* not made (a call before it failed) */
	b->name[b->n - 1] = name;
	return 0;
}

/* runs the queued calls in t, at its batch code: the process stops at the int3 after them */
static int run_code(struct batch *b, int n)
{
	struct tracee *t = b->t;
	uint64_t table = b->area + B_TABLE;
	int e = mem_write(t, table, b->c, n * sizeof b->c[0]);
	if (e) return e;
	struct user_regs_struct r = t->regs0;
	r.rip = b->code;
	r.orig_rax = -1;
	r.r12 = table;
	r.r13 = n;
	r.r15 = b->saved;
	r.eflags &= ~0x100UL;	/* no trap flag */
	if (ptrace(PTRACE_SETREGS, t->pid, 0, &r)) return fail(errno, "PTRACE_SETREGS: %s", strerror(errno));
	uint64_t stop_at = b->code + (hpc_batch_code_end - hpc_batch_code);
	int sig = 0;
	for (;;) {
		if (ptrace(PTRACE_CONT, t->pid, 0, 0)) return fail(errno, "PTRACE_CONT: %s", strerror(errno));
		int st;
		if ((e = twait(t, &st))) return e;
		sig = WSTOPSIG(st);
		int ev = st >> 16;
		if (ev) continue;	/* (an event stop of a traced task: go on) */
		siginfo_t si;
		memset(&si, 0, sizeof si);
		ptrace(PTRACE_GETSIGINFO, t->pid, 0, &si);
		if (sig == SIGTRAP && si.si_code == SI_KERNEL) {
			if (ptrace(PTRACE_GETREGS, t->pid, 0, &r)) return fail(errno, "PTRACE_GETREGS: %s", strerror(errno));
			if (r.rip == stop_at) break;
			return fail(EFAULT, "batch of injected calls stopped at %#llx, not at its end", r.rip);
		}
		if ((sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP || sig == SIGSYS) && si.si_code > 0)
			return fail(EFAULT, "synchronous signal %d (code %d, addr %p) during a batch of injected calls: aborted", sig, si.si_code, si.si_addr);
		tracee_pending(t, sig, &si);	/* asynchronous: re-sent later (inject.c) */
	}
	/* the results, from the table */
	for (int i = 0; i < n && !e; i++) e = mem_read(t, table + i * sizeof b->c[0] + 64, &b->c[i].w[8], 8);
	return e;
}

/* the arguments of queued call i, with the saved result where it is flagged B_ARG */
static void args_of(const struct batch *b, int i, long a[6])
{
	for (int k = 0; k < 6; k++) a[k] = (b->c[i].w[7] >> k & 1) ? (long)b->saved : (long)b->c[i].w[1 + k];
}

/* Runs the queued calls (at once, or one by one without the code); the first that fails (not
 * B_ANY) is the error, "injected NAME failed", and the calls after it are not made. */
static int run_queued(struct batch *b)
{
	int n = b->n, e = 0;
	b->n = 0;
	if (!n) return 0;
	if (b->code) {
		double t0 = now_ms();
		e = run_code(b, n);
		g_inject_ms += now_ms() - t0;
		if (e) return e;
		b->t->nbatch++;
	} else {
		for (int i = 0; i < n; i++) {
			long a[6], rv;
			args_of(b, i, a);
			if ((e = inject(b->t, b->c[i].w[0], a[0], a[1], a[2], a[3], a[4], a[5], &rv))) return e;
			b->c[i].w[8] = rv;
			if (b->c[i].w[7] & B_SAVE) b->saved = rv;	/* (for the calls after it in this loop) */
			if (rv < 0 && rv > -4096 && !(b->c[i].w[7] & B_ANY)) break;
		}
	}
	for (int i = 0; i < n; i++) {
		long rv = (long)b->c[i].w[8];
		if (b->code) { b->t->ninject++; b->t->nbatched++; }	/* (one by one, inject counts them) */
		if (b->c[i].w[7] & B_SAVE) b->saved = rv;
		if (rv < 0 && rv > -4096 && !(b->c[i].w[7] & B_ANY)) {
			e = fail(-rv, "injected %s failed: %s", b->name[i], strerror(-rv));
			/* the calls of its chain that undo it (a descriptor opened before it is closed) */
			for (int j = i + 1; j < n && !(b->c[j].w[7] & B_SAVE); j++) {
				if (!(b->c[j].w[7] & B_CLEANUP) || ((long)b->saved < 0 && (long)b->saved > -4096)) continue;
				long a[6], r2;
				args_of(b, j, a);
				inject(b->t, b->c[j].w[0], a[0], a[1], a[2], a[3], a[4], a[5], &r2);
			}
			return e;
		}
	}
	return 0;
}

/* Runs the queued calls; their data area is free again. */
int batch_run(struct batch *b)
{
	int e = run_queued(b);
	b->used = 0;
	return e;
}
