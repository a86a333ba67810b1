/* Shares its descriptor table with a child made by clone(CLONE_FILES) (no CLONE_VM: a memory of
 * its own, 4 MiB of it written): it prints "child PID", then the child prints a line every
 * DELAY_US for ROUNDS rounds and exits with 3, and the parent exits once the child has.
 * usage: fdshare ROUNDS DELAY_US */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>

static int rounds, delay;
static char big[4 << 20];	/* 4 MiB, written by the child: pages of its own */

static int child(void *arg)
{
	(void)arg;
	volatile char *b = big;
	for (size_t i = 0; i < sizeof big; i += 4096) b[i] = (char)(i >> 12) | 1;
	for (int i = 0; i < rounds; i++) {
		printf("%d\n", i);
		fflush(stdout);
		usleep(delay);
	}
	return 3;
}

int main(int argc, char **argv)
{
	if (argc < 3) return 2;
	rounds = atoi(argv[1]);
	delay = atoi(argv[2]);
	static char stack[1 << 16];
	setvbuf(stdout, NULL, _IONBF, 0);
	pid_t p = clone(child, stack + sizeof stack, CLONE_FILES | SIGCHLD, NULL);
	if (p < 0) return 2;
	printf("child %d\n", p);
	int st;
	waitpid(p, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
