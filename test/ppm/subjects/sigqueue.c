/* Pending signals with their siginfo. Blocks SIGHUP, SIGUSR1, SIGUSR2 and SIGRTMIN..SIGRTMIN+3 in
 * every thread, has a SIGTRAP handler, then has pending:
 *   for the process: SIGRTMIN three times (sigqueue, values 1 2 3), SIGUSR1 (sigqueue, value 7),
 *     SIGUSR2 (kill), SIGRTMIN+2 from a one-shot POSIX timer (value 99), and SIGHUP queued when
 *     RLIMIT_SIGPENDING is used up (pending without its siginfo: it comes as SI_USER from pid 0);
 *   for the main thread alone: SIGRTMIN+1 (pthread_sigqueue, value 8), SIGRTMIN+3 (tgkill);
 *   for the worker thread alone: SIGRTMIN+1 twice (pthread_sigqueue, values 5 6).
 * Prints "ready", waits until TRIGGER exists, then the main thread takes every signal pending for
 * it (its own, then the process's), then the worker its own; one line each: who, signal, code,
 * value, whether the sender was this process (as it was at the start); then whether its SIGTRAP
 * handler is still there, and its limits of pending signals (it set the soft one to 0) and
 * descriptors (123 soft, 4567 hard). Exits 0.
 * usage: sigqueue TRIGGER */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

static pid_t self;
static volatile int worker_go, worker_ready;
static sigset_t blk;
static void on_trap(int s) { (void)s; }

static void take(const char *who)
{
	struct timespec zero = { 0, 0 };
	siginfo_t si;
	int s;
	while ((s = sigtimedwait(&blk, &si, &zero)) > 0) {
		int code = si.si_code;
		int value = (code == SI_QUEUE || code == SI_TIMER) ? si.si_value.sival_int : 0;
		int from_self = (code == SI_USER || code == SI_QUEUE || code == SI_TKILL) ? si.si_pid == self : -1;
		printf("%s sig %s+%d code %d value %d self %d\n", who, s >= SIGRTMIN ? "RTMIN" : "0", s >= SIGRTMIN ? s - SIGRTMIN : s, code, value,
		       from_self);
	}
}

static void *worker(void *arg)
{
	(void)arg;
	worker_ready = 1;
	while (!worker_go) usleep(1000);
	take("worker");
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2) return 2;
	setvbuf(stdout, NULL, _IONBF, 0);
	self = getpid();
	signal(SIGTRAP, on_trap);
	sigemptyset(&blk);
	sigaddset(&blk, SIGHUP);
	sigaddset(&blk, SIGUSR1);
	sigaddset(&blk, SIGUSR2);
	for (int i = 0; i < 4; i++) sigaddset(&blk, SIGRTMIN + i);
	pthread_sigmask(SIG_BLOCK, &blk, NULL);
	pthread_t w;
	if (pthread_create(&w, NULL, worker, NULL)) return 3;
	while (!worker_ready) usleep(1000);

	union sigval v;
	for (int i = 1; i <= 3; i++) { v.sival_int = i; sigqueue(self, SIGRTMIN, v); }
	v.sival_int = 7; sigqueue(self, SIGUSR1, v);
	kill(self, SIGUSR2);
	v.sival_int = 8; pthread_sigqueue(pthread_self(), SIGRTMIN + 1, v);
	syscall(SYS_tgkill, self, (pid_t)syscall(SYS_gettid), SIGRTMIN + 3);
	v.sival_int = 5; pthread_sigqueue(w, SIGRTMIN + 1, v);
	v.sival_int = 6; pthread_sigqueue(w, SIGRTMIN + 1, v);
	struct sigevent ev = { 0 };
	ev.sigev_notify = SIGEV_SIGNAL;
	ev.sigev_signo = SIGRTMIN + 2;
	ev.sigev_value.sival_int = 99;
	timer_t tm;
	if (timer_create(CLOCK_MONOTONIC, &ev, &tm)) return 4;
	struct itimerspec its = { { 0, 0 }, { 0, 1000000 } };
	timer_settime(tm, 0, &its, NULL);
	sigset_t p;
	do { usleep(1000); sigpending(&p); } while (!sigismember(&p, SIGRTMIN + 2));
	struct rlimit none, files = { 123, 4567 };
	getrlimit(RLIMIT_SIGPENDING, &none);
	none.rlim_cur = 0;	/* (the hard one as it was: only a privileged restorer could raise it again) */
	setrlimit(RLIMIT_SIGPENDING, &none);
	setrlimit(RLIMIT_NOFILE, &files);
	v.sival_int = 5; sigqueue(self, SIGHUP, v);

	printf("ready\n");
	struct stat sb;
	while (stat(argv[1], &sb)) usleep(5000);
	take("main");
	worker_go = 1;
	pthread_join(w, NULL);
	struct sigaction t;
	sigaction(SIGTRAP, NULL, &t);
	printf("trap handler %s\n", t.sa_handler == on_trap ? "kept" : "lost");
	struct rlimit sp, nf;
	getrlimit(RLIMIT_SIGPENDING, &sp);
	getrlimit(RLIMIT_NOFILE, &nf);
	printf("limits sigpending %llu nofile %llu %llu\n", (unsigned long long)sp.rlim_cur, (unsigned long long)nf.rlim_cur, (unsigned long long)nf.rlim_max);
	return 0;
}
