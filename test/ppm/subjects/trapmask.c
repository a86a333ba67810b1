/* SIGTRAP ignored (or, with `handler`, caught) and blocked, with a second thread that blocks it
 * too: ROUNDS lines, one every ROUND_USEC, each saying whether both still hold (the traps of
 * injected calls must not leave it unblocked or back at its default action).
 * usage: trapmask ROUNDS [ROUND_USEC] [handler] */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile int stop;
static void on_trap(int sig) { (void)sig; }
static int other_ok = 1;

static int blocked(void)
{
	sigset_t m;
	pthread_sigmask(SIG_BLOCK, NULL, &m);
	return sigismember(&m, SIGTRAP);
}

static void *other(void *arg)
{
	(void)arg;
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGTRAP);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	while (!stop) { if (!blocked()) other_ok = 0; usleep(5000); }
	return NULL;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 10;
	long usec = argc > 2 ? atol(argv[2]) : 50000;
	int caught = argc > 3 && !strcmp(argv[3], "handler");
	void (*want)(int) = caught ? on_trap : SIG_IGN;
	setvbuf(stdout, NULL, _IONBF, 0);
	signal(SIGTRAP, want);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGTRAP);
	sigprocmask(SIG_BLOCK, &s, NULL);
	pthread_t th;
	pthread_create(&th, NULL, other, NULL);
	for (int r = 0; r < rounds; r++) {
		struct sigaction a;
		sigaction(SIGTRAP, NULL, &a);
		printf("round %d trap %s %s\n", r, a.sa_handler == want ? (caught ? "caught" : "ignored") : "CHANGED", blocked() ? "blocked" : "NOT-BLOCKED");
		usleep(usec);
	}
	stop = 1;
	pthread_join(th, NULL);
	printf("other thread %s\n", other_ok ? "blocked" : "NOT-BLOCKED");
	return 0;
}
