/* Multi-threaded subject. NWORKERS workers compute in rounds under the main thread, which prints
 * one line per round; between rounds the workers wait on a condition variable. Beside them:
 * a sleeper (relative and absolute nanosleeps), a waiter (pthread_cond_timedwait on a far
 * deadline), a locker (blocked in pthread_mutex_lock on a mutex main holds) and, given a FIFO, a
 * reader blocked in read() on it until its end. At the end the main thread checks what each
 * thread has of its own and prints it: TLS, name (pthread_getname_np goes through the thread's
 * tid), nice value and policy, signal mask (a process-directed SIGUSR2 reaches the one worker
 * that does not block it), alternate signal stack (worker 0's SIGUSR1 handler runs on it), rseq
 * (kept registered: the kernel rewrites the scribbled cpu_id_start after each sleep), robust
 * futex list (workers 3, 7, ... exit holding a robust mutex: main must see EOWNERDEAD) and
 * clear_child_tid (pthread_join returns).
 * usage: mthreads NWORKERS ROUNDS ROUND_USEC EXIT_CODE [FIFO] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/syscall.h>

#define MAXW 64
static int nw, rounds;
static long round_usec;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER, big = PTHREAD_MUTEX_INITIALIZER, wm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go = PTHREAD_COND_INITIALIZER, alldone = PTHREAD_COND_INITIALIZER, wc;
static int gen, done, quit, wflag;
static uint64_t res[MAXW];
static pthread_mutex_t robust[MAXW];
static volatile int usr1_n, usr2_n;

struct report { uint64_t acc; int tls_ok, nice, policy, onstack, usr2, rseq_lost; char name[16]; };
static struct report rep[MAXW];

static __thread uint64_t tls_acc;
static __thread int tls_id = -1;
static __thread volatile int tls_onstack, tls_usr2;

static void on_usr1(int s)
{
	(void)s;
	stack_t ss;
	sigaltstack(NULL, &ss);
	tls_onstack = (ss.ss_flags & SS_ONSTACK) ? 1 : 0;
	__atomic_add_fetch(&usr1_n, 1, __ATOMIC_SEQ_CST);
}

static void on_usr2(int s)
{
	(void)s;
	tls_usr2 = 1;
	__atomic_add_fetch(&usr2_n, 1, __ATOMIC_SEQ_CST);
}

static int rseq_sleep(void)
{
	volatile struct rseq *rs = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
	if (!__rseq_size) return 0;
	rs->cpu_id_start = 0xdeadbeef;
	/* the kernel rewrites it on the way back to user space after the task was switched out; a
	 * sleep that returned without a switch (a busy machine can do that) is no proof: a few tries */
	for (int k = 0; k < 5; k++) {
		usleep(200);
		if (rs->cpu_id_start != 0xdeadbeef) return 0;
	}
	return 1;
}

static void *worker(void *a)
{
	int i = (int)(intptr_t)a, seen = 0, lost = 0;
	char nm[16];
	tls_id = i;
	snprintf(nm, sizeof nm, "w%d", i);
	pthread_setname_np(pthread_self(), nm);
	if (i % 4 == 1) setpriority(PRIO_PROCESS, syscall(SYS_gettid), 7);
	if (i % 4 == 2) { struct sched_param sp = { 0 }; pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp); }
	if (i % 4 == 3) pthread_mutex_lock(&robust[i]);
	if (i == 0) {
		stack_t ss = { .ss_sp = malloc(65536), .ss_size = 65536, .ss_flags = 0 };
		sigaltstack(&ss, NULL);
	}
	if (i == nw - 1) {
		sigset_t s;
		sigemptyset(&s);
		sigaddset(&s, SIGUSR2);
		pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	}
	double x = 1.0 + i;
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)i;
	for (;;) {
		pthread_mutex_lock(&m);
		while (gen == seen && !quit) pthread_cond_wait(&go, &m);
		if (quit) break;
		seen = gen;
		pthread_mutex_unlock(&m);
		for (int k = 0; k < 20000; k++) {
			x = x * 0.9999999 + (double)((k ^ i) & 255) * 1e-3;
			h = (h ^ (uint64_t)(k + seen)) * 1099511628211ULL;
		}
		uint64_t xb;
		memcpy(&xb, &x, 8);
		tls_acc = tls_acc * 31 + (h ^ xb);
		lost += rseq_sleep();
		pthread_mutex_lock(&m);
		res[i] = h ^ xb;
		if (++done == nw) pthread_cond_signal(&alldone);
		pthread_mutex_unlock(&m);
	}
	struct report *r = &rep[i];
	r->acc = tls_acc;
	r->tls_ok = tls_id == i;
	r->nice = getpriority(PRIO_PROCESS, syscall(SYS_gettid));
	r->policy = sched_getscheduler(0);
	r->onstack = tls_onstack;
	r->usr2 = tls_usr2;
	r->rseq_lost = lost;
	pthread_getname_np(pthread_self(), r->name, sizeof r->name);
	pthread_mutex_unlock(&m);
	return NULL;	/* workers 3, 7, ... exit holding their robust mutex */
}

static int ticks;
static void *sleeper(void *a)
{
	(void)a;
	for (int k = 0; k < rounds; k++) {
		struct timespec ts = { round_usec / 1000000, round_usec % 1000000 * 1000 };
		if (k % 2) {
			while (nanosleep(&ts, &ts) && errno == EINTR);
		} else {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			now.tv_nsec += ts.tv_nsec;
			now.tv_sec += ts.tv_sec + now.tv_nsec / 1000000000;
			now.tv_nsec %= 1000000000;
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &now, NULL) == EINTR);
		}
		ticks++;
	}
	return NULL;
}

static int woke, timedout;
static void *waiter(void *a)
{
	(void)a;
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += 3600;
	pthread_mutex_lock(&wm);
	while (!wflag) if (pthread_cond_timedwait(&wc, &wm, &dl) == ETIMEDOUT) { timedout = 1; break; }
	woke = wflag;
	pthread_mutex_unlock(&wm);
	return NULL;
}

static int locked;
static void *locker(void *a)
{
	(void)a;
	pthread_mutex_lock(&big);
	locked = 1;
	pthread_mutex_unlock(&big);
	return NULL;
}

static const char *fifo;
static uint64_t rbytes, rsum = 1469598103934665603ULL;
static void *reader(void *a)
{
	(void)a;
	int fd = open(fifo, O_RDONLY | O_CLOEXEC);
	if (fd < 0) { perror(fifo); return NULL; }
	unsigned char b[4096];
	for (;;) {
		ssize_t n = read(fd, b, sizeof b);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) break;
		for (ssize_t k = 0; k < n; k++) rsum = (rsum ^ b[k]) * 1099511628211ULL;
		rbytes += n;
	}
	close(fd);
	return NULL;
}

static int join(pthread_t t, const char *what)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 20;
	int e = pthread_timedjoin_np(t, NULL, &dl);
	if (e) printf("join %s: %s\n", what, strerror(e));
	return e;
}

static void await_count(volatile int *n, int want, const char *what)
{
	for (int k = 0; k < 5000 && *n < want; k++) usleep(1000);
	if (*n < want) printf("%s: not delivered\n", what);
}

int main(int argc, char **argv)
{
	if (argc < 5) { fprintf(stderr, "usage: mthreads NWORKERS ROUNDS ROUND_USEC EXIT_CODE [FIFO]\n"); return 2; }
	nw = atoi(argv[1]);
	rounds = atoi(argv[2]);
	round_usec = atol(argv[3]);
	int code = atoi(argv[4]);
	fifo = argc > 5 ? argv[5] : NULL;
	if (nw < 1 || nw > MAXW) return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&wc, &ca);
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	for (int i = 0; i < nw; i++) pthread_mutex_init(&robust[i], &ma);
	struct sigaction sa = { 0 };
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK | SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR2, &sa, NULL);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &s, NULL);	/* inherited by every thread; one worker unblocks it */

	pthread_mutex_lock(&big);
	pthread_t w[MAXW], ts, tw, tl, tr;
	for (int i = 0; i < nw; i++) pthread_create(&w[i], NULL, worker, (void *)(intptr_t)i);
	pthread_create(&ts, NULL, sleeper, NULL);
	pthread_create(&tw, NULL, waiter, NULL);
	pthread_create(&tl, NULL, locker, NULL);
	if (fifo) pthread_create(&tr, NULL, reader, NULL);

	for (int r = 0; r < rounds; r++) {
		pthread_mutex_lock(&m);
		done = 0;
		gen++;
		pthread_cond_broadcast(&go);
		while (done < nw) pthread_cond_wait(&alldone, &m);
		uint64_t hh = 0;
		for (int i = 0; i < nw; i++) hh = (hh ^ res[i]) * 1099511628211ULL;
		pthread_mutex_unlock(&m);
		printf("round %d %016llx\n", r, (unsigned long long)hh);
		usleep(round_usec);
	}

	printf("names");
	for (int i = 0; i < nw; i++) {
		char nm[16] = "?";
		int e = pthread_getname_np(w[i], nm, sizeof nm);
		printf(" %s", e ? strerror(e) : nm);
	}
	printf("\n");
	pthread_kill(w[0], SIGUSR1);
	await_count(&usr1_n, 1, "SIGUSR1 to w0");
	kill(getpid(), SIGUSR2);
	await_count(&usr2_n, 1, "SIGUSR2 to the process");

	pthread_mutex_lock(&m);
	quit = 1;
	pthread_cond_broadcast(&go);
	pthread_mutex_unlock(&m);
	for (int i = 0; i < nw; i++) {
		char nm[16];
		snprintf(nm, sizeof nm, "w%d", i);
		if (join(w[i], nm)) continue;
		struct report *p = &rep[i];
		printf("w%d acc=%016llx tls=%d name=%s nice=%d policy=%d onstack=%d usr2=%d rseq=%s\n", i, (unsigned long long)p->acc, p->tls_ok, p->name,
		       p->nice, p->policy, p->onstack, p->usr2, !__rseq_size ? "none" : p->rseq_lost ? "LOST" : "ok");
	}
	for (int i = 3; i < nw; i += 4) {
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += 5;
		int e = pthread_mutex_timedlock(&robust[i], &dl);
		printf("robust w%d: %s\n", i, e == EOWNERDEAD ? "owner died" : e ? strerror(e) : "taken");
		if (e == EOWNERDEAD) pthread_mutex_consistent(&robust[i]);
		if (e == EOWNERDEAD || !e) pthread_mutex_unlock(&robust[i]);
	}
	pthread_mutex_lock(&wm);
	wflag = 1;
	pthread_cond_signal(&wc);
	pthread_mutex_unlock(&wm);
	pthread_mutex_unlock(&big);
	if (!join(tw, "waiter")) printf("waiter woke=%d timedout=%d\n", woke, timedout);
	if (!join(tl, "locker")) printf("locker locked=%d\n", locked);
	if (!join(ts, "sleeper")) printf("sleeper ticks=%d\n", ticks);
	if (fifo && !join(tr, "reader")) printf("reader bytes=%llu sum=%016llx\n", (unsigned long long)rbytes, (unsigned long long)rsum);
	printf("done\n");
	return code;
}
