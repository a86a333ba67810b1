/* Signal handlers: SIGUSR1 counted by a SA_RESTART|SA_ONSTACK handler on an alternate stack, SIGALRM by an SA_SIGINFO handler with
 * a mask, SIGINT ignored, SIGUSR2 blocked, SIGCHLD default with SA_NOCLDSTOP (its flags matter
 * though its handler is the default), SIGTERM and SIGPIPE left alone (default). Every round raises SIGUSR1 and SIGALRM; at the end
 * the handlers, flags, masks, the blocked set, the alternate stack and a long interval timer
 * (ITIMER_REAL, 1000 s, interval 500 s) are checked against what was installed.
 * usage: sigs ROUNDS DELAY_US EXIT_CODE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <time.h>
#include <errno.h>
#include <sys/time.h>

static volatile sig_atomic_t usr1, alrm, hup, offstack;
static char altstack[65536];
static void on_usr1(int s) { char here; (void)s; usr1++; if (&here < altstack || &here >= altstack + sizeof altstack) offstack++; }
static void on_alrm(int s, siginfo_t *si, void *u) { (void)s; (void)u; if (si->si_signo == SIGALRM) alrm++; }
static void on_hup(int s) { (void)s; hup++; }

/* sleeps until a deadline, whatever signals come in between */
static void nap(long us)
{
	struct timespec d;
	clock_gettime(CLOCK_MONOTONIC, &d);
	d.tv_nsec += us % 1000000 * 1000;
	d.tv_sec += us / 1000000 + d.tv_nsec / 1000000000;
	d.tv_nsec %= 1000000000;
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &d, NULL) == EINTR);
}

int main(int argc, char **argv)
{
	if (argc < 4) return 2;
	int rounds = atoi(argv[1]);
	struct sigaction a = { 0 }, b = { 0 }, c = { 0 };
	a.sa_handler = on_usr1; a.sa_flags = SA_RESTART | SA_ONSTACK;
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
	sigaltstack(&ss, NULL);
	struct itimerval it = { { 500, 0 }, { 1000, 0 } };
	setitimer(ITIMER_REAL, &it, NULL);
	b.sa_sigaction = on_alrm; b.sa_flags = SA_SIGINFO; sigaddset(&b.sa_mask, SIGTERM);
	c.sa_handler = on_hup; c.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &a, NULL);
	sigaction(SIGALRM, &b, NULL);
	sigaction(SIGHUP, &c, NULL);
	signal(SIGINT, SIG_IGN);
	struct sigaction d = { 0 };
	d.sa_handler = SIG_DFL; d.sa_flags = SA_NOCLDSTOP;
	sigaction(SIGCHLD, &d, NULL);
	sigset_t blk;
	sigemptyset(&blk);
	sigaddset(&blk, SIGUSR2);
	sigprocmask(SIG_BLOCK, &blk, NULL);
	setvbuf(stdout, NULL, _IONBF, 0);
	for (int r = 0; r < rounds; r++) {
		raise(SIGUSR1);
		raise(SIGALRM);
		printf("round %d usr1 %d alrm %d\n", r, (int)usr1, (int)alrm);
		nap(atol(argv[2]));
	}
	struct sigaction x;
	int ok = 1;
	sigaction(SIGUSR1, NULL, &x); ok &= x.sa_handler == on_usr1 && (x.sa_flags & SA_RESTART);
	sigaction(SIGALRM, NULL, &x); ok &= x.sa_sigaction == on_alrm && (x.sa_flags & SA_SIGINFO) && sigismember(&x.sa_mask, SIGTERM);
	sigaction(SIGINT, NULL, &x); ok &= x.sa_handler == SIG_IGN;
	sigaction(SIGCHLD, NULL, &x); ok &= x.sa_handler == SIG_DFL && (x.sa_flags & SA_NOCLDSTOP);
	sigaction(SIGTERM, NULL, &x); ok &= x.sa_handler == SIG_DFL;
	sigaction(SIGPIPE, NULL, &x); ok &= x.sa_handler == SIG_DFL;
	sigset_t cur;
	sigprocmask(SIG_BLOCK, NULL, &cur); ok &= sigismember(&cur, SIGUSR2) && !sigismember(&cur, SIGUSR1);
	stack_t cs;
	sigaltstack(NULL, &cs);
	ok &= cs.ss_sp == altstack && cs.ss_size == sizeof altstack && !offstack;
	struct itimerval ci;
	getitimer(ITIMER_REAL, &ci);
	ok &= ci.it_interval.tv_sec == 500 && ci.it_value.tv_sec > 900 && ci.it_value.tv_sec < 1000;
	sigset_t pend;
	sigpending(&pend);
	printf("sigstate %s hup %d usr2 pending %s\n", ok ? "ok" : "BROKEN", (int)hup, sigismember(&pend, SIGUSR2) ? "yes" : "no");
	return atoi(argv[3]);
}
