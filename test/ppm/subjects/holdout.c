/* Kernel objects that still cannot move (a negative case), one per mode, held while it sleeps:
 *   shared    an eventfd shared with a child process (the child is the one checked)
 *   epoll     an epoll registration under an fd number that was closed (the file lives on
 *             under another number)
 *   inotify   an inotify watch with an unread event
 *   cputimer  a POSIX timer on the CPU clock of another process (its parent)
 * usage: holdout MODE SECONDS; prints "ready" (and the child's pid for shared) when set up */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>
#include <time.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	if (argc < 3) return 2;
	const char *mode = argv[1];
	int secs = atoi(argv[2]);
	if (!strcmp(mode, "shared")) {
		int e = eventfd(0, 0);
		pid_t c = fork();
		if (c == 0) { sleep(secs); _exit(0); }
		printf("ready %d\n", c);
		fflush(stdout);
		waitpid(c, NULL, 0);
		return e < 0;
	}
	if (!strcmp(mode, "epoll")) {
		int ep = epoll_create1(0), e = eventfd(0, 0);
		struct epoll_event ev = { EPOLLIN, { .u64 = 1 } };
		epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev);
		int keep = dup(e);
		close(e);
		(void)keep;
	} else if (!strcmp(mode, "inotify")) {
		char dir[] = "/tmp/hpc-holdout-XXXXXX", p[64];
		if (!mkdtemp(dir)) return 1;
		int fd = inotify_init1(0);
		inotify_add_watch(fd, dir, IN_CREATE);
		snprintf(p, sizeof p, "%s/x", dir);
		close(open(p, O_WRONLY | O_CREAT, 0644));
		unlink(p);
		rmdir(dir);
	} else if (!strcmp(mode, "cputimer")) {
		clockid_t clk;
		timer_t t;
		struct sigevent sev = { .sigev_notify = SIGEV_NONE };
		if (clock_getcpuclockid(getppid(), &clk) || timer_create(clk, &sev, &t)) return 1;
	} else return 2;
	printf("ready\n");
	fflush(stdout);
	sleep(secs);
	return 0;
}
