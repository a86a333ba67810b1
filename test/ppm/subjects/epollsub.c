/* epoll: an interest list with an eventfd (level-triggered, a tag in data), a pipe's read end
 * (data = its fd), a periodic timerfd (edge-triggered) and an eventfd registered EPOLLONESHOT that
 * has already fired (disarmed: it must stay silent until re-armed with EPOLL_CTL_MOD). The process
 * waits in epoll_wait; every event is checked against what was done.
 * usage: epollsub ROUNDS ROUND_US STATUS */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <unistd.h>
#include <errno.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>

static void die(const char *m) { printf("FAIL %s (errno %d)\n", m, errno); exit(1); }
#define TAG_EV 0x1122334455667788ULL
#define TAG_ONCE 0xabcdef

int main(int argc, char **argv)
{
	if (argc < 4) return 2;
	int rounds = atoi(argv[1]), us = atoi(argv[2]);
	int ep = epoll_create1(EPOLL_CLOEXEC), ev = eventfd(0, EFD_NONBLOCK), once = eventfd(0, EFD_NONBLOCK), p[2];
	int tf = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	if (ep < 0 || ev < 0 || once < 0 || tf < 0 || pipe(p)) die("create");
	struct epoll_event e1 = { EPOLLIN, { .u64 = TAG_EV } }, e2 = { EPOLLIN, { .fd = p[0] } }, e3 = { EPOLLIN | EPOLLET, { .u32 = 77 } },
			   e4 = { EPOLLIN | EPOLLONESHOT, { .u64 = TAG_ONCE } };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e1) || epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e2) || epoll_ctl(ep, EPOLL_CTL_ADD, tf, &e3) ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, once, &e4))
		die("epoll_ctl");
	uint64_t one = 1;
	if (write(once, &one, 8) != 8) die("write");
	struct epoll_event out[8];
	if (epoll_wait(ep, out, 8, 1000) != 1 || out[0].data.u64 != TAG_ONCE) die("oneshot");
	struct itimerspec its = { { 0, us * 1000L }, { 0, us * 1000L } };
	if (timerfd_settime(tf, 0, &its, NULL)) die("timerfd_settime");
	int ticks_seen = 0;
	for (int i = 0; i < rounds; i++) {
		uint64_t v = i + 1;
		if (write(ev, &v, 8) != 8 || write(p[1], "x", 1) != 1) die("write");
		if (write(once, &one, 8) != 8) die("write once");	/* disarmed: no event */
		int got_ev = 0, got_pipe = 0, got_tick = 0;
		while (!got_ev || !got_pipe || !got_tick) {
			int n = epoll_wait(ep, out, 8, 5000);
			if (n < 0 && errno == EINTR) continue;
			if (n <= 0) die("epoll_wait timed out");
			for (int k = 0; k < n; k++) {
				if (out[k].data.u64 == TAG_EV) {
					if (read(ev, &v, 8) != 8 || v != (uint64_t)i + 1) die("eventfd value");
					got_ev = 1;
				} else if (out[k].data.fd == p[0] && (out[k].data.u64 >> 32) == 0) {
					char c;
					if (read(p[0], &c, 1) != 1 || c != 'x') die("pipe");
					got_pipe = 1;
				} else if (out[k].data.u32 == 77 && (out[k].data.u64 >> 32) == 0) {
					uint64_t t;
					if (read(tf, &t, 8) == 8) { got_tick = 1; ticks_seen++; }
				} else die("unexpected event (the disarmed oneshot?)");
			}
		}
		printf("round %d\n", i);
		fflush(stdout);
	}
	struct epoll_event rearm = { EPOLLIN, { .u64 = TAG_ONCE } };
	if (epoll_ctl(ep, EPOLL_CTL_MOD, once, &rearm)) die("re-arm");
	int n = epoll_wait(ep, out, 8, 1000), seen = 0;
	for (int k = 0; k < n; k++) seen |= out[k].data.u64 == TAG_ONCE;
	if (!seen) die("re-armed oneshot silent");
	uint64_t v;
	if (read(once, &v, 8) != 8 || v != (uint64_t)rounds + 1) die("oneshot counter");
	printf("epoll ok\n");
	return atoi(argv[3]);
}
