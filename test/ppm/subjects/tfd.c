/* timerfds: a periodic CLOCK_MONOTONIC timer read in blocking reads (the process is mostly
 * waiting in read() on it), a one-shot that expired early and is only read at the end (its
 * unread expiration must be carried), a CLOCK_BOOTTIME one-shot an hour away and an absolute
 * CLOCK_REALTIME one with TFD_TIMER_CANCEL_ON_SET (both must keep their remaining time), and a
 * periodic one never read until the end: expired and unread, the kernel shows no time left on it
 * (it is armed again only by a read), and it must still be armed after the moves.
 * usage: tfd ROUNDS TICKS_PER_ROUND STATUS */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <time.h>
#include <poll.h>
#include <sys/timerfd.h>

static void die(const char *m) { printf("FAIL %s (errno %d)\n", m, errno); exit(1); }

static int remaining_ok(int fd, const char *what)
{
	struct itimerspec its;
	if (timerfd_gettime(fd, &its)) die("timerfd_gettime");
	if (its.it_value.tv_sec < 3000 || its.it_value.tv_sec >= 3600) { printf("FAIL %s remaining %ld s\n", what, (long)its.it_value.tv_sec); exit(1); }
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 4) return 2;
	int rounds = atoi(argv[1]), per = atoi(argv[2]);
	int a = timerfd_create(CLOCK_MONOTONIC, 0), c = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	int b = timerfd_create(CLOCK_BOOTTIME, 0), d = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC);
	int e = timerfd_create(CLOCK_MONOTONIC, 0);
	if (a < 0 || b < 0 || c < 0 || d < 0 || e < 0) die("timerfd_create");
	struct itimerspec pe = { { 0, 20000000 }, { 0, 20000000 } };
	if (timerfd_settime(e, 0, &pe, NULL)) die("timerfd_settime");
	struct itimerspec pa = { { 0, 30000000 }, { 0, 30000000 } }, pc = { { 0, 0 }, { 0, 100000000 } }, pb = { { 0, 0 }, { 3600, 0 } };
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct itimerspec pd = { { 0, 0 }, { now.tv_sec + 3600, now.tv_nsec } };
	if (timerfd_settime(a, 0, &pa, NULL) || timerfd_settime(b, 0, &pb, NULL) || timerfd_settime(c, 0, &pc, NULL) ||
	    timerfd_settime(d, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &pd, NULL))
		die("timerfd_settime");
	uint64_t total = 0;
	for (int i = 0; i < rounds; i++) {
		while (total < (uint64_t)per * (i + 1)) {
			uint64_t n;
			if (read(a, &n, 8) != 8 || n == 0) die("read periodic");
			total += n;
		}
		printf("round %d\n", i);
		fflush(stdout);
	}
	uint64_t n = 0;
	if (read(c, &n, 8) != 8 || n != 1) die("the early expiration of the one-shot was lost");
	if (read(c, &n, 8) != -1 || errno != EAGAIN) die("one-shot fired twice");
	struct itimerspec its;
	if (timerfd_gettime(a, &its) || its.it_interval.tv_sec != 0 || its.it_interval.tv_nsec != 30000000) die("interval lost");
	if (read(e, &n, 8) != 8 || n == 0) die("read unread periodic");
	struct pollfd pf = { e, POLLIN, 0 };
	if (poll(&pf, 1, 2000) != 1) die("the periodic timer read only at the end is no longer armed");
	remaining_ok(b, "boottime one-shot");
	remaining_ok(d, "absolute realtime");
	if (!(fcntl(c, F_GETFL) & O_NONBLOCK) || !(fcntl(d, F_GETFD) & FD_CLOEXEC)) die("flags lost");
	printf("timerfd ok\n");
	return atoi(argv[3]);
}
