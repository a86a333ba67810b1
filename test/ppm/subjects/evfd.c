/* eventfds: a counter that carries a running total between rounds (written every round, read
 * every fourth), and a non-blocking semaphore eventfd (EFD_SEMAPHORE: each read takes 1) whose
 * count grows by 2 a round. Values read are checked against what was written.
 * usage: evfd ROUNDS ROUND_US STATUS */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <time.h>
#include <sys/eventfd.h>

static void nap(long us) { struct timespec ts = { us / 1000000, us % 1000000 * 1000 }; while (nanosleep(&ts, &ts) && errno == EINTR); }
static void die(const char *m) { printf("FAIL %s (errno %d)\n", m, errno); exit(1); }

int main(int argc, char **argv)
{
	if (argc < 4) return 2;
	int rounds = atoi(argv[1]), us = atoi(argv[2]);
	int c = eventfd(0, EFD_CLOEXEC), sem = eventfd(5, EFD_SEMAPHORE | EFD_NONBLOCK);
	if (c < 0 || sem < 0) die("eventfd");
	uint64_t v = 5000000000ULL, expect = v;	/* more than 32 bits */
	if (write(c, &v, 8) != 8) die("write");
	uint64_t semcount = 5;
	for (int i = 0; i < rounds; i++) {
		v = i + 1;
		if (write(c, &v, 8) != 8) die("write");
		expect += v;
		if (i % 4 == 3) {
			if (read(c, &v, 8) != 8 || v != expect) die("counter");
			printf("round %d counter %llu\n", i, (unsigned long long)v);
			expect = 0;
		}
		v = 3;
		if (write(sem, &v, 8) != 8) die("write sem");
		if (read(sem, &v, 8) != 8 || v != 1) die("semaphore read is not 1");
		semcount += 2;
		if (!(fcntl(sem, F_GETFL) & O_NONBLOCK) || !(fcntl(c, F_GETFD) & FD_CLOEXEC)) die("flags lost");
		printf("round %d\n", i);
		fflush(stdout);
		nap(us);
	}
	uint64_t n = 0;
	while (read(sem, &v, 8) == 8) n += v;
	if (errno != EAGAIN || n != semcount) die("semaphore count");
	printf("eventfd ok, semaphore %llu\n", (unsigned long long)n);
	return atoi(argv[3]);
}
