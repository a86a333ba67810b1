/* A parent of a process family, for the family tests (docs/family.md). It forks KIDS children,
 * each doing ROUNDS rounds of CPU-bound hashing (as member.c) and printing its result; it reaps
 * them in order and prints how each ended. Output depends on KIDS and ROUNDS only.
 *   fork-later   prints "forker ready", waits for a line on stdin, then forks (the tests move it
 *                away while it waits, so the fork is made away from home); child k exits 10+k
 *   wait-later   forks first; the children keep busy after their work until SIGUSR1; prints
 *                "forker ready" and waits for a line on stdin before it reaps them. With a
 *                SIGCHLD handler that prints "got SIGCHLD" once
 *   spawn        as fork-later, but the children are started with posix_spawn of SELF_PATH
 *                (glibc: clone3, or clone(CLONE_VM|CLONE_VFORK)) as `forker child K ROUNDS`
 * With `spin` the children of fork-later and spawn keep busy after their work until SIGUSR1 too.
 * usage: forker KIDS ROUNDS fork-later|wait-later|spawn [spin] | forker child K ROUNDS [spin] */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

extern char **environ;
static volatile sig_atomic_t stop, chld;

static void on_stop(int s) { (void)s; stop = 1; }
static void on_chld(int s)
{
	(void)s;
	if (!chld++) { static const char m[] = "got SIGCHLD\n"; if (write(1, m, sizeof m - 1)) {} }
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char b[160];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b, sizeof b, fmt, ap);
	va_end(ap);
	if (write(1, b, n) != n) _exit(1);
}

static int child(int k, long rounds, int spin)
{
	volatile uint64_t h = 1469598103934665603ULL ^ (uint64_t)k;
	for (long r = 0; r < rounds; r++)
		for (int i = 0; i < 250000; i++) h = (h ^ (uint64_t)(r * 250000 + i)) * 1099511628211ULL;
	say("child %d %016llx\n", k, (unsigned long long)h);
	while (spin && !stop) h = h * 6364136223846793005ULL + 1;
	return 10 + k;
}

static void gate(void)
{
	say("forker ready\n");
	char c;
	while (read(0, &c, 1) == 1 && c != '\n');
}

int main(int argc, char **argv)
{
	struct sigaction sa = { 0 };
	sa.sa_handler = on_stop;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	if (argc >= 4 && !strcmp(argv[1], "child")) return child(atoi(argv[2]), atol(argv[3]), argc > 4);
	if (argc != 4 && !(argc == 5 && !strcmp(argv[4], "spin"))) { fprintf(stderr, "usage: forker KIDS ROUNDS fork-later|wait-later|spawn [spin]\n"); return 2; }
	int spin = argc == 5 || !strcmp(argv[3], "wait-later");
	int kids = atoi(argv[1]);
	long rounds = atol(argv[2]);
	const char *mode = argv[3];
	pid_t pids[64];
	if (kids < 1 || kids > 64) return 2;
	if (!strcmp(mode, "wait-later")) {
		sa.sa_handler = on_chld;
		sigaction(SIGCHLD, &sa, NULL);
	} else gate();
	for (int k = 0; k < kids; k++) {
		if (!strcmp(mode, "spawn")) {
			char ks[16], rs[24], self[4096];
			ssize_t l = readlink("/proc/self/exe", self, sizeof self - 1);
			if (l < 0) return 1;
			self[l] = 0;
			snprintf(ks, sizeof ks, "%d", k);
			snprintf(rs, sizeof rs, "%ld", rounds);
			char *av[] = { self, "child", ks, rs, spin ? "spin" : NULL, NULL };
			int e = posix_spawn(&pids[k], self, NULL, NULL, av, environ);
			if (e) { say("posix_spawn: %s\n", strerror(e)); return 1; }
			continue;
		}
		pids[k] = fork();
		if (pids[k] < 0) { say("fork: %s\n", strerror(errno)); return 1; }
		if (pids[k] == 0) _exit(child(k, rounds, spin));
	}
	if (!strcmp(mode, "wait-later")) gate();
	for (int k = 0; k < kids; k++) {
		int st;
		pid_t w;
		while ((w = waitpid(pids[k], &st, 0)) < 0 && errno == EINTR);
		if (w < 0) { say("waitpid: %s\n", strerror(errno)); return 1; }
		if (WIFEXITED(st)) say("reaped %d exit %d\n", k, WEXITSTATUS(st));
		else say("reaped %d signal %d\n", k, WTERMSIG(st));
	}
	say("forker done\n");
	return 0;
}
