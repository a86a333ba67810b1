/* Sleeper reading clocks: ROUNDS rounds of INTERVAL_MS, alternating an absolute CLOCK_MONOTONIC
 * sleep (interrupted: -ERESTARTNOHAND) and a relative one with the remainder in the same buffer
 * (-ERESTART_RESTARTBLOCK). At the end it reports whether CLOCK_MONOTONIC ever went backwards or
 * jumped by more than LIMIT_MS between two rounds, and whether a sleep ever ended early (an
 * interrupted sleep that was not resumed correctly).
 * usage: sleeper ROUNDS INTERVAL_MS LIMIT_MS EXIT_CODE */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <errno.h>

static long long ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 5) return 2;
	int rounds = atoi(argv[1]);
	long long iv = atoll(argv[2]) * 1000000LL, limit = atoll(argv[3]) * 1000000LL;
	int code = atoi(argv[4]);
	setvbuf(stdout, NULL, _IONBF, 0);
	long long start = ns(), prev = start, maxgap = 0;
	int back = 0, early = 0;
	for (int r = 0; r < rounds; r++) {
		long long before = ns(), due;
		if (r % 2 == 0) {
			long long d = start + (r + 1) * iv;
			struct timespec ts = { d / 1000000000LL, d % 1000000000LL };
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR);
			due = d;
		} else {
			struct timespec ts = { iv / 1000000000LL, iv % 1000000000LL };
			while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR);
			due = before + iv;
		}
		long long now = ns();
		if (now < due) early++;
		if (now < prev) back = 1;
		if (now - prev > maxgap) maxgap = now - prev;
		prev = now;
		printf("round %d\n", r);
	}
	if (early) printf("%d sleeps ended early\n", early);
	if (back) printf("clock went backwards\n");
	else if (maxgap > limit) printf("clock jump %lld ms\n", maxgap / 1000000);
	else printf("clock ok\n");
	fprintf(stderr, "maxgap_ms=%lld\n", maxgap / 1000000);
	return code;
}
