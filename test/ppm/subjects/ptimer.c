/* POSIX timers: a periodic CLOCK_MONOTONIC timer signalling SIGRTMIN with a sigev value, a
 * SIGEV_THREAD_ID timer signalling the main thread with SIGUSR1, and a SIGEV_NONE timer an hour
 * away. Handlers count signals and check si_code SI_TIMER and the value; timer ids are used after
 * every move (timer_gettime on the old ids must work).
 * usage: ptimer ROUNDS SIGNALS_PER_ROUND STATUS */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <signal.h>
#include <errno.h>
#include <time.h>
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

int main(int argc, char **argv)
{
	if (argc < 4) return 2;
	int rounds = atoi(argv[1]), per = atoi(argv[2]);
	struct sigaction sa = { .sa_sigaction = on_rt, .sa_flags = SA_SIGINFO | SA_RESTART };
	sigaction(SIGRTMIN, &sa, NULL);
	sa.sa_sigaction = on_usr;
	sigaction(SIGUSR1, &sa, NULL);
	timer_t a, b, c, gap;
	struct sigevent ea = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN, .sigev_value.sival_int = 0x5eed };
	struct sigevent eb = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGUSR1 };
	eb._sigev_un._tid = syscall(SYS_gettid);
	struct sigevent ec = { .sigev_notify = SIGEV_NONE };
	/* a deleted timer leaves a gap in the ids */
	if (timer_create(CLOCK_MONOTONIC, &ec, &gap) || timer_create(CLOCK_MONOTONIC, &ea, &a) || timer_delete(gap) ||
	    timer_create(CLOCK_MONOTONIC, &eb, &b) || timer_create(CLOCK_BOOTTIME, &ec, &c))
		die("timer_create");
	struct itimerspec ia = { { 0, 20000000 }, { 0, 20000000 } }, ib = { { 0, 50000000 }, { 0, 50000000 } }, ic = { { 0, 0 }, { 3600, 0 } };
	if (timer_settime(a, 0, &ia, NULL) || timer_settime(b, 0, &ib, NULL) || timer_settime(c, 0, &ic, NULL)) die("timer_settime");
	for (int i = 0; i < rounds; i++) {
		while (rt < per * (i + 1)) pause();
		struct itimerspec g;
		if (timer_gettime(a, &g) || g.it_interval.tv_nsec != 20000000) die("timer a lost");
		if (timer_gettime(c, &g) || g.it_value.tv_sec < 3000 || g.it_value.tv_sec >= 3600) die("timer c remaining time");
		printf("round %d\n", i);
		fflush(stdout);
	}
	/* after the moves: the timers' own signals, with their values */
	int rt0 = rt_timer, usr0 = usr_timer;
	while (rt_timer < rt0 + 5 || usr_timer < usr0 + 2) pause();
	if (!rt_ok) die("sigev value lost");
	printf("timers ok\n");
	return atoi(argv[3]);
}
