/* signalfd: SIGUSR1 and SIGUSR2 are blocked and read through a signalfd (mask carried); each
 * round one is raised and then left pending across a pause (where a move may happen) before it
 * is read; SIGHUP is not in the mask and must not show up there.
 * usage: sfd ROUNDS ROUND_US STATUS */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <signal.h>
#include <errno.h>
#include <time.h>
#include <poll.h>
#include <sys/signalfd.h>

static void nap(long us) { struct timespec ts = { us / 1000000, us % 1000000 * 1000 }; while (nanosleep(&ts, &ts) && errno == EINTR); }
static void die(const char *m) { printf("FAIL %s (errno %d)\n", m, errno); exit(1); }
static volatile int hups;
static void on_hup(int s) { (void)s; hups++; }

int main(int argc, char **argv)
{
	if (argc < 4) return 2;
	int rounds = atoi(argv[1]), us = atoi(argv[2]);
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	sigaddset(&m, SIGUSR2);
	sigprocmask(SIG_BLOCK, &m, NULL);
	signal(SIGHUP, on_hup);
	int fd = signalfd(-1, &m, SFD_NONBLOCK);
	if (fd < 0) die("signalfd");
	for (int i = 0; i < rounds; i++) {
		int sig = i % 2 ? SIGUSR2 : SIGUSR1;
		kill(getpid(), sig);
		if (i % 5 == 4) raise(SIGHUP);
		nap(us);	/* pending while it sleeps */
		struct pollfd pf = { fd, POLLIN, 0 };
		if (poll(&pf, 1, 5000) != 1) die("signalfd not readable");
		struct signalfd_siginfo si;
		if (read(fd, &si, sizeof si) != sizeof si) die("read");
		if ((int)si.ssi_signo != sig) die("wrong signal");
		if (read(fd, &si, sizeof si) != -1 || errno != EAGAIN) die("extra signal");
		printf("round %d got %s hups %d\n", i, sig == SIGUSR1 ? "USR1" : "USR2", hups);
		fflush(stdout);
	}
	printf("signalfd ok\n");
	return atoi(argv[3]);
}
