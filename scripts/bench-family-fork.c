/* Subject of scripts/bench-cluster --family (the fork path, docs/family.md): for each line read
 * on stdin it forks a child that exits at once, reaps it, and prints "fork US" with the time from
 * just before fork() to just after waitpid() in microseconds. Away from home the fork is made at
 * home: the time is that of the trip home. Ends at end of input.
 * usage: bench-family-fork */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(void)
{
	char out[64];
	setvbuf(stdout, NULL, _IONBF, 0);
	if (write(1, "ready\n", 6) != 6) return 1;
	for (;;) {
		ssize_t n = 0;
		char c;
		while ((n = read(0, &c, 1)) == 1 && c != '\n');
		if (n != 1) return 0;
		double t0 = now_us();
		pid_t p = fork();
		if (p == 0) _exit(0);
		if (p < 0) return 1;
		int st;
		waitpid(p, &st, 0);
		int k = snprintf(out, sizeof out, "fork %.0f\n", now_us() - t0);
		if (write(1, out, k) != k) return 1;
	}
}
