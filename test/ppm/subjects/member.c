/* A member of a process family: ID's share of CPU-bound work, bounded and checked by its output.
 * It does ROUNDS rounds of hashing (about 1 ms of CPU each), prints "member ID ROUNDS HASH" and,
 * with `spin`, keeps busy until SIGUSR1 (or SIGTERM) tells it to stop; then it exits with EXIT
 * (default 0). The printed hash depends on ID and ROUNDS only.
 * usage: member ID ROUNDS [spin] [EXIT] */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_stop(int s) { (void)s; stop = 1; }

int main(int argc, char **argv)
{
	if (argc < 3) { fprintf(stderr, "usage: member ID ROUNDS [spin] [EXIT]\n"); return 2; }
	long id = atol(argv[1]), rounds = atol(argv[2]);
	int spin = argc > 3 && !strcmp(argv[3], "spin");
	int code = argc > 3 + spin ? atoi(argv[3 + spin]) : 0;
	struct sigaction sa = { 0 };
	sa.sa_handler = on_stop;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	volatile uint64_t h = 1469598103934665603ULL ^ (uint64_t)id;
	for (long r = 0; r < rounds; r++)
		for (int i = 0; i < 250000; i++) h = (h ^ (uint64_t)(r * 250000 + i)) * 1099511628211ULL;
	char line[96];
	int n = snprintf(line, sizeof line, "member %ld %ld %016llx\n", id, rounds, (unsigned long long)h);
	if (write(1, line, n) != n) return 1;
	while (spin && !stop) h = h * 6364136223846793005ULL + 1;
	return code;
}
