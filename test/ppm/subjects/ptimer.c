/* POSIX timers: a periodic CLOCK_MONOTONIC timer signalling SIGRTMIN with a sigev value, a
 * SIGEV_THREAD_ID timer signalling the main thread with SIGUSR1, another signalling a worker thread
 * with SIGUSR2, and a SIGEV_NONE timer an hour away. Handlers count signals and check si_code
 * SI_TIMER and the value (and that SIGUSR2 comes to the worker, which only sleeps); timer ids are
 * used after every move (timer_gettime on the old ids must work).
 * usage: ptimer ROUNDS SIGNALS_PER_ROUND STATUS */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <signal.h>
#include <errno.h>
#include <time.h>
#include <pthread.h>
#include <sys/syscall.h>

static void die(const char *m) { printf("FAIL %s (errno %d)\n", m, errno); exit(1); }
static volatile int rt, usr, rt_timer, usr_timer;
static volatile int rt_ok = 1;

static void on_rt(int s, siginfo_t *si, void *u)
{
	(void)s; (void)u;
	rt++;
	if (si->si_code == SI_TIMER) { rt_timer++; if (si->si_value.sival_int != 0x5eed) rt_ok = 0; }
}
static void on_usr(int s, siginfo_t *si, void *u) { (void)s; (void)u; usr++; if (si->si_code == SI_TIMER) usr_timer++; }
static __thread int worker;	/* 1 in the worker thread (thread-local: it holds after a restore too) */
static volatile int usr2_worker, usr2_other;
static void on_usr2(int s, siginfo_t *si, void *u) { (void)s; (void)u; if (si->si_code != SI_TIMER) return; if (worker) usr2_worker++; else usr2_other++; }
static volatile pid_t worker_tid;
static void *work(void *a) { (void)a; worker = 1; worker_tid = syscall(SYS_gettid); for (;;) pause(); return NULL; }

int main(int argc, char **argv)
{
	if (argc < 4) return 2;
	int rounds = atoi(argv[1]), per = atoi(argv[2]);
	struct sigaction sa = { .sa_sigaction = on_rt, .sa_flags = SA_SIGINFO | SA_RESTART };
	sigaction(SIGRTMIN, &sa, NULL);
	sa.sa_sigaction = on_usr;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_sigaction = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	pthread_t th;
	if (pthread_create(&th, NULL, work, NULL)) die("pthread_create");
	while (!worker_tid) usleep(1000);
	timer_t a, b, c, d, gap;
	struct sigevent ea = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN, .sigev_value.sival_int = 0x5eed };
	struct sigevent eb = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGUSR1 };
	eb._sigev_un._tid = syscall(SYS_gettid);
	struct sigevent ec = { .sigev_notify = SIGEV_NONE };
	struct sigevent ed = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGUSR2 };
	ed._sigev_un._tid = worker_tid;
	/* a deleted timer leaves a gap in the ids */
	if (timer_create(CLOCK_MONOTONIC, &ec, &gap) || timer_create(CLOCK_MONOTONIC, &ea, &a) || timer_delete(gap) ||
	    timer_create(CLOCK_MONOTONIC, &eb, &b) || timer_create(CLOCK_BOOTTIME, &ec, &c) || timer_create(CLOCK_MONOTONIC, &ed, &d))
		die("timer_create");
	struct itimerspec ia = { { 0, 20000000 }, { 0, 20000000 } }, ib = { { 0, 50000000 }, { 0, 50000000 } }, ic = { { 0, 0 }, { 3600, 0 } };
	if (timer_settime(a, 0, &ia, NULL) || timer_settime(b, 0, &ib, NULL) || timer_settime(c, 0, &ic, NULL) || timer_settime(d, 0, &ib, NULL)) die("timer_settime");
	for (int i = 0; i < rounds; i++) {
		while (rt < per * (i + 1)) pause();
		struct itimerspec g;
		if (timer_gettime(a, &g) || g.it_interval.tv_nsec != 20000000) die("timer a lost");
		if (timer_gettime(c, &g) || g.it_value.tv_sec < 3000 || g.it_value.tv_sec >= 3600) die("timer c remaining time");
		printf("round %d\n", i);
		fflush(stdout);
	}
	/* after the moves: the timers' own signals, with their values */
	int rt0 = rt_timer, usr0 = usr_timer, w0 = usr2_worker;
	while (rt_timer < rt0 + 5 || usr_timer < usr0 + 2 || usr2_worker < w0 + 2) pause();
	if (!rt_ok) die("sigev value lost");
	if (usr2_other) die("the worker's timer signalled another thread");
	printf("timers ok\n");
	return atoi(argv[3]);
}
