/* Test launcher: closes every inherited fd above 2 (the test runner may leak some), then execs
 * the subject, so the subject keeps this pid and the test stays its parent.
 * usage: launch PROGRAM ARGS... */
#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
	if (argc < 2) return 127;
	syscall(SYS_close_range, 3, ~0U, 0);
	execvp(argv[1], argv + 1);
	perror(argv[1]);
	return 127;
}
