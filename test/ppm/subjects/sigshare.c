/* Pending signals of a process and of its main thread alone, across a move: main and a worker both
 * block SIGUSR1; main also blocks SIGUSR2, the worker does not. Main sends itself SIGUSR2
 * (pthread_kill: pending for main alone); the test sends the process SIGUSR1 (pending for the
 * process: blocked everywhere). Once TRIGGER exists, the worker unblocks SIGUSR1 and main SIGUSR2:
 * each signal must be taken by the thread it was pending for, or by the only one that can take
 * it. Prints "usr1 worker W main M, usr2 worker W main M" and exits 0.
 * usage: sigshare TRIGGER */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_t main_thread, worker;
static volatile sig_atomic_t usr1_worker, usr1_main, usr2_worker, usr2_main;
static const char *trigger;

static void on_sig(int s)
{
	int in_main = pthread_equal(pthread_self(), main_thread);
	if (s == SIGUSR1) { if (in_main) usr1_main++; else usr1_worker++; }
	else { if (in_main) usr2_main++; else usr2_worker++; }
}

static void nap(void) { struct timespec d = { 0, 5000000 }; nanosleep(&d, NULL); }

static void unblock(int s)
{
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, s);
	pthread_sigmask(SIG_UNBLOCK, &m, NULL);
}

static void *work(void *a)
{
	(void)a;
	unblock(SIGUSR2);
	while (access(trigger, F_OK)) nap();
	unblock(SIGUSR1);
	for (int i = 0; i < 20; i++) nap();
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 2) { fprintf(stderr, "usage: sigshare TRIGGER\n"); return 2; }
	trigger = argv[1];
	main_thread = pthread_self();
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sig;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	sigaddset(&m, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &m, NULL);
	if (pthread_create(&worker, NULL, work, NULL)) return 1;
	pthread_kill(main_thread, SIGUSR2);
	setvbuf(stdout, NULL, _IONBF, 0);
	printf("ready\n");
	while (access(trigger, F_OK)) nap();
	unblock(SIGUSR2);
	pthread_join(worker, NULL);
	printf("usr1 worker %d main %d, usr2 worker %d main %d\n", (int)usr1_worker, (int)usr1_main, (int)usr2_worker, (int)usr2_main);
	return 0;
}
